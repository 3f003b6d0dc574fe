"""Two arms of two runs side by side: the difference in each of notebook 06's measures, with its 95% interval.

    python bench/compare_arms.py RUN_A:ARM RUN_B:ARM [RUN_A:ARM RUN_B:ARM ...] [--json outputs/bench/compare.json]

Reads each run's ``06_evaluation/results.json`` (``HELPERS_OUTPUTS`` or ``outputs/``) and prints, for every pair,
A - B in general and domain accuracy (answers and multiple choice) and in KL drift. The interval adds the two arms'
standard errors (seeds and set sizes, ``helpers.uncertainty``) as if they were independent: both answered the same
questions, so it is conservative, as notebook 06's verdicts are. The last column says "A > B" or "A < B" where the
interval lies on one side of 0, else "not distinguishable" (for KL drift, lower is less drift). Comparing runs is fair when they share their 01-03 (the same general
pool); across runs with their own 01-03 the draw adds a spread these intervals leave out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import report  # noqa: E402

from helpers import uncertainty  # noqa: E402
from helpers.runs import read_json, require  # noqa: E402

SIDES = {uncertainty.MET: "A > B", uncertainty.NOT_MET: "A < B", uncertainty.UNDECIDED: uncertainty.UNDECIDED}
MEASURES = ("general_accuracy", "domain_accuracy", "mc_general_accuracy", "mc_domain_accuracy", "kl_drift")


def arm_results(spec: str) -> tuple[str, dict]:
    """``RUN:ARM`` -> (label, the arm's entry of RUN's results.json; ``base`` for the base model)."""
    run, sep, arm = spec.partition(":")
    if not sep or not run or not arm:
        raise SystemExit(f"{spec!r}: give RUN:ARM, e.g. smollm2-gpu-claim-velish:ours")
    results = read_json(require(run, "06_evaluation", "results.json"))
    if arm == "base":
        return spec, results["base"]
    if arm not in results["arms"]:
        raise SystemExit(f"{spec!r}: run {run} has no arm {arm!r}; it has {sorted(results['arms'])}")
    return spec, results["arms"][arm]


def compare(a: dict, b: dict) -> dict:
    """A - B for every measure both have: the difference, its standard error and the verdict on ``A - B > 0``."""
    out = {}
    for key in MEASURES:
        if key in a and key in b:
            missing = [k for k in (uncertainty.spread_key(key, "se"),) for m in (a, b) if k not in m]
            if missing:
                raise SystemExit(f"{key}: a result without its standard error ({missing[0]}), from before notebook 06 "
                                 "recorded them: rerun 06 for that run")
            se = uncertainty.difference_se(a[uncertainty.spread_key(key, "se")], b[uncertainty.spread_key(key, "se")])
            diff = a[key] - b[key]
            out[key] = {"a": round(a[key], 4), "b": round(b[key], 4), "diff": round(diff, 4), "se": round(se, 4),
                        "verdict": SIDES[uncertainty.decide(diff, se, 0.0, strict=True)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", help="RUN_A:ARM RUN_B:ARM, as many pairs as wanted")
    parser.add_argument("--json", type=Path, default=Path("outputs/bench/compare_arms.json"))
    args = parser.parse_args()
    if len(args.pairs) % 2:
        raise SystemExit(f"{len(args.pairs)} arms given: give them in pairs (A B A B ...)")
    rows = []
    for spec_a, spec_b in zip(args.pairs[::2], args.pairs[1::2]):
        (label_a, a), (label_b, b) = arm_results(spec_a), arm_results(spec_b)
        for key, c in compare(a, b).items():
            scale, digits = (1, 3) if key == "kl_drift" else (100, 2)  # accuracies in points, KL in nats
            rows.append({"a": label_a, "b": label_b, "measure": key, "A": c["a"], "B": c["b"],
                         "A-B": round(scale * c["diff"], digits),
                         "95%": round(scale * uncertainty.Z95 * c["se"], digits), "which": c["verdict"]})
    report(rows, ["a", "b", "measure", "A", "B", "A-B", "95%", "which"], args.json,
           note="A-B and its 95% half-width in points for accuracies, in nats for KL drift")


if __name__ == "__main__":
    main()
