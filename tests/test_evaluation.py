"""Stage 06: seed aggregation, forgetting, the targets' checks, the report, loading adapters as 05 trained them."""
import datasets
import pytest

from helpers import datafiles, eval_models, evaluation, heldout, report, scoring, writers
from helpers.lab import zoo
from tests.conftest import write_jsonl


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
                "hp": {"lora_rank": 16, "max_steps": 300, "train_batch_size": 32, "learning_rate": 3e-3,
                       "train_embeddings": True}, "seeds": [0]}
    text = report.report("r", r, training, ["tradeoff.png"]).read_text()
    for needle in ("| base |", "| domain_only | 0.500 | 0.800 | +40.0 |", "| ours |", "met: domain_only loses",
                   "06_evaluation/tradeoff.png"):
        assert needle in text, needle
    shown = report.in_notebook(text)  # in notebook 06 the report's relative figure links would be broken images
    assert "| ours |" in shown and "](06_evaluation/" not in shown and "figures are shown above" in shown


def test_sweep_points_are_ordered_by_share():
    r = results({"domain_only": (0.5, 0.8), "ours": (0.89, 0.79), "ours_g95": (0.9, 0.6)})
    points = report.sweep_points(r, {"ours_g95": 0.95, "domain_only": 0.0, "ours": 0.83, "missing": 0.5})
    assert [p[0] for p in points] == ["domain_only", "ours", "ours_g95"]


def test_scoring_uses_the_held_out_references():
    sets = heldout.heldout_sets(2, seed=5)
    assert len(sets["general"]) == 2 * 10 and len(sets["domain"]) == 2 * 3
    setup = evaluation.eval_setup({"device": "cpu", "compute_dtype": "float32", "quantization": "none"})
    model, tok = eval_models.load_for_eval(str(zoo.ZOO_DIR / "base"), setup)
    got = scoring.score_sets(model, tok, sets)
    assert got["domain_accuracy"] == 0.0  # the base model never saw the domain
    assert got["general_accuracy"] > 0.5 and set(got["per_family"]) >= {"arithmetic", "dosing"}


def test_eval_files_score_like_the_lab_sets(tmp_path):
    """A real run's files go through the same scorer: the lab's held-out set written to files scores the same."""
    sets = heldout.heldout_sets(2, seed=5)
    files = {name: write_jsonl(tmp_path / f"{name}.jsonl", [{"instruction": e.instruction, "answer": e.response,
                                                              "family": e.family} for e in examples])
             for name, examples in sets.items()}
    loaded = heldout.eval_sets(files["general"], files["domain"])
    assert [(e.family, e.instruction, e.response) for e in loaded["general"]] == \
        [(e.family, e.instruction, e.response) for e in sets["general"]]
    setup = evaluation.eval_setup({"device": "cpu", "compute_dtype": "float32", "quantization": "none"})
    model, tok = eval_models.load_for_eval(str(zoo.ZOO_DIR / "base"), setup)
    a, b = scoring.score_sets(model, tok, sets), scoring.score_sets(model, tok, loaded)
    assert a["per_family"] == b["per_family"] and a["general_accuracy"] == b["general_accuracy"]


def test_unseen_subset_separates_recall_from_memory():
    items = [heldout.EvalItem(f, q, "a") for f, q in [("x", "q1"), ("x", "q2"), ("y", "q3"), ("y", "q4")]]
    train = {"messages": [[{"role": "system", "content": "s"}, {"role": "user", "content": "q1"},
                           {"role": "assistant", "content": "a"}]]}
    assert evaluation.seen_masks({"general": items}, train)["general"] == [True, False, False, False]  # the user turn, not the system turn
    sets = {"general": items, "domain": items[:1]}

    def scored(correct, seed=0):
        acc = evaluation.subset_accuracy(items, correct, [True] * 4)
        return {"seed": seed, "general_accuracy": acc, "domain_accuracy": 0.0, "per_family": {},
                "correct": {"general": correct, "domain": [False]}}

    base = scored([True, True, True, True])
    arm = evaluation.arm_result([scored([True, False, True, False], 0), scored([True, False, True, True], 1)],
                                base, sets, train)
    assert arm["general_seen_in_training"] == 0.25 and arm["domain_seen_in_training"] == 1.0
    # unseen: x has q2 (wrong in both seeds), y has q3, q4 (1/2 then 2/2): means 0.25 and 0.5
    assert arm["general_accuracy_unseen"] == pytest.approx(0.375)
    assert arm["general_std_unseen"] == pytest.approx(0.1767767, rel=1e-5)
    assert arm["forgetting_unseen"] == pytest.approx(1 - 0.375)
    assert "domain_accuracy_unseen" not in arm  # every domain question was seen


