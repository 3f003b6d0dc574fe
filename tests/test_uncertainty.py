"""Verdicts with their uncertainty: the standard errors, their coverage, and the three verdicts."""
import math
import random

import pytest

from helpers import uncertainty as u


def test_one_family_of_16_questions_at_half_is_worth_about_24_points_either_way():
    se = u.questions_se({"a": 0.5}, {"a": 16})
    assert se == pytest.approx(math.sqrt(0.25 / 20))
    assert 100 * u.Z95 * se == pytest.approx(21.9, abs=0.1)
    assert u.one_question_points({"a": 16}) == 6.25 and u.one_question_points({"a": 4, "b": 8}) == 12.5


def test_a_perfect_or_null_score_still_has_an_error():
    assert u.questions_se({"a": 1.0}, {"a": 10}) > 0.05 and u.questions_se({"a": 0.0}, {"a": 10}) > 0.05


def test_families_average_their_variances():
    one = u.questions_se({"a": 0.5}, {"a": 60})
    assert u.questions_se({"a": 0.5, "b": 0.5}, {"a": 60, "b": 60}) == pytest.approx(one / math.sqrt(2))
    assert u.questions_se({"a": 0.5, "b": 0.9}, {"a": 60, "b": 0}) == pytest.approx(one)  # an empty family: none


def test_seeds_add_their_standard_error():
    assert u.combined_se(0.03, 0.04, 1) == 0.03  # one seed: its spread is not measured
    assert u.combined_se(0.03, 0.04 * math.sqrt(4), 4) == pytest.approx(0.05)


def test_the_interval_covers_the_true_accuracy_about_95_percent_of_the_time():
    rng = random.Random(0)
    for p, n in ((0.7, 60), (0.9, 30), (0.5, 16)):
        covered = 0
        for _ in range(2000):
            x = sum(rng.random() < p for _ in range(n))
            low, high = u.interval(x / n, u.questions_se({"f": x / n}, {"f": n}))
            covered += low <= p <= high
        assert 0.92 <= covered / 2000 <= 0.99, (p, n, covered / 2000)


@pytest.mark.parametrize("value,se,threshold,verdict", [
    (0.20, 0.01, 0.15, u.MET), (0.10, 0.01, 0.15, u.NOT_MET), (0.16, 0.05, 0.15, u.UNDECIDED),
    (0.85 - 0.83, 0.0, 0.02, u.MET),  # on the threshold, float rounding aside
    (-0.01, 0.0, 0.0, u.NOT_MET)])
def test_decide(value, se, threshold, verdict):
    assert u.decide(value, se, threshold) == verdict


def test_a_tie_does_not_beat_a_baseline():
    assert u.decide(0.0, 0.0, 0.0, strict=True) == u.NOT_MET and u.decide(0.0, 0.0, 0.0) == u.MET
    assert u.decide(0.05, 0.01, 0.0, strict=True) == u.MET and u.decide(0.01, 0.01, 0.0, strict=True) == u.UNDECIDED
