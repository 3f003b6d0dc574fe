"""How sure a measured accuracy is, and verdicts that say so: "met", "not met" or "not distinguishable".

Two things make an accuracy uncertain:

* **the questions**: a held-out set is a sample. With ``n`` questions a family's accuracy has the binomial standard
  error ``sqrt(p (1 - p) / n)``; we use the Agresti-Coull form (two successes and two failures added), which stays
  above 0 at ``p = 0`` or ``1``, where a set of 16 questions says little. A headline accuracy is a mean over
  families, so its variance is the mean of theirs divided by the number of families.
* **the training run**: with several seeds, the standard deviation over seeds divided by ``sqrt(seeds)``. With one
  seed this part is not measured, and the report says so.

The two add as variances. A difference between two models adds both models' variances; they answered the same
questions, so this overstates the difference's error (a conservative verdict, never a hasty one).

A target ``value >= threshold`` is **met** when the 95% interval (``value ± 1.96 se``) lies at or above the
threshold, **not met** when it lies below, and **not distinguishable** when it straddles it.
"""

from __future__ import annotations

import math
from collections import Counter

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile: a two-sided 95% interval
EPS = 1e-9  # 0.85 - 0.83 is 0.020000000000000018: a value on its threshold counts as on it
MET, NOT_MET, UNDECIDED = "met", "not met", "not distinguishable"


def spread_key(key: str, kind: str) -> str:
    """Where results keep a measure's spread (``kind``: "std" over seeds, "se" its standard error):
    ``general_accuracy`` -> ``general_std``, ``kl_drift`` -> ``kl_drift_se``."""
    return key.replace("accuracy", kind) if key.endswith("accuracy") else f"{key}_{kind}"


def family_counts(examples, families=None) -> dict[str, int]:
    """Questions per family among ``examples`` (objects with ``.family``), only ``families`` if given."""
    counts = Counter(e.family for e in examples)
    return {f: counts[f] for f in (families if families is not None else sorted(counts))}


def questions_se(per_family: dict[str, float], counts: dict[str, int]) -> float:
    """The standard error, from the finite question sets, of the mean over ``counts``' families of
    ``per_family`` accuracies (Agresti-Coull); 0 for no families."""
    fams = [f for f in counts if counts[f] > 0]
    if not fams:
        return 0.0
    variance = 0.0
    for f in fams:
        n = counts[f] + 4
        p = (per_family[f] * counts[f] + 2) / n
        variance += p * (1 - p) / n
    return math.sqrt(variance) / len(fams)


def combined_se(questions: float, seed_std: float = 0.0, n_seeds: int = 1) -> float:
    """The questions' standard error and the seeds' (``seed_std / sqrt(n_seeds)``), added as variances."""
    seeds = seed_std / math.sqrt(n_seeds) if n_seeds > 1 else 0.0
    return math.sqrt(questions ** 2 + seeds ** 2)


def difference_se(*ses: float) -> float:
    """The standard error of a sum or difference of independent estimates (conservative for paired ones)."""
    return math.sqrt(sum(s ** 2 for s in ses))


def interval(value: float, se: float) -> tuple[float, float]:
    return value - Z95 * se, value + Z95 * se


def decide(value: float, se: float, threshold: float, strict: bool = False) -> str:
    """The verdict on ``value >= threshold`` (``value > threshold`` if ``strict``: "beats" a baseline, where a tie
    is not a win) from its 95% interval."""
    low, high = interval(value, se)
    if low > threshold + EPS if strict else low >= threshold - EPS:
        return MET
    if high <= threshold + EPS if strict else high < threshold - EPS:
        return NOT_MET
    return UNDECIDED


def points(value: float, se: float) -> str:
    """``+3.1 ± 4.2 points`` (the 95% interval's half-width)."""
    return f"{100 * value:+.1f} ± {100 * Z95 * se:.1f} points"


def one_question_points(counts: dict[str, int]) -> float:
    """How many points of a headline accuracy (a mean over families) one question is worth, at most."""
    fams = [f for f in counts if counts[f] > 0]
    return 100 / (len(fams) * min(counts[f] for f in fams)) if fams else float("nan")