def test_evaluation_refuses_adapters_trained_on_older_arms(outputs):
    from helpers import runs

    data = datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": "a"}]}])
    runs.write_json(evaluation.adapter_path("r", "ours", {"seed": 0}) / "metrics.json",
                    {"settings": {"data": datafiles.fingerprint(data)}})
    training = {"arms": {"ours": [{"seed": 0}]}}
    evaluation.check_trained_data("r", training, {"ours": data})
    data.save_to_disk(str(outputs / "arm"))  # 04 saves an arm; 05 and 06 each load it: the same fingerprint
    runs.write_json(evaluation.adapter_path("r", "ours", {"seed": 0}) / "metrics.json",
                    {"settings": {"data": datafiles.fingerprint(datasets.load_from_disk(str(outputs / "arm")))}})
    evaluation.check_trained_data("r", training, {"ours": datasets.load_from_disk(str(outputs / "arm"))})
    data = datasets.load_from_disk(str(outputs / "arm"))
    changed = data.map(lambda r: {"messages": [r["messages"][0], {"role": "assistant", "content": "b"}]})
    with pytest.raises(RuntimeError, match="arm 'ours' \\(seed 0\\): notebook 04's data changed"):
        evaluation.check_trained_data("r", training, {"ours": changed})
    with pytest.raises(RuntimeError, match="no longer builds"):
        evaluation.check_trained_data("r", training, {})
    with pytest.raises(FileNotFoundError, match="metrics.json is missing: rerun notebooks/05.*arm 'ours', seed 1"):
        evaluation.check_trained_data("r", {"arms": {"ours": [{"seed": 1}]}}, {"ours": data})


def test_a_4bit_run_is_not_scored_unquantised(monkeypatch):
    monkeypatch.setattr(evaluation, "bnb_4bit_works", lambda device: "bitsandbytes has no 4-bit kernel")
    with pytest.raises(RuntimeError, match="here bitsandbytes has no 4-bit kernel"):
        evaluation.eval_setup({"device": "cpu", "compute_dtype": "float32", "quantization": "nf4"})


def test_a_general_set_the_base_cannot_do_never_calls_a_target_met():
    """Failure 5b: report.md said 'ours within 2 points: met' when base and ours both scored 0."""
    r = {"n_general": 20, "n_domain": 6, "base": result(0.0, 0.0), "seeds": [0],
         "arms": {name: evaluation.aggregate([result(g, d)])
                  for name, (g, d) in {"domain_only": (0.0, 0.5), "ours": (0.0, 0.4)}.items()}}
    checks = evaluation.checks(evaluation.add_forgetting(r))
    general = [c for c in checks if "general" in c["target"]]
    assert general and all(c["met"] is None and "uninformative" in c["measured"] for c in general)
    assert [c["met"] for c in checks if "general" not in c["target"]] == [False]  # domain gap 10 points


def test_targets_fall_back_to_multiple_choice_and_need_a_domain_that_was_learnt():
    """The first real run: SmolLM2 is at chance on every family for strict answers but not for multiple choice, and
    40 steps taught domain_only nothing measurable."""
    def arm(g, mc, d):
        return {**evaluation.aggregate([{**result(g, d), "mc_general_accuracy": mc}])}

    r = {"n_general": 20, "n_domain": 6, "seeds": [0], "informative": {"match": [], "mc": ["capital"]},
         "base": {**result(0.0, 0.0), "mc_general_accuracy": 0.69},
         "arms": {"domain_only": arm(0.0, 0.49, 0.0), "ours": arm(0.0, 0.66, 0.0)}}
    checks = {c["target"]: c for c in evaluation.checks(evaluation.add_forgetting(r))}
    assert checks["domain_only loses >= 15 points of general multiple-choice accuracy"]["met"] is True
    assert checks["ours keeps general multiple-choice accuracy within 2 points of the base"]["met"] is False
    domain = checks["ours' domain accuracy within 2 points of domain_only"]
    assert domain["met"] is None and "nothing measurable was learnt" in domain["measured"]


