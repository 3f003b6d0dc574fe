from collections import Counter

import pytest

from helpers.lab import tasks


@pytest.mark.parametrize("name", sorted(tasks.ALL_FAMILIES))
def test_every_generated_answer_verifies(name):
    family = tasks.ALL_FAMILIES[name]
    parse_set = {name: family}
    for e in tasks.sample_examples({name: 1.0}, 400, seed=3):
        assert family.match(e.instruction) == family.match(e.instruction, in_support=True) == (e.phrasing, e.slots)
        assert tasks.verify(e.instruction, e.response, parse_set), e
        assert not tasks.verify(e.instruction, e.response + " x", parse_set)


def test_world_parser_maps_each_instruction_to_its_own_family():
    world = {**tasks.GENERAL_FAMILIES, **tasks.DOMAIN_FAMILIES}
    for e in tasks.sample_examples(tasks.uniform(world), 5000, seed=11):
        assert tasks.parse_instruction(e.instruction) == (e.family, e.slots)


def test_phrasing_diversity():
    for name, family in tasks.ALL_FAMILIES.items():
        minimum = 3 if family.group == "public" else 5
        assert len(set(family.phrasings)) >= minimum, name
        sample = tasks.sample_examples({name: 1.0}, 600, seed=5)
        used = Counter(e.phrasing for e in sample)
        assert set(used) == set(range(len(family.phrasings))), f"{name}: some phrasing never drawn"
        assert min(used.values()) >= 0.5 * 600 / len(family.phrasings), f"{name}: phrasings badly unbalanced"
        # the first four words of the phrasings differ (not one template with a synonym swapped at the end)
        openings = {" ".join(p.split()[:4]) for p in family.phrasings}
        assert len(openings) >= minimum - 1, name


def test_at_least_eight_general_families_and_a_domain():
    assert len(tasks.GENERAL_FAMILIES) >= 8
    assert tasks.DOMAIN_FAMILIES
    assert not set(tasks.GENERAL_FAMILIES) & set(tasks.DOMAIN_FAMILIES)


def test_public_set_differs_from_the_base_world():
    covered = {name.removeprefix("public_") for name in tasks.PUBLIC_MIXTURE}
    assert covered < set(tasks.GENERAL_FAMILIES)  # a strict subset of the skills
    public = tasks.sample_examples(tasks.PUBLIC_MIXTURE, 500, seed=2)
    # none of its phrasings is one of the base world's
    assert all(tasks.parse_instruction(e.instruction) is None for e in public)
    # but its answers are right
    assert all(tasks.verify(e.instruction, e.response, tasks.PUBLIC_FAMILIES) for e in public)


def test_sampling_is_seeded():
    mix = tasks.uniform(tasks.GENERAL_FAMILIES)
    assert tasks.sample_examples(mix, 50, seed=1) == tasks.sample_examples(mix, 50, seed=1)
    assert tasks.sample_examples(mix, 50, seed=1) != tasks.sample_examples(mix, 50, seed=2)


def test_unknown_family_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown families"):
        tasks.sample_examples({"poetry": 1.0}, 1, seed=0)


def test_non_instructions_do_not_parse():
    for text in ["", "56", "cat dog", "What is 7 times?", "Reverse the order of these words: Cat", "hello world"]:
        assert tasks.parse_instruction(text) is None
    assert not tasks.verify("hello", "anything")


def test_bad_phrasing_is_rejected():
    with pytest.raises(ValueError, match="must use exactly slots"):
        tasks.Family("bad", "general", ("Say {x}",), {"y": "word"}, lambda r: {}, lambda s: "")


def test_instructions_outside_a_family_support_are_flagged():
    for text in ["Sort ascending: 3 7 7 1", "Sort ascending: 12 7 1", "What is 12 plus 3?", "What is 3 minus 7?",
                 "Continue the sequence: 3 5 8 10", "Reverse this list: cat cat dog", "Spell the word zebra.",
                 "Which is larger, 45 or 45?", "Which is larger, 5 or 45?", "Convert to uppercase: moon zebra"]:
        assert tasks.parse_instruction(text, in_support=True) is None, text
    assert tasks.parse_instruction("Sort ascending: 3 7 7 1") == ("sort", {"nums": "3 7 7 1"})  # well-formed though
    assert tasks.verify("Sort ascending: 3 7 7 1", "1 3 7 7")
