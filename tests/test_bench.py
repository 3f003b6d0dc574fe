"""The benchmarks' smoke modes (bench/generation.py, bench/training.py --smoke) run on the CPU and write their JSON:
the GPU numbers in docs/performance.md come from the same scripts."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, tmp_path: Path, *extra: str, column: str = "tok_per_s") -> dict:
    out = tmp_path / f"{Path(script).stem}.json"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, script, "--smoke", "--json", str(out), *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert column in proc.stdout  # the table was printed
    return json.loads(out.read_text())


@pytest.mark.slow
def test_generation_bench_smoke(tmp_path):
    result = run("bench/generation.py", tmp_path)
    variants = [r["variant"] for r in result["rows"]]
    assert variants[0].startswith("helpers, before") and any(v.startswith("plain transformers") for v in variants)
    assert all(r["tok_per_s"] > 0 and r["new_tokens"] > 0 for r in result["rows"])
    assert result["rows"][0]["vs_first"] == 1.0 and result["machine"]["versions"]["transformers"]


@pytest.mark.slow
def test_training_bench_smoke(tmp_path):
    result = run("bench/training.py", tmp_path, "--models", str(tmp_path / "models"), "--batch", "2", "--ranks", "2",
                 "--unquantised")
    rows = {r["variant"]: r for r in result["rows"]}
    assert {"helpers, before", "helpers, default", "helpers, default, unquantised base", "plain loop"} <= set(rows)
    # the same training over two gloo ranks, a row each of the batch's two: the single process's losses, step by step
    ddp, single = rows["helpers, default, DDP on 2 ranks"], rows["helpers, default"]
    assert len(ddp["losses"]) == len(single["losses"]) == result["steps"] and ddp["loss_max_diff"] <= 1e-4
    assert rows["helpers, before"]["checkpointed"] == "4/4" and rows["helpers, default"]["checkpointed"] == "0/4"
    # Liger patches transformers' classes for the whole process: the rows without it run before any row with it
    order = [r["variant"] for r in result["rows"]]
    assert order[:2] == ["helpers, before", "plain loop"] and order[2] == "helpers, default", order
    assert all(r["tok_per_s"] > 0 for r in rows.values())


def test_track05_bench_smoke(tmp_path):
    """bench/track05.py: notebook 05's trainings on arms made from the shipped data, one row per arm and seed."""
    result = run("bench/track05.py", tmp_path, "--run", "bench-track05-smoke", column="train_seconds")
    rows = {r["arm"]: r for r in result["rows"]}
    assert set(rows) == {"domain_only", "public_mix", "ours"} and result["graphs"] and result["wall_s"] > 0
    # domain_epochs 1 over 6 domain rows at 4 a step: 2 steps alone, 9 when the rows are 17% of the arm
    assert (rows["domain_only"]["steps"], rows["public_mix"]["steps"], rows["ours"]["steps"]) == (2, 9, 9)
    assert rows["ours"]["tokens_seen"] > rows["public_mix"]["tokens_seen"]  # its answers repeated: longer rows
    assert not any(r["graphed"] for r in rows.values())  # a CPU: no graphs


def test_decode_attention_bench_smoke(tmp_path):
    """Every kernel the decode-attention bench times gives the float32 math backend's output on the CPU (cuDNN is
    GPU-only; the memory-efficient backend has no CPU kernel and says so in its row)."""
    result = run("bench/decode_attention.py", tmp_path, column="of_bound")
    rows = {r["variant"]: r for r in result["rows"]}
    assert {"sdpa packed, auto", "sdpa packed, math", "sdpa expanded", "flex, block mask",
            "flex, score mask (generate's)"} <= set(rows)
    measured = [r for r in rows.values() if "error" not in r]
    assert len(measured) >= 6 and all(r["max_diff"] < 1e-5 and r["us"] > 0 for r in measured), measured
    assert all("efficient" in r["variant"] for r in rows.values() if "error" in r)


def test_evaluation_bench_smoke(tmp_path):
    """bench/evaluation.py on the lab's base (4-bit on the CPU): the three ways of loading an adapter for notebook
    06 score it alike, the dequantised base and the merge in float32 giving the 4-bit model's answers exactly."""
    result = run("bench/evaluation.py", tmp_path, column="score_s")
    assert [r["variant"] for r in result["rows"]] == ["4-bit base + adapter", "dequantised base + adapter",
                                                       "dequantised base, adapter merged"]
    assert all(r["general_answers_differing"] == r["verdicts_differing"] == 0 for r in result["rows"])
    assert len({r["kl_drift"] for r in result["rows"]}) == 1 and result["rows"][0]["kl_drift"] > 0
    assert result["n_general"] > 0 and all(r["score_s"] > 0 for r in result["rows"])