def test_a_partial_rerun_adds_to_the_previous_results_instead_of_replacing_them(outputs):
    """05 rerun on `ours` alone with new settings no longer lists domain_only; 06 then scores base and ours only,
    and keeps domain_only from its previous results (same sets, same base scores), marked as earlier."""
    base = {"general_accuracy": 0.9, "domain_accuracy": 0.1}
    common = {"n_general": 10, "n_domain": 5, "eval_sets": "lab", "answer_match": "exact", "general_families": ["a"]}
    arm = {"general_accuracy": 0.5, "domain_accuracy": 0.8, "forgetting": 0.4}
    evaluation.finish("r", {**common, "base": base, "arms": {"domain_only": arm, "ours": arm}})
    now = {**common, "base": base, "arms": {"ours": {**arm, "general_accuracy": 0.85}}}
    assert evaluation.merge_earlier("r", now) == ["domain_only"]
    assert now["arms"]["domain_only"] == {**arm, "from_earlier_evaluation": True}
    assert now["arms"]["ours"]["general_accuracy"] == 0.85  # this run's own score wins
    other_sets = {**common, "n_general": 20, "base": base, "arms": {"ours": arm}}
    assert evaluation.merge_earlier("r", other_sets) == [] and list(other_sets["arms"]) == ["ours"]
    # the base's weights held otherwise for scoring (eval_weights): not comparable; a results.json from before the
    # key was recorded counts as "4bit"
    merged = {**common, "eval_weights": "merged", "base": base, "arms": {"ours": arm}}
    assert evaluation.merge_earlier("r", merged) == []
    assert evaluation.merge_earlier("r", {**merged, "eval_weights": "4bit"}) == ["domain_only"]


def test_the_ablation_table_follows_the_papers_rows_for_the_arms_present(tmp_path, outputs):
    def arm(g, d, std=0.01):
        return {"general_accuracy": g, "domain_accuracy": d, "general_std": std, "domain_std": std, "n_seeds": 3}
    results = {"n_general": 10, "n_domain": 5, "base": {"general_accuracy": 0.9, "domain_accuracy": 0.0},
               "arms": {"domain_only": arm(0.2, 0.8), "ours": arm(0.85, 0.7), "ours_1x1": arm(0.7, 0.7),
                        "uniform_ours": arm(0.8, 0.7)}}
    evaluation.add_forgetting(results)
    table = report.ablation_table(results)
    assert [r["arm"] for r in table] == ["base", "domain_only", "ours_1x1", "ours", "uniform_ours"]
    assert table[2]["paper_general_average"] == 38.81 and table[2]["forgetting_points"] == 20.0
    assert report.plot_ablation(results, tmp_path / "a.png").exists()
    assert report.ablation_table({**results, "arms": {"ours": arm(0.8, 0.7)}}) == []  # no ablation arm: none


def test_a_training_run_from_before_the_parameter_names_reads_under_them(outputs):
    from helpers import runs

    runs.write_json(runs.stage_dir("r", "05_training") / "metrics.json",
                    {"hp": {"rank": 16, "alpha": 32, "dropout": 0.0, "batch_size": 32, "max_steps": 300}})
    runs.write_json(runs.stage_dir("r", "04_mixing") / "metrics.json", {"arms": {}})
    training, _ = evaluation.inputs("r")
    assert training["hp"] == {"lora_rank": 16, "lora_alpha": 32, "lora_dropout": 0.0, "train_batch_size": 32,
                              "max_steps": 300}


def test_the_report_lists_every_notebooks_warnings(outputs):
    from helpers import runs

    runs.write_json(runs.stage_dir("r", "04_mixing") / "metrics.json", {"warnings": ["only 4 of 322 domain rows"]})
    runs.write_json(runs.stage_dir("r", "01_reconstruct") / "metrics.json", {"warnings": []})
    assert runs.stage_warnings("r") == {"04_mixing": ["only 4 of 322 domain rows"]}
    r = results({"domain_only": (0.5, 0.8)})
    training = {"model": "base", "setup": {"quantization": "nf4", "compute_dtype": "float32", "device": "cpu"},
                "hp": {"lora_rank": 16, "max_steps": 300, "train_batch_size": 32, "learning_rate": 3e-3,
                       "train_embeddings": True}, "seeds": [0]}
    text = report.report("r", r, training, []).read_text()
    assert "## Warnings from the notebooks" in text and "- 04: only 4 of 322 domain rows" in text
    assert "passes of new general rows" not in text
    # notebook 04's general_passes (arms of several passes) is named in the training sentence
    text = report.report("r", {**r, "general_passes": 4}, training, []).read_text()
    assert "300 steps of batch 32 for every arm, in 4 passes of new general rows each (notebook 04's" in text


def small_run(n_per_family: int, arms: dict, seeds=1, kl=None):
    """Results as ``collect`` builds them, for sets of ``n_per_family`` questions in two general families and one
    domain family."""
    from helpers.heldout import EvalItem

    sets = {"general": [EvalItem(f, "q", "a") for f in ("g1", "g2") for _ in range(n_per_family)],
            "domain": [EvalItem("d", "q", "a") for _ in range(n_per_family)]}

    def model(g, d, std=0.0):
        m = {"general_accuracy": g, "domain_accuracy": d, "per_family": {"g1": g, "g2": g, "d": d}, "n_seeds": seeds}
        return m | ({"general_std": std, "domain_std": std} if seeds > 1 else {})
    r = {"n_general": 2 * n_per_family, "n_domain": n_per_family, "seeds": list(range(seeds)), "base": model(0.9, 0.0),
         "arms": {name: model(*v) for name, v in arms.items()}}
    for name, value in (kl or {}).items():
        r["arms"][name]["kl_drift"] = value
    return evaluation.add_uncertainty(evaluation.add_forgetting(r), sets)


