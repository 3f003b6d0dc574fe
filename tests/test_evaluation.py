"""Stage 06: seed aggregation, forgetting, the targets' checks, the report, and scoring against the lab's references."""
import pytest

from helpers import evaluation
from helpers.lab import zoo


def result(general, domain, seed=0, fam=None):
    return {"seed": seed, "general_accuracy": general, "domain_accuracy": domain,
            "per_family": fam or {"arithmetic": general, "dosing": domain}}


def results(arms):
    r = {"n_general": 20, "n_domain": 6, "base": result(0.9, 0.0), "seeds": [0],
         "arms": {name: evaluation.aggregate([result(g, d)]) for name, (g, d) in arms.items()}}
    return evaluation.add_forgetting(r)


def test_aggregate_is_mean_and_sample_std_over_seeds():
    agg = evaluation.aggregate([result(0.8, 0.5, 0), result(0.9, 0.7, 1), result(1.0, 0.6, 2)])
    assert agg["n_seeds"] == 3
    assert agg["general_accuracy"] == pytest.approx(0.9) and agg["general_std"] == pytest.approx(0.1)
    assert agg["domain_accuracy"] == pytest.approx(0.6) and agg["domain_std"] == pytest.approx(0.1)
    assert agg["per_family"]["arithmetic"] == pytest.approx(0.9)
    assert [s["seed"] for s in agg["seeds"]] == [0, 1, 2]
    assert evaluation.aggregate([result(0.8, 0.5)])["general_std"] == 0.0


def test_checks_report_what_was_measured():
    r = results({"domain_only": (0.5, 0.8), "public_mix": (0.7, 0.8), "ours": (0.89, 0.79), "oracle": (0.9, 0.8)})
    assert r["arms"]["domain_only"]["forgetting"] == pytest.approx(0.4)
    met = {c["target"]: c["met"] for c in evaluation.checks(r)}
    assert all(met.values()), met
    r = results({"domain_only": (0.85, 0.8), "public_mix": (0.9, 0.8), "ours": (0.8, 0.5), "oracle": (0.9, 0.8)})
    met = {c["target"].split(" ")[0] + str(i): c["met"] for i, c in enumerate(evaluation.checks(r))}
    assert not any(met.values()), met


def test_checks_do_not_fail_on_float_rounding():
    r = results({"domain_only": (0.85, 0.83), "ours": (0.88, 0.81)})  # 0.83 - 0.81 is 0.020000000000000018
    met = {c["target"]: c["met"] for c in evaluation.checks(r)}
    assert met["ours' domain accuracy within 2 points of domain_only"]


def test_outputs_trained_on_a_gpu_evaluate_on_the_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    setup = evaluation.eval_setup({"device": "cuda", "compute_dtype": "bfloat16", "quantization": "nf4", "notice": ""})
    assert (setup.device, setup.compute_dtype, setup.quantization) == ("cpu", "float32", "nf4") and setup.notice


def test_report_lists_every_model_and_the_checks(outputs):
    r = results({"domain_only": (0.5, 0.8), "ours": (0.89, 0.79)})
    r["checks"] = evaluation.checks(r)
    training = {"model": "base", "setup": {"quantization": "nf4", "compute_dtype": "float32", "device": "cpu"},
                "hp": {"rank": 16, "max_steps": 300, "batch_size": 32, "learning_rate": 3e-3,
                       "train_embeddings": True}, "seeds": [0]}
    text = evaluation.report("r", r, training, ["tradeoff.png"]).read_text()
    for needle in ("| base |", "| domain_only | 0.500 | 0.800 | +40.0 |", "| ours |", "met: domain_only loses",
                   "06_evaluation/tradeoff.png"):
        assert needle in text, needle


def test_sweep_points_are_ordered_by_share():
    r = results({"domain_only": (0.5, 0.8), "ours": (0.89, 0.79), "ours_g95": (0.9, 0.6)})
    points = evaluation.sweep_points(r, {"ours_g95": 0.95, "domain_only": 0.0, "ours": 0.83, "missing": 0.5})
    assert [p[0] for p in points] == ["domain_only", "ours", "ours_g95"]