@pytest.mark.slow
def test_judge_study_smoke(tmp_path):
    """Both scorers rate a right and a wrong answer to each question; the scores are real numbers in range."""
    result = run("bench/judge_study.py", tmp_path, column="pair_accuracy")
    judge, likelihood = result["rows"]
    assert judge["scorer"] == "judge base" and likelihood["scorer"] == "likelihood base"
    assert judge["n_questions"] == likelihood["n_questions"] == result["items"] == 20  # 2 per family, 10 families
    assert 0 <= judge["parse_rate"] <= 1 and sum(judge["rating_counts"].values()) == 40
    assert all(0 <= r["pair_accuracy"] <= 1 for r in result["rows"]) and likelihood["ties"] < 1


def test_scoring_bench_committee_paths_agree(tmp_path):
    """bench/scoring.py --committee on the lab's base model (the fallback for a model that is not installed): notebook
    03's likelihood scorer through the full logits and with the head at the scored positions only, the same means."""
    out = tmp_path / "scoring.json"
    proc = subprocess.run([sys.executable, "bench/scoring.py", "--committee", "--model", "not-installed", "--n", "12",
                           "--batch-size", "4", "--device", "cpu", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert [r["path"] for r in result["rows"]] == ["full logits", "head at the scored positions"]
    assert result["model"] == "lab:base" and result["head_only_type"] and result["n_rows"] == 12
    assert float(result["rows"][0]["max_abs_diff"]) < 1e-4


def test_pair_accuracy_counts_ties_and_silence_as_half():
    sys.path.insert(0, str(ROOT / "bench"))
    from judge_study import candidate_pairs, pair_accuracy

    assert pair_accuracy([5, 1, 2, 4, 3, 3, None, 2])["pair_accuracy"] == (1 + 0 + 0.5 + 0.5) / 4
    item = {"instruction": "q?", "answer": "b", "choices": ["a", "b", "c", "d"], "label": 1}
    right, wrong = candidate_pairs([item])[0]
    assert right["response"] == "The answer is b." and wrong["response"] in {f"The answer is {c}." for c in "acd"}


def test_retention_sweep_validation_split_leaves_out_the_heldout_questions():
    """The retention recipe is chosen on fresh questions of every family, none of them in the held-out set that
    notebooks 00/06 score (and the README reports)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from retention_sweep import validation_sets

    from helpers import heldout

    sets, dropped = validation_sets(20, 1000)
    test = heldout.heldout_sets(20, 1000)
    for name in ("general", "domain"):
        held = {e.instruction for e in test[name]}
        assert sets[name] and not held & {e.instruction for e in sets[name]}
        assert len(sets[name]) + dropped[name] == len(test[name])  # the same draw size, less what was dropped
        assert {e.family for e in sets[name]} == {e.family for e in test[name]}  # every family is validated


def test_the_retention_rule_picks_the_best_passing_setting_else_the_closest():
    """Issue 22's rule, written down before any sweep (docs/notes/gpu-runs.md): a setting passes when `ours` forgets
    at most 1 point on validation and trails `domain_only`'s domain accuracy by at most 2; the passing one with the
    highest domain accuracy wins; with none passing, the smallest sum of the two shortfalls, flagged."""
    sys.path.insert(0, str(ROOT / "bench"))
    from retention_sweep import choose, sweep_row

    def scores(g_ours, d_ours, d_only):
        return {"ours": {"general_accuracy": g_ours, "domain_accuracy": d_ours},
                "domain_only": {"general_accuracy": 0.2, "domain_accuracy": d_only}}

    rows = [sweep_row("a", {}, scores(0.50, 0.60, 0.61), 0.50),   # passes, domain 0.60
            sweep_row("b", {}, scores(0.495, 0.70, 0.71), 0.50),  # passes (forgets 0.5), domain 0.70: the winner
            sweep_row("c", {}, scores(0.60, 0.90, 0.95), 0.50)]   # trails domain_only by 5: fails
    assert [r["passes"] for r in rows] == [True, True, False] and choose(rows) == ("b", True)
    failing = [sweep_row("x", {}, scores(0.40, 0.5, 0.5), 0.50),  # shortfall 9 (forgets 10)
               sweep_row("y", {}, scores(0.48, 0.5, 0.55), 0.50)]  # shortfall 1 + 3 = 4: the closest
    assert choose(failing) == ("y", False)
    # on the real track a setting under which domain_only learnt nothing passes nothing (0 trailing 0)
    from retention_sweep import real_row

    assert not real_row("z", {}, scores(0.50, 0.0, 0.0), 0.50)["passes"]
    assert real_row("w", {}, scores(0.50, 0.6, 0.6), 0.50)["passes"]


def test_the_real_sweep_scores_general_skill_over_the_families_the_base_can_answer():
    """As notebook 06's headline: a family the base scores at chance in has nothing to forget, so it is left out of
    the general accuracy the retention rule compares (it would halve the forgetting here)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from retention_sweep import headlines

    from helpers.heldout import EvalItem

    sets = {"general": [EvalItem("known", "q", "a"), EvalItem("unknown", "r", "b")], "domain": []}
    base = {"general_accuracy": 0.3, "domain_accuracy": 0.0, "per_family": {"known": 0.6, "unknown": 0.0}}
    tuned = {"general_accuracy": 0.2, "domain_accuracy": 0.5, "per_family": {"known": 0.4, "unknown": 0.0}}
    (b, t), families = headlines([base, tuned], sets, min_questions=1)
    assert families["match"] == ["known"]
    assert (b["general_accuracy"], t["general_accuracy"]) == (0.6, 0.4)  # forgetting 20 points, not 10
    assert t["general_accuracy_all_families"] == 0.2


def test_the_real_sweep_leaves_families_too_small_to_measure_out_of_its_headline():
    """One question of a two-question family moves a mean over four families by 12.5 points: the real sweep's
    headline leaves it out (it stays in ``per_family``), so the 1-point rule is not decided by one question."""
    sys.path.insert(0, str(ROOT / "bench"))
    from retention_sweep import MIN_FAMILY_QUESTIONS, headlines

    from helpers.heldout import EvalItem

    n = MIN_FAMILY_QUESTIONS
    sets = {"general": [EvalItem("big", f"q{i}", "a") for i in range(n)]
            + [EvalItem("small", f"r{i}", "b") for i in range(n - 1)], "domain": []}
    base = {"general_accuracy": 0.7, "domain_accuracy": 0.0, "per_family": {"big": 0.5, "small": 1.0}}
    tuned = {"general_accuracy": 0.6, "domain_accuracy": 0.5, "per_family": {"big": 0.5, "small": 0.5}}
    (b, t), families = headlines([base, tuned], sets)
    assert families["match"] == ["big"]
    assert b["general_accuracy"] == t["general_accuracy"] == 0.5


def test_the_scaling_bench_runs_each_measurement_on_its_gpus_with_fresh_caches_and_the_environment_asked(
        tmp_path, monkeypatch):
    """bench/scaling.py (GPU only, issue 23): every run sees the first N GPUs, empty compile caches of its own and
    the environment given by --inductor-deterministic and --env (a determinism switch under test); --param's values
    are JSON where they parse."""
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    proc = subprocess.run([sys.executable, "bench/scaling.py", "--env", "NOEQUALS"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "--env and --param take KEY=VALUE" in proc.stderr
    assert [scaling.json_or_text(v) for v in ("false", "256", "text")] == [False, 256, "text"]  # --param's values
    seen = []
    monkeypatch.setattr(scaling.subprocess, "run", lambda command, env, check, cwd: seen.append(env))
    monkeypatch.setattr(scaling, "run_dir", lambda run: tmp_path)
    (tmp_path / "timings.json").write_text('{"02_multi_model_generation": 1.5, "06_evaluation": 2.0}')
    got = [scaling.pipeline("p.yaml", n, "r", ["02"], {}, True, {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"})
           for n in (1, 2)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in seen] == ["0", "0,1"]
    assert all(e["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and e["TORCHINDUCTOR_DETERMINISTIC"] == "1" for e in seen)
    assert seen[0]["TORCHINDUCTOR_CACHE_DIR"] != seen[1]["TORCHINDUCTOR_CACHE_DIR"]
    assert got[0]["stage_seconds"] == {"02_multi_model_generation": 1.5}


def test_the_scaling_bench_gives_a_parameter_only_to_the_runs_whose_stages_read_it():
    """bench/scaling.py --param: 06's eval_workers reaches the 06 runs but not the 04-05 run that trains their adapters
    (the pipeline refuses a parameter no selected notebook reads: this stopped a GPU session's 06 measurement); a
    parameter no measured stage reads is refused before any run; an unknown name is passed on for the pipeline to
    name."""
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    declared = scaling.declared_by_stage()
    params = {"eval_workers": 10, "compile_decode": False, "no_such_parameter": 1}
    assert scaling.read_by(["06"], params, declared) == {"eval_workers": 10, "no_such_parameter": 1}
    assert scaling.read_by(["04", "05"], params, declared) == {"no_such_parameter": 1}
    assert scaling.read_by(["02"], params, declared) == {"compile_decode": False, "no_such_parameter": 1}
    assert scaling.unread(["06"], params, declared) == ["compile_decode"]
    assert scaling.unread(["02", "06"], params, declared) == []
    proc = subprocess.run([sys.executable, "bench/scaling.py", "--only", "02", "--param", "eval_workers=10"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--param eval_workers: no stage of the measurements ['02'] reads it" in proc.stderr


def test_the_scaling_bench_times_notebook_05_on_each_gpu_count_and_compares_final_losses(tmp_path, monkeypatch):
    """bench/scaling.py --only 05: 04 once, then notebook 05 (every arm and seed, train_workers 0) in a run of its own
    per GPU count, each training's final loss compared with the first run's (GPU training is not bit-reproducible,
    so the largest difference is reported)."""
    sys.path.insert(0, str(ROOT / "bench"))
    import scaling

    runs = tmp_path / "outputs"
    for stage in ("01_reconstruct", "02_generation", "03_filtering"):
        (runs / "source" / stage).mkdir(parents=True)
    monkeypatch.setattr(scaling, "run_dir", lambda run: runs / run)
    calls = []

    def fake_pipeline(preset, gpus, run, stages, params, deterministic, extra_env=None):
        calls.append((gpus, run, stages, params))
        if stages == ["05"]:
            (runs / run / "05_training").mkdir()
            arms = {"ours": [{"seed": 0, "final_loss": 0.5 + 0.001 * gpus}],
                    "domain_only": [{"seed": 1, "final_loss": 0.3}]}
            (runs / run / "05_training" / "metrics.json").write_text(json.dumps({"arms": arms}))
        return {"wall_seconds": 1.0, "stage_seconds": {f"{stages[0]}_x": 10.0 / gpus}}

    monkeypatch.setattr(scaling, "pipeline", fake_pipeline)
    monkeypatch.setattr(sys, "argv", ["scaling.py", "--run", "source", "--gpus", "1", "2", "--only", "05",
                                      "--json", str(tmp_path / "scaling.json")])
    scaling.main()
    assert [(c[0], c[1], c[2]) for c in calls] == [(1, "scale-05-data", ["04"]), (1, "scale-05-1gpu", ["05"]),
                                                  (2, "scale-05-2gpu", ["05"])]
    assert calls[1][3]["train_workers"] == 0
    assert sorted(p.name for p in (runs / "scale-05-2gpu").iterdir())[:3] == ["01_reconstruct", "02_generation",
                                                                             "03_filtering"]
    got = json.loads((tmp_path / "scaling.json").read_text())["measurements"]["05"]
    assert got["2"]["final_losses"] == {"ours/0": 0.502, "domain_only/1": 0.3} and got["2"]["trainings"] == 2
    assert got["1"]["largest_loss_difference_from_first"] == 0
    assert abs(got["2"]["largest_loss_difference_from_first"] - 0.001) < 1e-9


def test_compare_arms_gives_each_difference_its_interval_and_side(tmp_path, monkeypatch):
    """bench/compare_arms.py: A - B per measure, its 95% half-width from both arms' standard errors, and which side
    of 0 it lies on; a run or arm that is not there is an error naming it."""
    sys.path.insert(0, str(ROOT / "bench"))
    import compare_arms

    monkeypatch.setenv("HELPERS_OUTPUTS", str(tmp_path))
    stage = tmp_path / "r" / "06_evaluation"
    stage.mkdir(parents=True)
    arm = {"general_accuracy": 0.60, "general_se": 0.01, "kl_drift": 0.5, "kl_drift_se": 0.01}
    (stage / "results.json").write_text(json.dumps({"base": {"general_accuracy": 0.50, "general_se": 0.02},
                                                    "arms": {"ours": arm}}))
    out = compare_arms.compare(compare_arms.arm_results("r:ours")[1], compare_arms.arm_results("r:base")[1])
    assert set(out) == {"general_accuracy"}  # the base has no KL drift
    assert out["general_accuracy"]["diff"] == pytest.approx(0.10)
    assert out["general_accuracy"]["se"] == pytest.approx((0.01 ** 2 + 0.02 ** 2) ** 0.5, abs=1e-4)
    assert out["general_accuracy"]["verdict"] == "A > B"  # 10 points, +- 4.4
    close = compare_arms.compare({**arm, "general_accuracy": 0.51}, {"general_accuracy": 0.50, "general_se": 0.02})
    assert close["general_accuracy"]["verdict"] == "not distinguishable"
    with pytest.raises(SystemExit, match=r"'r:oracle': run r has no arm 'oracle'; it has \['ours'\]"):
        compare_arms.arm_results("r:oracle")
    with pytest.raises(SystemExit, match="give RUN:ARM"):
        compare_arms.arm_results("r")