ARMS = {"domain_only": (0.5, 0.8), "public_mix": (0.8, 0.75), "ours": (0.895, 0.79)}


def test_small_sets_cannot_decide_what_large_ones_can():
    verdicts = {c["target"]: c["verdict"] for c in evaluation.checks(small_run(8, ARMS))}
    assert verdicts["ours beats public_mix on general accuracy"] == "not distinguishable"
    assert verdicts["ours keeps general accuracy within 2 points of the base"] == "not distinguishable"
    large = {c["target"]: c["verdict"] for c in evaluation.checks(small_run(5000, ARMS))}
    assert large["ours beats public_mix on general accuracy"] == "met"
    assert large["ours keeps general accuracy within 2 points of the base"] == "met"
    assert large["domain_only loses >= 15 points of general accuracy"] == "met"


def test_seed_spread_widens_the_interval():
    calm = small_run(2000, ARMS, seeds=3)
    noisy = small_run(2000, {k: (*v, 0.08) for k, v in ARMS.items()}, seeds=3)
    assert noisy["arms"]["ours"]["general_se"] > 3 * calm["arms"]["ours"]["general_se"]
    verdict = {c["target"]: c["verdict"] for c in evaluation.checks(noisy)}
    assert verdict["ours beats public_mix on general accuracy"] == "not distinguishable"


def test_kl_drift_order_is_a_target():
    r = small_run(60, ARMS, kl={"ours": 0.01, "public_mix": 0.03, "domain_only": 0.2})
    kl = next(c for c in evaluation.checks(r) if c["target"].startswith("KL drift"))
    assert kl["verdict"] == "met" and "ours 0.0100, public_mix 0.0300, domain_only 0.2000" in kl["measured"]
    r = small_run(60, ARMS, kl={"ours": 0.05, "public_mix": 0.03, "domain_only": 0.2})
    assert next(c for c in evaluation.checks(r) if c["target"].startswith("KL drift"))["verdict"] == "not met"


def test_the_report_says_how_sure_it_is_and_shows_kl_without_choices(outputs):
    r = small_run(4, ARMS, kl={"ours": 0.01, "public_mix": 0.03, "domain_only": 0.2})
    r["checks"] = evaluation.checks(r)
    r["arms"]["public_mix"]["from_earlier_evaluation"] = True
    training = {"model": "base", "setup": {"quantization": "nf4", "compute_dtype": "float32", "device": "cpu"},
                "hp": {"lora_rank": 16, "max_steps": 300, "train_batch_size": 32, "learning_rate": 3e-3,
                       "train_embeddings": True}, "seeds": [0]}
    text = report.report("r", r, training, [], ["general set (g.jsonl): 8 of its 60 questions scored"]).read_text()
    assert "| general (answers) | 2 | 8 | 12.5 |" in text  # two families of 4: one question is 12.5 points
    assert "| ours | - | - | - | 0.0100 |" in text  # KL drift, though no set has choices
    assert "| public_mix (earlier) |" in text and "[uses public_mix from an earlier evaluation]" in text
    assert "- 06: general set (g.jsonl): 8 of its 60 questions scored" in text
    assert "not distinguishable: ours beats public_mix" in text


def test_a_run_that_decides_nothing_says_so(outputs):
    r = small_run(4, {"domain_only": (0.8, 0.6), "ours": (0.85, 0.6)})
    r["checks"] = evaluation.checks(r)
    training = {"model": "base", "setup": {"quantization": "nf4", "compute_dtype": "float32", "device": "cpu"},
                "hp": {"lora_rank": 16, "max_steps": 300, "train_batch_size": 32, "learning_rate": 3e-3,
                       "train_embeddings": True}, "seeds": [0]}
    assert all(c["met"] is None for c in r["checks"])
    assert "**No target can be decided by this run**" in report.report("r", r, training, []).read_text()


def test_answers_cut_off_are_a_warning(capsys):
    from helpers.heldout import EvalItem

    sets = {"general": [EvalItem("g", "q", "a")] * 10, "domain": [EvalItem("d", "q", "a")] * 10}
    scores = {(None, None): {"unfinished": {"general": 0, "domain": 3}},
              ("ours", 0): {"unfinished": {"general": 0, "domain": 0}}}
    assert evaluation.cut_off(scores, sets, 16) == [
        "base: 3 of 10 domain answers were cut off at answer_max_new_tokens = 16 and count as wrong; raise "
        "answer_max_new_tokens"]
    assert capsys.readouterr().out.startswith("WARNING: base: 3 of 10 domain answers")


