"""Notebook 06's held-out sets (helpers.heldout): file formats, bad rows named with the fix, lab and file sets kept
apart, per-family samples."""
import pytest

from helpers import datafiles, heldout
from tests.conftest import write_jsonl


def test_eval_file_formats_and_defaults(tmp_path):
    rows = [{"instruction": "What is 2+2? Answer with the number only.", "answer": "4", "family": "gsm8k"},
            {"messages": [{"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris"}]},
            {"instruction": "Translate", "input": "chat", "output": "cat"}]
    items = heldout.load_eval_set(write_jsonl(tmp_path / "g.jsonl", rows), "general")
    assert [(e.family, e.response) for e in items] == [("gsm8k", "4"), ("general", "Paris"), ("general", "cat")]
    assert items[2].instruction == "Translate\n\nchat"
    (tmp_path / "d.csv").write_text("instruction,answer,family\nDose of X?,5 mg,dosing\n")
    assert heldout.load_eval_set(str(tmp_path / "d.csv"), "domain") == [
        heldout.EvalItem("dosing", "Dose of X?", "5 mg")]


def test_bad_eval_files_name_the_row_and_the_fix(tmp_path):
    from helpers.datafiles import DataError

    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": "q", "answer": "a", "family": "f"}])
    with pytest.raises(DataError, match="needs eval_general and eval_domain"):
        heldout.eval_sets("", "")
    with pytest.raises(DataError, match="needs eval_domain"):
        heldout.eval_sets(good, "")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "q", "answer": "a"}, {"instruction": "q2"}])
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: missing field 'answer'"):
        heldout.load_eval_set(bad, "general")
    multi = write_jsonl(tmp_path / "multi.jsonl", [{"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    with pytest.raises(DataError, match=r"multi.jsonl, line 1: an evaluation row is one user turn"):
        heldout.load_eval_set(multi, "general")
    with pytest.raises(DataError, match=r"family \['f'\] occurs in both"):
        heldout.eval_sets(good, good)
    with pytest.raises(DataError, match="no such file"):
        heldout.load_eval_set(str(tmp_path / "missing.jsonl"), "general")
    with pytest.raises(DataError, match="not hub ids .*split='test'"):
        heldout.load_eval_set("openai/gsm8k", "general")


def test_lab_sets_and_eval_files_are_not_mixed_up(tmp_path):
    with pytest.raises(ValueError, match="set but lab = True"):
        heldout.held_out(True, 2, 5, general=str(tmp_path / "g.jsonl"))
    assert len(heldout.held_out(True, 1, 5)[0]["domain"]) == 3


def test_eval_rows_carry_choices_and_a_bad_label_names_the_row(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"instruction": "q", "answer": "a", "aliases": ["A."], "choices": ["a", "b"], "label": 0}\n'
                    '{"instruction": "r", "answer": "b", "choices": ["a", "b"], "label": 5}\n')
    with pytest.raises(datafiles.DataError, match=r"g.jsonl, line 2: 'choices' needs 'label'"):
        heldout.load_eval_set(str(path), "general")
    path.write_text('{"instruction": "q", "answer": "a", "aliases": ["A."], "choices": ["a", "b"], "label": 0}\n')
    item = heldout.load_eval_set(str(path), "general")[0]
    assert (item.aliases, item.choices, item.label) == (("A.",), ("a", "b"), 0)


def test_real_eval_files_are_sampled_per_family(tmp_path):
    sets, cut = heldout.held_out(False, 3, 0, "data/general_eval.jsonl", "data/clinical_eval.jsonl")
    from collections import Counter

    assert set(Counter(e.family for e in sets["general"]).values()) == {3} and len(sets["general"]) == 30
    assert sets == heldout.held_out(False, 3, 0, "data/general_eval.jsonl", "data/clinical_eval.jsonl")[0]
    n_clinical = sum(1 for _ in open("data/clinical_eval.jsonl"))
    assert cut == [f"general set (data/general_eval.jsonl): 30 of its 488 questions scored (n_eval_per_family = 3 "
                   "per family); set n_eval_per_family = 0 to score them all",
                   f"domain set (data/clinical_eval.jsonl): {len(sets['domain'])} of its {n_clinical} questions "
                   "scored (n_eval_per_family = 3 per family); set n_eval_per_family = 0 to score them all"]
    everything, cut = heldout.held_out(False, 0, 0, "data/general_eval.jsonl", "data/clinical_eval.jsonl")
    assert len(everything["general"]) == 488 and cut == []