def test_scoring_uses_the_held_out_references():
    sets = evaluation.heldout_sets(2, seed=5)
    assert len(sets["general"]) == 2 * 10 and len(sets["domain"]) == 2 * 3
    setup = evaluation.eval_setup({"device": "cpu", "compute_dtype": "float32", "quantization": "none"})
    model, tok = evaluation.load_for_eval("r", None, None, str(zoo.ZOO_DIR / "base"), setup)
    got = evaluation.score_sets(model, tok, sets)
    assert got["domain_accuracy"] == 0.0  # the base model never saw the domain
    assert got["general_accuracy"] > 0.5 and set(got["per_family"]) >= {"arithmetic", "dosing"}


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_eval_files_score_like_the_lab_sets(tmp_path):
    """A real run's files go through the same scorer: the lab's held-out set written to files scores the same."""
    sets = evaluation.heldout_sets(2, seed=5)
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", [{"instruction": e.instruction, "answer": e.response,
                                                              "family": e.family} for e in examples])
             for name, examples in sets.items()}
    loaded = evaluation.eval_sets(files["general"], files["domain"])
    assert [(e.family, e.instruction, e.response) for e in loaded["general"]] == \
        [(e.family, e.instruction, e.response) for e in sets["general"]]
    setup = evaluation.eval_setup({"device": "cpu", "compute_dtype": "float32", "quantization": "none"})
    model, tok = evaluation.load_for_eval("r", None, None, str(zoo.ZOO_DIR / "base"), setup)
    a, b = evaluation.score_sets(model, tok, sets), evaluation.score_sets(model, tok, loaded)
    assert a["per_family"] == b["per_family"] and a["general_accuracy"] == b["general_accuracy"]


def test_eval_file_formats_and_defaults(tmp_path):
    rows = [{"instruction": "What is 2+2? Answer with the number only.", "answer": "4", "family": "gsm8k"},
            {"messages": [{"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris"}]},
            {"instruction": "Translate", "input": "chat", "output": "cat"}]
    items = evaluation.load_eval_set(write_jsonl(tmp_path / "g.jsonl", rows), "general")
    assert [(e.family, e.response) for e in items] == [("gsm8k", "4"), ("general", "Paris"), ("general", "cat")]
    assert items[2].instruction == "Translate\n\nchat"
    (tmp_path / "d.csv").write_text("instruction,answer,family\nDose of X?,5 mg,dosing\n")
    assert evaluation.load_eval_set(str(tmp_path / "d.csv"), "domain") == [
        evaluation.EvalItem("dosing", "Dose of X?", "5 mg")]


def test_bad_eval_files_name_the_row_and_the_fix(tmp_path):
    from helpers.mixing import DataError

    good = write_jsonl(tmp_path / "good.jsonl", [{"instruction": "q", "answer": "a", "family": "f"}])
    with pytest.raises(DataError, match="needs eval_general and eval_domain"):
        evaluation.eval_sets("", "")
    with pytest.raises(DataError, match="needs eval_domain"):
        evaluation.eval_sets(good, "")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "q", "answer": "a"}, {"instruction": "q2"}])
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: missing field 'response'"):
        evaluation.load_eval_set(bad, "general")
    multi = write_jsonl(tmp_path / "multi.jsonl", [{"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}])
    with pytest.raises(DataError, match=r"multi.jsonl, line 1: an evaluation row is one user turn"):
        evaluation.load_eval_set(multi, "general")
    with pytest.raises(DataError, match=r"family \['f'\] occurs in both"):
        evaluation.eval_sets(good, good)
    with pytest.raises(DataError, match="no such file"):
        evaluation.load_eval_set(str(tmp_path / "missing.jsonl"), "general")


def test_eval_renders_a_real_template(tmp_path):
    """Scoring a stand-in of a real family: prompts go through its own chat template and answers are decoded."""
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    model = standins.model("qwen2_5", tok)
    items = [evaluation.EvalItem("f", "Capital of France?", "Paris")]
    got = evaluation.exact_match(model, tok, items, max_new_tokens=4)
    assert got["n"] == 1 and got["per_family"] == {"f": 0.0}  # a random model is wrong, but it ran
    assert isinstance(got["samples"][0]["output"], str)