def test_the_report_shows_each_arms_training_dose_beside_its_scores(outputs):
    r = small_run(8, {"domain_only": (0.5, 0.8), "ours": (0.895, 0.79)})
    training = {"model": "base", "setup": {"quantization": "nf4", "compute_dtype": "float32", "device": "cpu"},
                "hp": {"lora_rank": 16, "max_steps": 30, "train_batch_size": 4, "learning_rate": 3e-3,
                       "train_embeddings": False, "budget": "domain_epochs", "domain_epochs": 4}, "seeds": [0],
                "arms": {"domain_only": [{"steps": 10, "domain_exposures": 4.0, "tokens_seen": 1200}],
                         "ours": [{"steps": 60, "domain_exposures": 4.0, "general_exposures": 4.0,
                                   "tokens_seen": 7400}]}}
    text = report.report("r", r, training, []).read_text()
    assert "until each arm has seen each of its domain rows 4 times" in text
    assert "| 1 | 10 | 4 | - | 1,200 |" in text and "| 1 | 60 | 4 | 4 | 7,400 |" in text
    assert "| 1 | - | - | - | - |" in text and "times each general row was seen" in text


def test_arms_carried_from_an_earlier_evaluation_get_their_uncertainty_back(outputs):
    """Review finding: merge_earlier ran after add_uncertainty, so an arm carried from a results.json without
    standard errors counted as exact (every verdict 'met'). Notebook 06 adds them again after merging."""
    r = small_run(8, ARMS)
    old = {k: v for k, v in r["arms"]["public_mix"].items() if not k.endswith("_se")}
    del r["arms"]["public_mix"]
    r["arms"]["public_mix"] = {**old, "from_earlier_evaluation": True}
    assert "general_se" not in r["arms"]["public_mix"]
    from helpers.heldout import EvalItem

    sets = {"general": [EvalItem(f, "q", "a") for f in ("g1", "g2") for _ in range(8)],
            "domain": [EvalItem("d", "q", "a") for _ in range(8)]}
    evaluation.add_uncertainty(r, sets)
    assert r["arms"]["public_mix"]["general_se"] > 0.05
    verdicts = {c["target"]: c["verdict"] for c in evaluation.checks(r)}
    assert verdicts["ours beats public_mix on general accuracy"] == "not distinguishable"


def test_on_a_cpu_the_4bit_base_is_dequantised_once_with_the_same_numbers(tmp_path):
    """bitsandbytes' CPU path dequantises every weight at every product; evaluation dequantises once instead. The
    base and a base with an adapter (random LoRA weights, so the adapter changes the output) give the logits of
    the 4-bit model exactly (the lab's base; on SmolLM2, 06's results were checked equal: docs/history.md). On a CPU
    with AVX512-BF16 that holds because ``models.load_base`` keeps bitsandbytes off its bfloat16 inference kernel."""
    import torch
    from peft import LoraConfig, get_peft_model

    from helpers import models
    from helpers.lab import zoo

    setup, path = models.Setup("cpu", "float32", "nf4"), str(zoo.ZOO_DIR / "base")
    torch.manual_seed(0)
    get_peft_model(models.load_base(path, setup), LoraConfig(r=4, target_modules="all-linear",
                                                            init_lora_weights=False)).save_pretrained(tmp_path)
    tok = models.load_tokenizer(path)
    x = tok(["what is 2 plus 3 ?", "spell cat"], return_tensors="pt", padding=True)
    for adapter, reference in ((None, models.load_base(path, setup)),
                               (tmp_path, models.load_adapter(path, tmp_path, setup))):
        model, _ = eval_models.load_for_eval(path, setup, adapter)
        assert not any(type(m).__name__ == "Linear4bit" for m in model.modules())
        assert any(type(m).__name__ == "Linear4bit" for m in reference.modules())
        with torch.no_grad():
            got, want = model(**x).logits, reference.eval()(**x).logits
        assert torch.equal(got, want), adapter


