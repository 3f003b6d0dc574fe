"""Study: can a scorer of notebook 03 tell a right answer from a wrong one? Judges and the likelihood committee on
answers whose correctness is known.

    python bench/judge_study.py                     # SmolLM2 as judge; SmolLM2 + gemma-3-270m as likelihood committee
    python bench/judge_study.py --per-family 10     # fewer items (the CPU: minutes)
    python bench/judge_study.py --smoke             # the lab model as judge and committee, 2 items per family (CI)

Each question of the shipped general set (``data/general_eval.jsonl``: ten families, four choices each) gets two
candidate answers of the same form, "The answer is X.": X the right choice, and X a wrong one (a distractor drawn
from the item's choices). A scorer that can judge answers rates the right one higher. Measured per scorer:

* ``pair_accuracy``: the share of questions whose right answer scored above the wrong one (ties count half); chance
  is 0.5, and ``ci95`` is its normal-approximation interval over questions;
* ``parse_rate`` (judges): the share of ratings that held a readable 1-5 rating (notebook 03's parser);
* ``ties``: the share of questions where both answers got the same score (a judge that always says 3 ties all);
* ``rating_counts`` (judges): how often each rating was given.

This is a necessary condition, not a sufficient one: judging real answers needs more than telling a right short
answer from a wrong one. Writes JSON (``--json``, default ``outputs/bench/judge_study.json``).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

from helpers import committee as scorers  # noqa: E402
from helpers.runs import repo_root  # noqa: E402
from helpers.shipped_data import read  # noqa: E402


def candidate_pairs(items: list[dict], seed: int = 0) -> list[tuple[dict, dict]]:
    """For each item, (right, wrong): the same instruction with "The answer is X." for the right choice and for
    one distractor."""
    rng = random.Random(seed)
    pairs = []
    for it in items:
        wrong = rng.choice([c for i, c in enumerate(it["choices"]) if i != it["label"]])
        pairs.append(({"instruction": it["instruction"], "response": f"The answer is {it['answer']}."},
                      {"instruction": it["instruction"], "response": f"The answer is {wrong}."}))
    return pairs


def pair_accuracy(scores: list[float | None]) -> dict:
    """``scores``: right, wrong, right, wrong... A pair with a missing score counts as a tie (the scorer said
    nothing)."""
    wins, ties = 0.0, 0
    pairs = list(zip(scores[::2], scores[1::2]))
    for right, wrong in pairs:
        if right is None or wrong is None or right == wrong:
            ties += 1
            wins += 0.5
        elif right > wrong:
            wins += 1
    n = len(pairs)
    acc = wins / n
    half = 1.96 * math.sqrt(max(acc * (1 - acc), 1e-12) / n)
    return {"pair_accuracy": round(acc, 3), "ci95": f"{acc - half:.3f}-{acc + half:.3f}", "ties": round(ties / n, 3),
            "n_questions": n}


def short(name: str) -> str:
    return Path(name).name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judges", nargs="+", default=["smollm2-135m-instruct"])
    parser.add_argument("--committee", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--per-family", type=int, default=0, help="questions per family (0: all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--smoke", action="store_true", help="the lab model, 2 questions per family")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.smoke:  # the lab's base model by its folder (a zoo name needs notebook 00's run)
        from helpers.lab.zoo import ZOO_DIR
        args.judges = args.committee = [str(ZOO_DIR / "base")]
        args.per_family = 2
    items = read(repo_root() / "data" / "general_eval.jsonl")
    if args.per_family:
        rng, by = random.Random(0), {}
        for it in items:
            by.setdefault(it["family"], []).append(it)
        items = [it for group in by.values() for it in rng.sample(group, min(args.per_family, len(group)))]
    rows = [r for pair in candidate_pairs(items) for r in pair]
    run = "judge-study"
    out = []
    for judge in args.judges:
        committee = scorers.JudgeCommittee(run, [judge], batch_size=args.batch_size, progress=False, min_parse_rate=0.0)
        scores = committee.score(rows)
        ratings = Counter(scorers.parse_rating(t) for t in committee.raw[judge])
        out.append({"scorer": f"judge {short(judge)}", **pair_accuracy(scores),
                    "parse_rate": round(committee.parse_rate[judge], 3),
                    "rating_counts": {str(k): v for k, v in sorted(ratings.items(), key=lambda kv: str(kv[0]))},
                    "examples": committee.raw[judge][:6]})
    likelihood = scorers.LikelihoodCommittee(run, args.committee, batch_size=args.batch_size, progress=False)
    scores = likelihood.score(rows)
    out.append({"scorer": f"likelihood {' + '.join(map(short, args.committee))}", **pair_accuracy(scores)})
    if len(likelihood.per_model) > 1:
        for name, per_model in likelihood.per_model.items():
            out.append({"scorer": f"likelihood {short(name)}", **pair_accuracy(per_model)})
    default = "judge_study-smoke.json" if args.smoke else "judge_study.json"
    report(out, ["scorer", "pair_accuracy", "ci95", "ties", "parse_rate", "n_questions"],
           args.json or repo_root() / "outputs" / "bench" / default, items=len(items), chance=0.5)
    for r in out:
        if "rating_counts" in r:
            print(f"{r['scorer']}: ratings {r['rating_counts']}; first answers {r['examples'][:3]}")


if __name__ == "__main__":
    main()
