"""Notebook hygiene, presets, and notebooks executed end to end by papermill with small parameters."""
import ast
import json

import nbformat
import pytest

from helpers import pipeline
from tests.conftest import ROOT

NOTEBOOKS = pipeline.discover(ROOT / "notebooks")
PRESETS = sorted((ROOT / "presets").glob("*.yaml"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "outputs not stripped: run `make strip`"
    (params,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = []
    for stmt in ast.parse(params.source).body:
        assert isinstance(stmt, ast.Assign), f"parameters cell: only `name = literal` lines, got {ast.unparse(stmt)}"
        ast.literal_eval(stmt.value)  # plain literals only: papermill and YAML presets can set them
        names.append(stmt.targets[0].id)
    # papermill's own parser sees every one of them (it silently skips lines it cannot parse, e.g. a quote in a comment)
    assert list(pipeline.notebook_parameters(path)) == names
    assert "run_name" in names


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_presets_only_use_declared_keys(preset):
    declared = {p.stem: pipeline.notebook_parameters(p) for p in NOTEBOOKS}
    pipeline.check_keys(pipeline.load_preset(preset), declared)


@pytest.mark.slow
@pytest.mark.xdist_group("end_to_end_lab")  # a worker of its own: tests/conftest.py
def test_notebooks_run_end_to_end_under_papermill(outputs):
    timings = pipeline.run(ROOT / "presets" / "smoke.yaml")
    assert list(timings) == [p.stem for p in NOTEBOOKS]
    run = outputs / "smoke"

    stage = run / "00_lab"
    metrics = json.loads((stage / "metrics.json").read_text())
    for key in ("base_general_accuracy", "base_domain_accuracy", "per_family", "zoo"):
        assert key in metrics
    assert set(metrics["zoo"]) == {"base", "gen_small", "gen_uniform"}
    assert metrics["n_general"] == 3 * 10
    m00_base = metrics["base_general_accuracy"]  # 06 scores the same held-out set, with the 4-bit base
    for f in ("manifest.json", "accuracy_per_family.png", "loss_curves.png", "models.json", "domain_train.jsonl",
              "public_sft.jsonl"):
        assert (stage / f).exists(), f
    rows = [json.loads(line) for line in (stage / "domain_train.jsonl").read_text().splitlines()]
    assert len(rows) == 20 and rows[0]["messages"][1]["role"] == "assistant"

    m01 = json.loads((run / "01_reconstruct" / "metrics.json").read_text())
    assert m01["n_sampled"] == 60 and 3 <= m01["n_kept"] <= 60
    for key in ("well_formed_rate", "tv_distance", "n_clusters"):
        assert key in m01
    assert (run / "01_reconstruct" / "clusters.png").exists() and (run / "01_reconstruct" / "lab_vs_hidden.png").exists()

    m03 = json.loads((run / "03_filtering" / "metrics.json").read_text())
    assert m03["n_candidates"] == m01["n_kept"] * 2 * 3 and 0 < m03["n_selected"] <= m01["n_kept"]
    for key in ("judge_parse_failures", "dropped", "selected_correct_rate", "random_candidate_correct_rate"):
        assert key in m03

    m04 = json.loads((run / "04_mixing" / "metrics.json").read_text())
    ablation = {"ours_1x1", "ours_1x3_self", "ours_weak", "uniform_ours", "sdft", "sdft_ours"}  # smoke: both on
    assert set(m04["arms"]) == {"domain_only", "public_mix", "ours", "oracle", "ours_g50"} | ablation  # sweep [0.5]
    assert m04["sweep"] == {"domain_only": 0.0, "ours_g50": 0.5, "ours": 0.83}
    assert set(m04["ablation"]) == ablation - {"sdft", "sdft_ours"}
    assert len({a["n_rows"] for name, a in m04["arms"].items() if name != "ours_g50"}) == 1
    assert set(m03["ablation"]) == {"1x1", "1x3_self", "weak"} and all(m03["ablation"].values())
    assert {a["n_domain"] for name, a in m04["arms"].items() if name not in ("domain_only", "sdft")} == {m04["n_domain"]}
    assert m04["arms"]["sdft"] == m04["arms"]["domain_only"] and m04["arms"]["sdft_ours"] == m04["arms"]["ours"]
    from helpers.mixing import load_arms

    arm = load_arms("smoke")["ours"]
    assert arm.column_names == ["messages", "source"] and arm[0]["messages"][-1]["role"] == "assistant"

    m02 = json.loads((run / "02_generation" / "metrics.json").read_text())
    assert m02["n_instructions"] == m01["n_kept"] and m02["samples_per_model"] == 2
    assert m02["n_rows"] == m01["n_kept"] * 2 * 3
    for key in ("models", "new_tokens", "tokens_per_second"):
        assert key in m02
    assert all(v > 0 for v in m02["tokens_per_second"].values())
    # 05: one adapter and metrics per arm it trains (smoke: one arm of each kind) and seed (2 seeds, 4 steps)
    m05 = json.loads((run / "05_training" / "metrics.json").read_text())
    trained = set(pipeline.load_preset(ROOT / "presets" / "smoke.yaml")["arms"])
    assert set(m05["arms"]) == trained < set(m04["arms"]) and m05["seeds"] == [0, 1]
    assert m05["setup"]["quantization"] == "nf4" and m05["setup"]["compute_dtype"] == "float32"
    for arm, per_seed in m05["arms"].items():
        for m in per_seed:
            assert m["steps"] == 4 and m["trainable_params"] > 0 and m["final_loss"] > 0
            arm_dir = run / "05_training" / "arms" / arm / f"seed{m['seed']}"
            assert (arm_dir / "adapter_model.safetensors").exists()
            per_arm = json.loads((arm_dir / "metrics.json").read_text())
            for key in ("train_seconds", "final_loss", "quantization", "trainable_params"):
                assert per_arm[key] == m[key]
    assert (run / "05_training" / "loss_curves.png").exists()

    # 06: results.json with the base and every arm, the figures and the report
    res = json.loads((run / "06_evaluation" / "results.json").read_text())
    assert set(res["arms"]) == trained
    for entry in [res["base"], *res["arms"].values()]:
        assert 0 <= entry["general_accuracy"] <= 1 and 0 <= entry["domain_accuracy"] <= 1
        assert len(entry["per_family"]) == 13
    assert all(a["n_seeds"] == 2 and "forgetting" in a for a in res["arms"].values())
    assert res["base"]["general_accuracy"] == pytest.approx(m00_base, abs=0.07)  # at most 2 of 30 answers differ
    for f in ("accuracy_bars.png", "per_family_heatmap.png", "tradeoff.png", "manifest.json"):
        assert (run / "06_evaluation" / f).exists(), f
    report = (run / "report.md").read_text()
    assert all(f"| {name} |" in report for name in ["base", *trained])

    timings_file = json.loads((run / "timings.json").read_text())
    assert set(timings_file) == set(timings)

    # held-out questions from files, as a real run reads them (here a slice of the lab's, under new family names)
    from helpers import heldout

    files = {}
    for name, examples in heldout.heldout_sets(1, seed=3).items():
        files[name] = outputs / f"eval_{name}.jsonl"
        files[name].write_text("".join(json.dumps({"instruction": e.instruction, "answer": e.response,
                                                   "family": f"file_{e.family}"}) + "\n" for e in examples))

    # 05 and 06 of the real-model preset, its model swapped for an offline stand-in of Qwen2.5 (architecture and chat
    # template), on this run's arms and the files above
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    qwen = outputs / "qwen2_5-standin"
    standins.model("qwen2_5", tok).save_pretrained(qwen)
    tok.save_pretrained(qwen)
    pipeline.run(ROOT / "presets" / "qwen2.5-0.5b.yaml", only=["05", "06"], overrides=[
        "run_name=smoke", f"model={qwen}", "arms=[ours, domain_only]", "max_steps=2", "train_batch_size=4",
        "max_length=128", "seeds=[0]", f"eval_general={files['general']}", f"eval_domain={files['domain']}",
        "answer_max_new_tokens=12", "progress=false"])
    m05 = json.loads((run / "05_training" / "metrics.json").read_text())
    assert m05["model"] == str(qwen) and not m05["hp"]["train_embeddings"] and m05["setup"]["quantization"] == "nf4"
    assert set(m05["arms"]) == {"ours", "domain_only"}  # the lab-model adapters of the other arms are not kept
    res = json.loads((run / "06_evaluation" / "results.json").read_text())
    assert res["eval_sets"] == {"general": str(files["general"]), "domain": str(files["domain"])}
    assert (res["n_general"], res["n_domain"]) == (10, 3) and set(res["arms"]) == {"ours", "domain_only"}
    assert all(f.startswith("file_") for f in res["base"]["per_family"]) and len(res["base"]["per_family"]) == 13


@pytest.mark.slow
@pytest.mark.xdist_group("end_to_end_smollm2")  # a worker of its own: tests/conftest.py
def test_the_real_track_runs_end_to_end_on_real_smollm2(outputs):
    """Notebooks 01-06 on real SmolLM2-135M-Instruct, installed from a registry package: every stage's real-model
    path, at tiny sizes (gemma-3-270m's few-shot path is tested in tests/test_models.py)."""
    timings = pipeline.run(ROOT / "presets" / "smollm2-smoke.yaml", start="01")
    assert list(timings) == [p.stem for p in NOTEBOOKS[1:]]
    run = outputs / "smollm2-smoke"
    m01 = json.loads((run / "01_reconstruct" / "metrics.json").read_text())
    assert m01["prequery"]["stop_token"] == "<|im_end|>" and m01["n_kept"] >= 3
    rows = [json.loads(line) for line in (run / "02_generation" / "generations.jsonl").read_text().splitlines()]
    assert {r["frame"] for r in rows} == {"chat"} and len(rows) == m01["n_kept"]
    m04 = json.loads((run / "04_mixing" / "metrics.json").read_text())
    assert set(m04["arms"]) == {"domain_only", "ours"}  # public_mix (the stand-in set): presets/smollm2.yaml
    m05 = json.loads((run / "05_training" / "metrics.json").read_text())
    arm = json.loads((run / "05_training" / "arms" / "ours" / "seed0" / "metrics.json").read_text())
    assert arm["loss_format"] == "prompt_completion" and m05["setup"]["quantization"] == "nf4"
    # equal domain exposure (domain_epochs = 1, batches of 2): ours, half general rows, trains one step per domain
    # row, domain_only (its domain rows repeated to the same size) half as many, rounded up
    only, n_domain = m05["arms"]["domain_only"][0], arm["domain_rows"]
    assert (arm["steps"], only["steps"], only["domain_rows"]) == (n_domain, -(-n_domain // 2), n_domain)
    assert arm["domain_exposures"] == 1 and 1 <= only["domain_exposures"] <= 1 + 2 / n_domain  # a batch rounds up
    assert (only["general_rows"], only["general_exposures"]) == (0, 0) and arm["general_exposures"] >= 1
    assert arm["tokens_seen"] > only["tokens_seen"] > 0
    results = json.loads((run / "06_evaluation" / "results.json").read_text())
    assert results["answer_match"] == "lenient" and results["n_general"] == 10
    for name in ("domain_only", "ours"):
        assert results["arms"][name]["kl_drift"] > 0 and "mc_general_accuracy" in results["arms"][name]
    assert 0 <= results["base"]["mc_general_accuracy"] <= 1
    assert "Multiple choice" in (run / "report.md").read_text()
    # lm-evaluation-harness on the base and both adapters (a shipped set's task, 3 questions; the answers task
    # and its lenient metric, question by question against ours: tests/test_lmeval.py)
    bench = results["benchmarks"]
    assert set(bench) == {"base", "domain_only", "ours"}
    assert all(0 <= b["general_eval_mc"]["acc_norm"] <= 1 for b in bench.values())
    assert (run / "06_evaluation" / "lm_eval" / "ours_seed0" / "results.json").exists()
    assert "## lm-evaluation-harness" in (run / "report.md").read_text()