def test_on_a_cpu_an_adapter_is_scored_merged_with_the_numbers_of_its_lora_layers(tmp_path, monkeypatch, one_thread):
    """``merged_for_scoring``: on a CPU an adapter's answers and multiple choice run on its weights merged into the
    float32 base, and its drift before, on the LoRA layers (the base side switches them off). The lab's base in 4-bit
    with small random LoRA weights and a changed tied embedding, as the lab trains it (``modules_to_save``): the
    same answers, scores and drift as the adapter left unmerged. On a GPU nothing is merged, nor where LoRA adapts
    a weight the embedding and the output head share."""
    import torch
    from peft import LoraConfig, get_peft_model

    from helpers import models
    from helpers.lab import zoo
    from helpers.qlora_configs import embedding_layer

    setup, path = models.Setup("cpu", "float32", "nf4"), str(zoo.ZOO_DIR / "base")
    embedding, tied = embedding_layer(path)
    torch.manual_seed(0)
    model = get_peft_model(models.load_base(path, setup), LoraConfig(
        r=4, target_modules="all-linear", modules_to_save=[embedding], ensure_weight_tying=tied))
    with torch.no_grad():  # small random changes: the adapter moves the model without ruining it
        for name, weight in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                weight.add_(torch.randn_like(weight) * 0.02)
    model.save_pretrained(tmp_path)
    sets, _ = heldout.held_out(lab=True, n_per_family=2, seed=3)
    base, tok = eval_models.load_for_eval(path, setup)
    answers = scoring.general_answers(base, tok, sets, max_new_tokens=16, match="exact")["answer_ids"]
    kwargs = dict(max_new_tokens=16, match="exact", mc=True)
    scored = []
    merge = eval_models.merged_for_scoring
    monkeypatch.setattr(evaluation, "merged_for_scoring", lambda m, *a: scored.append(merge(m, *a)) or scored[-1])
    merged = evaluation.score_adapter(path, setup, tmp_path, None, sets, answers, **kwargs)
    assert not any("lora" in type(m).__name__.lower() for m in scored[-1].modules())
    monkeypatch.setattr(evaluation, "merged_for_scoring", lambda m, *a: scored.append(m) or m)
    unmerged = evaluation.score_adapter(path, setup, tmp_path, None, sets, answers, **kwargs)
    assert hasattr(scored[-1], "disable_adapter")
    assert merged == unmerged and merged["kl_drift"] > 0 and 0 < merged["general_accuracy"]
    gpu = models.Setup("cuda", "bfloat16", "nf4")
    assert merge(scored[-1], gpu) is scored[-1]
    # LoRA on the output head, which shares the embedding's weight (tied): merged, it would change both ends
    assert tied
    with pytest.warns(UserWarning, match="tie_word_embeddings"):  # peft's own warning about such an adapter
        on_head = get_peft_model(eval_models.load_for_eval(path, setup)[0], LoraConfig(r=4, target_modules=["lm_head"]))
    assert merge(on_head, setup) is on_head


def test_on_a_gpu_eval_weights_keeps_the_4bit_layers_or_dequantises_the_base_once_and_may_merge(tmp_path,
                                                                                                 monkeypatch):
    """Notebook 06's ``eval_weights`` for a 4-bit base on a GPU: "4bit" leaves it to bitsandbytes' layers,
    "dequantised" and "merged" dequantise it once into the compute dtype, and only "merged" merges the adapter for
    the scoring. The GPU is played by the lab's base on the CPU, its ``dequantize`` recorded; any other value is
    refused, naming the parameter."""
    import torch
    from peft import LoraConfig, get_peft_model

    from helpers import models
    from helpers.lab import zoo

    cpu, gpu = models.Setup("cpu", "float32", "none"), models.Setup("cuda", "bfloat16", "nf4")
    path = str(zoo.ZOO_DIR / "base")
    get_peft_model(models.load_base(path, cpu), LoraConfig(r=4, target_modules="all-linear")).save_pretrained(tmp_path)
    dequantised = []

    def load_base(base_path, setup):
        model = models.load_base(base_path, cpu)
        model.dequantize = lambda dtype=None: dequantised.append(dtype) or model
        return model

    monkeypatch.setattr(eval_models, "load_base", load_base)
    for weights, merged in (("4bit", False), ("dequantised", False), ("merged", True)):
        dequantised.clear()
        model, _ = eval_models.load_for_eval(path, gpu, tmp_path, weights=weights)
        assert dequantised == ([] if weights == "4bit" else [torch.bfloat16]), weights
        scored = eval_models.merged_for_scoring(model, gpu, weights)
        assert (scored is not model and not hasattr(scored, "disable_adapter")) == merged, weights
    with pytest.raises(ValueError, match="eval_weights = 'bf16'"):
        eval_models.load_for_eval(path, gpu, tmp_path, weights="bf16")


