"""The arms registry (helpers.arms): what each arm is, read by notebooks 04, 05 and 06 instead of name prefixes."""
import pytest

from helpers import arms, mixing


def test_every_arm_is_well_formed():
    for arm in arms.ARMS.values():
        assert arm.rows in arms.ROWS and arm.method in arms.METHODS
        if arm.rows == "copy":
            assert arm.source in arms.ARMS  # a copy of another arm's rows


def test_the_training_method_comes_from_the_registry_not_the_name():
    assert arms.get("sdft").method == arms.get("sdft_ours").method == "sdft"
    assert arms.get("ours").method == arms.get("domain_only").method == "sft"


def test_sweep_arms_are_named_in_one_place():
    name = arms.sweep_name(0.5)
    assert name == "ours_g50" and arms.get(name).rows == "sweep"
    with pytest.raises(KeyError, match="unknown arm 'ours2'"):
        arms.get("ours2")


def test_options_turn_on_the_arms_the_registry_lists():
    assert [a.name for a in arms.with_option("sdft")] == ["sdft", "sdft_ours"]
    assert arms.optional(["ours", "sdft"]) and not arms.optional(["ours", "domain_only", "ours_g50"])


def test_build_arms_copies_rows_for_the_sdft_arms():
    rows = lambda p, n: [{"messages": [{"role": "user", "content": f"{p}{i}"}, {"role": "assistant", "content": "a"}]}
                         for i in range(n)]  # noqa: E731
    built, _ = mixing.build_arms(rows("d", 10), {"ours": rows("g", 100)}, 0.8, sdft=True)
    for arm in arms.with_option("sdft"):
        assert sorted(map(str, built[arm.name])) == sorted(map(str, built[arm.source]))
