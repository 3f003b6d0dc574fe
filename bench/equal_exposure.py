"""Experiment: is `ours`' domain gap to `domain_only` about how many domain examples each saw?

    python bench/equal_exposure.py [--run lab] [--json outputs/bench/equal_exposure.json]

At equal steps (notebook 05), `domain_only` sees about six times as many domain examples as `ours` (17% domain).
This trains `ours` for six times the steps (equal domain exposure) and `domain_only` for a sixth of them, with the
lab preset's other settings, and scores both like notebook 06 (held-out sets of notebook 00). Needs notebooks
00-05 for the run (its arms, its setup). Prints a table and writes JSON; about 5 minutes on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from helpers import eval_models, evaluation, heldout, mixing, scoring, models, qlora_configs as qc, qlora_training as qt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="lab")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/equal_exposure.json"))
    args = parser.parse_args()
    trained = qt.trained(args.run)
    hp, seed = trained["hp"], trained["seeds"][0]
    setup = evaluation.eval_setup(trained["setup"])
    base = models.resolve(args.run, trained["model"])
    arms = mixing.load_arms(args.run)
    share = {name: sum(s == "domain" for s in arms[name]["source"]) / len(arms[name]) for name in ("ours", "domain_only")}
    factor = round(share["domain_only"] / share["ours"])
    sets = heldout.heldout_sets(60, 1000)
    rows = []
    for arm, steps in [("domain_only", hp["max_steps"] // factor), ("ours", hp["max_steps"] * factor)]:
        recipe = qc.from_parameters(setup, base, {**hp, "max_steps": steps})
        m = qt.train_arm(f"{args.run}-exposure", arm, arms[arm], base, setup, recipe, seed, progress=False)
        model, tok = eval_models.load_for_eval(base, setup, evaluation.adapter_path(f"{args.run}-exposure", arm, m))
        r = scoring.score_sets(model, tok, sets)
        rows.append({"arm": arm, "steps": steps, "domain_examples_seen": round(steps * hp["train_batch_size"] * share[arm]),
                     "train_seconds": m["train_seconds"], "general": round(r["general_accuracy"], 3),
                     "domain": round(r["domain_accuracy"], 3),
                     **{f: round(r["per_family"][f], 3) for f in ("diagnosis", "treatment", "dosing")}})
    header = list(rows[0])
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(str(r[h]) for h in header))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"run": args.run, "hp": hp, "seed": seed, "factor": factor, "rows": rows},
                                    indent=1) + "\n")


if __name__ == "__main__":
    main()