def test_a_dequantised_base_in_more_workers_than_a_gpu_holds_is_refused_before_anything_loads(monkeypatch):
    """eval_weights "dequantised"/"merged" hold the base in the compute dtype in every worker: an 8B base (about 15
    GiB) in ten workers on one H200 is refused, naming how many fit and the 4-bit way out; "4bit", a base that is not
    4-bit, and a CPU are not checked. The GPUs are played: their free memory and names are given."""
    import types

    import torch

    from helpers import models, workers
    from helpers import placement
    from helpers.placement import weights_gib

    one_gpu = {"0": 10}
    with pytest.raises(MemoryError, match=r"10 on GPU 0 .* 139.0 GiB free; set eval_workers to 7 or fewer, or set "
                                          r"eval_weights = '4bit'"):
        eval_models.check_worker_memory("merged", 15.0, one_gpu, {"0": 139.0})
    eval_models.check_worker_memory("merged", 15.0, {"0": 7}, {"0": 139.0})  # 7 x 15 x 1.25 = 131 GiB: fits
    eval_models.check_worker_memory("4bit", 15.0, one_gpu, {"0": 139.0})
    with pytest.raises(MemoryError, match="on GPU 1 .* set eval_workers to 2 or fewer"):  # 1 fits per GPU, 2 GPUs
        eval_models.check_worker_memory("dequantised", 15.0, {"0": 1, "1": 2}, {"0": 139.0, "1": 20.0 * 1.25})
    with pytest.raises(MemoryError, match="not even one worker fits"):
        eval_models.check_worker_memory("merged", 15.0, {"0": 1}, {"0": 10.0})

    with pytest.raises(MemoryError, match="on GPU 1 .* set eval_workers to 4 or fewer"):  # the fuller GPU decides
        eval_models.check_worker_memory("merged", 10.0, {"0": 3, "1": 3}, {"0": 5 * 12.5, "1": 2 * 12.5})

    # the wrapper reads the base's size from its config and each planned GPU's free memory, as this process names it:
    # from NVML (no CUDA context on a GPU only the workers use), else from the CUDA runtime
    path = str(zoo.ZOO_DIR / "base")
    size = weights_gib(path, torch.bfloat16)
    gib = 2**30
    total, used, free = {0: 100 * size * gib, 1: 100 * size * gib}, {0: 97 * size * gib - 1, 1: 99.5 * size * gib}, {}
    monkeypatch.setattr(workers, "visible_gpus", lambda: ["3", "5"])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=total[i]))
    monkeypatch.setattr(torch.cuda, "device_memory_used", lambda i: used[i])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (free[i], total[i]))
    gpu = models.Setup("cuda", "bfloat16", "nf4")
    assert placement.free_gib(0) == pytest.approx(3 * size, rel=1e-6)
    eval_models.worker_memory_on_gpus(workers.Plan(2, ("3",) * 2, 0.0, ""), path, gpu, "merged")  # 2.5 x size: fits
    with pytest.raises(MemoryError, match="3 on GPU 3"):
        eval_models.worker_memory_on_gpus(workers.Plan(3, ("3",) * 3, 0.0, ""), path, gpu, "merged")
    with pytest.raises(MemoryError, match="1 on GPU 5 .* not even one worker fits"):
        eval_models.worker_memory_on_gpus(workers.Plan(2, ("3", "5"), 0.0, ""), path, gpu, "dequantised")

    def no_nvml(i):
        raise ModuleNotFoundError("nvidia-ml-py does not seem to be installed")

    monkeypatch.setattr(torch.cuda, "device_memory_used", no_nvml)
    free.update({0: 1.3 * size * gib, 1: 2.6 * size * gib})
    eval_models.worker_memory_on_gpus(workers.Plan(2, ("3", "5"), 0.0, ""), path, gpu, "merged")  # one each fits
    with pytest.raises(MemoryError, match="2 on GPU 3 .* set eval_workers to 2 or fewer"):  # GPU 5 holds 2
        eval_models.worker_memory_on_gpus(workers.Plan(4, ("3", "5") * 2, 0.0, ""), path, gpu, "merged")
    for setup, weights in ((gpu, "4bit"), (models.Setup("cuda", "bfloat16", "none"), "merged"),
                           (models.Setup("cpu", "float32", "nf4"), "merged")):
        eval_models.worker_memory_on_gpus(workers.Plan(4, ("5",) * 4, 0.0, ""), path, setup, weights)


