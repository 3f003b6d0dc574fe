"""Experiment: which training settings let `ours` learn the domain without forgetting (issue: the retention recipe)?

    python bench/retention_sweep.py [--run lab] [--configs NAME ...] [--json outputs/bench/retention_sweep.json]

Trains `ours` and `domain_only` (notebook 04's arms of the run) under each candidate setting of notebook 05 and
scores them, and the base, on a **validation split**: fresh lab questions of every family (another seed than the
held-out set of notebooks 00/06), with every question that also occurs in that held-out set removed. The held-out
set is not read for scores, only to keep its questions out, so the settings are chosen without looking at the
numbers the README reports. A setting passes when, on validation, `ours` forgets at most 1 point of the base's
general accuracy and its domain accuracy is at most 2 points below `domain_only`'s under the same setting.

What stands for what: a practitioner would hold out a slice of their domain data and a general benchmark's
validation split (not its test split) and choose settings there in the same way.

Needs notebooks 00-04 for the run. Prints a table and writes JSON; about 100 s per setting on the 2-core CPU.
Adapters go to ``outputs/<run>-retention-<setting>/`` (the run's own arms are untouched).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report  # noqa: E402

from helpers import evaluation, heldout, mixing, scoring, models, qlora_configs as qc, qlora_training as qt  # noqa: E402
from helpers.runs import read_json, stage_dir, write_json  # noqa: E402

# Changes to the run's notebook-05 settings (`default` changes nothing): the learning rate, the LoRA rank, the
# target modules, the steps, and which embedding rows train (all, only the domain tokens', none).
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]  # LoRA on the attention projections only (no MLP)
CONFIGS = {
    "default": {},
    "domain_rows": {"embedding_rows": "domain"},
    "domain_rows_lr_2e-3": {"embedding_rows": "domain", "learning_rate": 0.002},
    "domain_rows_lr_4e-3": {"embedding_rows": "domain", "learning_rate": 0.004},
    "domain_rows_rank_4": {"embedding_rows": "domain", "lora_rank": 4, "lora_alpha": 8},
    "domain_rows_lr_6e-3": {"embedding_rows": "domain", "learning_rate": 0.006},
    "domain_rows_attention_only": {"embedding_rows": "domain", "target_modules": ATTENTION},
    "domain_rows_attention_only_lr_4e-3": {"embedding_rows": "domain", "target_modules": ATTENTION,
                                           "learning_rate": 0.004},
    "domain_rows_steps_600": {"embedding_rows": "domain", "max_steps": 600},
    "domain_rows_lr_4e-3_steps_600": {"embedding_rows": "domain", "learning_rate": 0.004, "max_steps": 600},
    "lr_2e-3": {"learning_rate": 0.002},
    "lr_1e-3": {"learning_rate": 0.001},
    "rank_4": {"lora_rank": 4, "lora_alpha": 8},
    "attention_only": {"target_modules": ATTENTION},
    "embeddings_off": {"train_embeddings": False},
}
VALIDATION_SEED_OFFSET = 500  # the validation questions' seed: the held-out set's eval_seed + this


def validation_sets(n_per_family: int, eval_seed: int) -> tuple[dict[str, list], dict[str, int]]:
    """Fresh questions of every family, minus those in the held-out set of notebooks 00/06; and how many were
    dropped per set for being in it."""
    test = heldout.heldout_sets(n_per_family, eval_seed)
    sets = heldout.heldout_sets(n_per_family, eval_seed + VALIDATION_SEED_OFFSET)
    out, dropped = {}, {}
    for name, items in sets.items():
        seen = {e.instruction for e in test[name]}
        out[name] = [e for e in items if e.instruction not in seen]
        dropped[name] = len(items) - len(out[name])
    return out, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="lab")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/retention_sweep.json"))
    args = parser.parse_args()
    lab = read_json(stage_dir(args.run, "00_lab", create=False) / "manifest.json")["params"]
    trained = qt.trained(args.run)
    hp0, setup = {"embedding_rows": "all", **trained["hp"]}, evaluation.eval_setup(trained["setup"])
    base_path = models.resolve(args.run, trained["model"])
    arms = mixing.load_arms(args.run)
    sets, dropped = validation_sets(lab["n_eval_per_family"], lab["eval_seed"])
    print(f"validation: {len(sets['general'])} general, {len(sets['domain'])} domain questions "
          f"({dropped} dropped for being in the held-out set)")
    model, tok = evaluation.load_for_eval(base_path, setup)
    base = scoring.score_sets(model, tok, sets, mc=False)
    columns = ["setting", "ours_general", "forgetting_pts", "ours_domain", "domain_only_domain", "domain_gap_pts",
               "domain_only_general", "passes"]
    meta = dict(run=args.run, seed=args.seed, hp=hp0, base_general=round(base["general_accuracy"], 3),
                validation_sizes={k: len(v) for k, v in sets.items()}, dropped_for_heldout=dropped,
                validation_seed=lab["eval_seed"] + VALIDATION_SEED_OFFSET)
    rows = []
    for name in args.configs:
        recipe = qc.from_parameters(setup, base_path, {**hp0, **CONFIGS[name]})
        run = f"{args.run}-retention-{name}"
        row = {"setting": name, "changes": CONFIGS[name]}
        scores = {}
        for arm in ("domain_only", "ours"):
            m = qt.train_arm(run, arm, arms[arm], base_path, setup, recipe, args.seed, progress=False)
            model, tok = evaluation.load_for_eval(base_path, setup, evaluation.adapter_path(run, arm, m))
            scores[arm] = scoring.score_sets(model, tok, sets, mc=False)
            row[f"{arm}_train_s"] = m["train_seconds"]
        g, d = scores["ours"]["general_accuracy"], scores["ours"]["domain_accuracy"]
        d_only = scores["domain_only"]["domain_accuracy"]
        row |= {"ours_general": round(g, 3), "ours_domain": round(d, 3), "domain_only_domain": round(d_only, 3),
                "domain_only_general": round(scores["domain_only"]["general_accuracy"], 3),
                "forgetting_pts": round(100 * (base["general_accuracy"] - g), 1),
                "domain_gap_pts": round(100 * (d_only - d), 1)}
        row["passes"] = row["forgetting_pts"] <= 1.0 and row["domain_gap_pts"] <= 2.0
        rows.append(row)
        print(f"{name}: ours {g:.3f}/{d:.3f}, domain_only domain {d_only:.3f}, forgetting {row['forgetting_pts']} "
              f"points, domain gap {row['domain_gap_pts']} points, passes {row['passes']}", flush=True)
        write_json(args.json, {**meta, "rows": rows})  # after every setting: an interrupted sweep keeps its rows
    report(rows, columns, args.json, **meta)


if __name__ == "__main__":
    main()