def test_on_a_cpu_the_base_is_loaded_once_per_process_each_model_is_a_copy_and_a_changed_folder_reloads(
        tmp_path, monkeypatch):
    """Notebook 06 scores the base and every adapter: on a CPU the base is loaded (and dequantised) once, and each
    caller gets a copy, so an adapter never reaches the base's scores; a base converted again is loaded again."""
    import os
    import shutil
    from pathlib import Path

    import torch
    from peft import LoraConfig, get_peft_model

    from helpers import models
    from helpers.lab import zoo

    setup, path = models.Setup("cpu", "float32", "nf4"), str(tmp_path / "base")
    shutil.copytree(zoo.ZOO_DIR / "base", path)
    torch.manual_seed(0)
    get_peft_model(models.load_base(path, setup), LoraConfig(r=4, target_modules="all-linear",
                                                            init_lora_weights=False)).save_pretrained(tmp_path / "a")
    loads = []
    monkeypatch.setattr(eval_models, "load_base", lambda *a, **k: loads.append(a) or models.load_base(*a, **k))
    eval_models._cpu_base.cache_clear()
    tok = models.load_tokenizer(path)
    x = tok(["what is 2 plus 3 ?"], return_tensors="pt")

    def logits(adapter=None):
        model, _ = eval_models.load_for_eval(path, setup, adapter)
        with torch.no_grad():
            return model(**x).logits

    base, adapted, base_again = logits(), logits(tmp_path / "a"), logits()
    assert len(loads) == 1
    assert not torch.equal(base, adapted) and torch.equal(base, base_again)
    weights = next(f for f in Path(path).iterdir() if f.suffix == ".safetensors")
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert torch.equal(logits(), base) and len(loads) == 2


def test_with_several_workers_the_base_is_scored_beside_the_adapters_with_the_same_results(outputs, monkeypatch,
                                                                                           capsys):
    """Notebook 06 with ``eval_workers`` > 1: only the base's general answers (the drift's text) come first, alone;
    its whole scoring is then one job beside the adapters' (on two H200s the base scored whole first held 06 to
    1.13x), which reuses those answers. The scores are those of one worker, the drift to float rounding. The worker pool itself
    (processes, GPUs) is tested in tests/test_workers.py; here its jobs run in this process, in order. The lab's sets
    and base, random adapters."""
    import torch
    from peft import LoraConfig, get_peft_model

    from helpers import models, runs, workers

    setup, base = models.Setup("cpu", "float32", "none"), str(zoo.ZOO_DIR / "base")
    training = {"arms": {}}
    for i, arm in enumerate(("domain_only", "ours")):
        folder = runs.stage_dir("beside", "05_training") / "arms" / arm / "seed0"
        torch.manual_seed(i)
        get_peft_model(models.load_base(base, setup), LoraConfig(r=4, target_modules="all-linear",
                                                                init_lora_weights=False)).save_pretrained(folder)
        training["arms"][arm] = [{"seed": 0, "settings_key": None}]
    sets, _ = heldout.held_out(lab=True, n_per_family=2, seed=3)
    ran, batches = [], []
    monkeypatch.setattr(evaluation.workers_service, "run", lambda fn, jobs, plan, on_done=None: [
        ran.append(name) or fn(*args, **kwargs) for name, args, kwargs in jobs])
    write = writers.HFWriter.write
    monkeypatch.setattr(writers.HFWriter, "write", lambda self, prompts, **kw: batches.append(kw["batch_size"])
                        or write(self, prompts, **kw))
    kwargs = dict(lab=True, max_new_tokens=16, match="exact", mc=True, kl=True, progress=False, batch_size=5)
    one = evaluation.score_models("beside", training, sets, base, setup, **kwargs, workers=1)
    assert ran == ["domain_only seed 0", "ours seed 0"] and "alone" in capsys.readouterr().out
    assert len(batches) == 2 * 3 and set(batches) == {5}  # answer_batch_size: both sets' answers, every model
    ran.clear()
    batches.clear()
    two = evaluation.score_models("beside", training, sets, base, setup, **kwargs, workers=2)
    assert ran == ["base", "domain_only seed 0", "ours seed 0"] and set(batches) == {5}
    assert len(batches) == 2 * 3  # the base's general answers once: its worker reuses those made alone first
    assert "the base, alone" in capsys.readouterr().out and workers.plan(3, 2, "cpu").workers == 2
    # the same scores; the drift to float rounding: one worker reads each adapter's prompts from its answers' pass
    # (helpers.prompt_cache), a worker beside the others runs its adapter switched off in the drift's own batches
    drifts = ("kl_drift", "kl_drift_se_questions")
    assert two[1] == one[1] and two[0].keys() == one[0].keys()
    for key, s in one[0].items():
        other = two[0][key]
        assert {k: v for k, v in s.items() if k not in drifts} == {k: v for k, v in other.items() if k not in drifts}
        assert all(s[k] == pytest.approx(other[k], rel=1e-5) for k in drifts if k in s)
    assert all(s["kl_drift"] > 0 for k, s in one[0].items() if k != (None, None))
    no_kl = {**kwargs, "kl": False}  # no drift: nothing comes first, the base's worker answers on its own
    assert evaluation.score_models("beside", training, sets, base, setup, **no_kl, workers=2) == \
        evaluation.score_models("beside", training, sets, base, setup, **no_kl, workers=1)
