"""Stage 03: scoring the candidates (the scorers themselves: test_committee.py), selection and dedup."""
import functools
from collections import Counter

import numpy as np
import pytest

from helpers import committee as C
from helpers import filtering as F
from helpers import runs
from helpers.committee import LikelihoodCommittee
from helpers.lab import zoo


def prepared(outputs, name="f"):
    runs.write_json(runs.stage_dir(name, "00_lab") / "models.json", {n: str(zoo.ZOO_DIR / n) for n in zoo.ZOO})
    return name


def cand(iid, response, model="m", sample=0, instruction=None, finished=True):
    return {"instruction_id": iid, "instruction": instruction or f"Instruction number {iid} about topic {iid * 7}",
            "response": response, "model": model, "sample": sample, "finished": finished}


def test_select_keeps_best_and_every_reason():
    rows = [cand(0, "good", sample=0), cand(0, "bad", sample=1), cand(1, "", sample=0), cand(1, "fine", sample=1),
            cand(2, "low"), cand(3, "x", finished=False), cand(4, "word " * 50),
            cand(5, "same", instruction="Shared instruction"), cand(6, "same", instruction="Shared  instruction")]
    scores = [0.9, 0.1, 0.9, 0.5, -5.0, 0.9, 0.9, 0.8, 0.7]
    kept, dropped = F.select(rows, scores, min_score=0.0, max_response_words=20, minhash_threshold=None,
                             embedding_threshold=None)
    assert [r["response"] for r in kept] == ["good", "fine", "same"]
    assert dropped == Counter({"not_best": 1, "empty_response": 1, "below_min_score": 1, "unfinished": 1,
                               "too_long": 1, "duplicate_exact": 1})
    assert [r["dropped"] for r in rows] == [None, "not_best", "empty_response", None, "below_min_score", "unfinished",
                                            "too_long", None, "duplicate_exact"]


def test_unscored_rows_are_dropped_not_crashed():
    rows = [cand(0, "a"), cand(0, "b", sample=1)]
    kept, dropped = F.select(rows, [None, 0.3], minhash_threshold=None, embedding_threshold=None)
    assert [r["response"] for r in kept] == ["b"] and dropped == Counter({"unscored": 1})


def test_no_score_at_all_is_a_clear_error():
    with pytest.raises(ValueError, match="none of the 2 candidates got a score.*put likelihood or reward first"):
        F.select([cand(0, "a"), cand(0, "b", sample=1)], [None, None], minhash_threshold=None, embedding_threshold=None)


def test_near_duplicate_detectors():
    texts = ["Reverse the order of these words: cat dog sun moon", "Reverse the order of these words: cat dog sun moon.",
             "What is the capital of Arvania?"]
    assert F.minhash_duplicates(texts, threshold=0.8) == [False, True, False]
    v = np.eye(3)
    v[1] = v[0] * 0.999 + v[1] * 0.04
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert F.embedding_duplicates(v, threshold=0.98) == [False, True, False]


def test_scores_are_cached_per_scorer_and_only_scorable_candidates_are_scored(outputs):
    run = prepared(outputs)
    rows = [{"instruction": "What is 2 plus 3?", "response": r, "finished": f}
            for r, f in (("5", True), ("7", True), ("5 5 5", False), ("", True))]
    mask = F.scorable(rows, max_response_words=200)
    assert mask == [True, True, False, False]

    class Counting(LikelihoodCommittee):
        calls = 0

        def score(self, rs):
            Counting.calls += len(rs)
            return super().score(rs)

    scorer = Counting(run, ["base"], progress=False)
    first, _ = F.cached_scores(run, scorer, rows, mask)
    assert first[2] is None and first[3] is None and first[0] > first[1] and Counting.calls == 2
    again, _ = F.cached_scores(run, scorer, rows, mask)
    assert again == first and Counting.calls == 2  # read back, not recomputed
    F.cached_scores(run, Counting(run, ["base", "gen_small"], progress=False), rows, mask)
    assert Counting.calls == 4  # another committee is another key


def test_candidates_all_dropped_for_their_form_name_the_fix():
    rows = [{"instruction_id": i, "instruction": "q", "response": "a long answer", "finished": False, "model": "m",
             "sample": 0} for i in range(3)]
    with pytest.raises(ValueError, match=r"all 3 candidates were dropped for their form.*'unfinished': 3.*raise "
                                         "max_new_tokens"):
        F.select(rows, [None] * 3, minhash_threshold=None, embedding_threshold=None)


def test_the_committee_keeps_each_models_scores_for_the_ablation(outputs):
    run = prepared(outputs)
    rows = [{"instruction": "What is 2 plus 3?", "response": r, "finished": f}
            for r, f in (("5", True), ("7", True), ("5 5 5", False))]
    mask = F.scorable(rows, max_response_words=200)
    scores, info = F.cached_scores(run, LikelihoodCommittee(run, ["base", "gen_small"], progress=False), rows, mask)
    per_model = info["per_model"]
    assert set(per_model) == {"base", "gen_small"} and per_model["base"][2] is None
    assert scores[0] == pytest.approx((per_model["base"][0] + per_model["gen_small"][0]) / 2)
    path = runs.stage_dir(run, F.STAGE) / "scores" / "likelihood.json"
    old = runs.read_json(path)
    del old["per_model"]
    runs.write_json(path, old)  # a cache written before per_model existed is recomputed when per_model is needed
    assert "per_model" not in F.cached_scores(run, LikelihoodCommittee(run, ["base", "gen_small"], progress=False),
                                              rows, mask)[1]
    again = F.cached_scores(run, LikelihoodCommittee(run, ["base", "gen_small"], progress=False), rows, mask,
                            need=("per_model",))[1]
    assert again["per_model"] == per_model


@pytest.mark.slow
def test_candidates_split_among_workers_get_the_scores_of_one_process(outputs, capsys):
    """Notebook 03's score_workers: two worker processes on the CPU (one per GPU on GPUs) each score a part of the
    candidates with the whole committee; the scores, and each model's own, are those of one process."""
    run = prepared(outputs)
    rows = [cand(i, f"The answer is {i * 3} because {i} times three is {i * 3}.") for i in range(24)]
    mask = F.scorable(rows, max_response_words=200)
    params = {"run_name": run, "committee": ["base", "gen_small"], "scoring_batch_size": 8, "progress": False}
    one, one_info = F.cached_scores(run, LikelihoodCommittee(run, params["committee"], 8, progress=False), rows, mask)
    runs.stage_dir(run, F.STAGE).joinpath("scores", "likelihood.json").unlink()
    two, two_info = F.cached_scores(run, LikelihoodCommittee(run, params["committee"], 8, progress=False), rows, mask,
                                    workers=2, build=("likelihood", params))
    assert "scoring in 2 workers on cpu" in capsys.readouterr().out
    assert two == pytest.approx(one, abs=1e-5) and None not in two
    for name in params["committee"]:
        assert two_info["per_model"][name] == pytest.approx(one_info["per_model"][name], abs=1e-5)


def test_judge_parts_add_up_to_one_process_report():
    """LLM judges split among workers (score_workers): each part's parse failures add up, and each judge's readable
    share is over all the rows, as one process reports it."""
    done = [{"scores": [4.0, None], "per_model": {}, "n": 2, "parse_failures": {"a": 1, "b": 0}},
            {"scores": [None, 3.0, 5.0], "per_model": {}, "n": 3, "parse_failures": {"a": 1, "b": 2}}]
    values, per_model, extra = F.merge_parts(done)
    assert values == [4.0, None, None, 3.0, 5.0] and per_model == {}
    assert extra == {"parse_failures": {"a": 2, "b": 2}, "parse_rate": {"a": 0.6, "b": 0.6}}
    likelihood = [{"scores": [1.0], "per_model": {"m": [0.5]}, "n": 1}, {"scores": [2.0], "per_model": {"m": [0.7]},
                                                                         "n": 1}]
    assert F.merge_parts(likelihood) == ([1.0, 2.0], {"m": [0.5, 0.7]}, {})


@pytest.mark.slow
def test_judges_are_split_among_workers_and_a_judge_that_cannot_rate_still_stops(outputs):
    """LLM judges now run in score_workers' processes too. The lab's tiny models cannot follow the rubric, so the
    first part's probe stops them, and the failure names the part and shows the judge's answers."""
    run = prepared(outputs)
    rows = [cand(i, f"The answer is {i}.") for i in range(8)]
    mask = F.scorable(rows, max_response_words=200)
    params = {"run_name": run, "judges": ["base"], "judge_max_new_tokens": 6, "scoring_batch_size": 4,
              "progress": False, "backend": "hf"}
    judge = C.JudgeCommittee(run, ["base"], max_new_tokens=6, batch_size=4, progress=False)
    with pytest.raises(RuntimeError, match=r"(?s)judge part \d/2.*readable 1-5 rating for 0 of the first 4"):
        F.cached_scores(run, judge, rows, mask, workers=2, build=("judge", params))


def ablation_rows():
    rows = []
    for iid, instruction in enumerate(["Add 2 and 3.", "Spell cat backwards."]):
        for model in ("base", "gen_small"):
            for sample in range(3):
                rows.append({"instruction_id": iid, "instruction": instruction, "model": model, "sample": sample,
                             "response": f"{model} answer {sample} to {iid}", "finished": True})
    return rows


def test_ablation_selections_repeat_the_papers_three_settings():
    rows = ablation_rows()
    base_scores = [(-1.0 if r["sample"] == 2 else -5.0) if r["model"] == "base" else None for r in rows]
    chosen = F.ablation_selections(rows, {"base": base_scores}, "base", "gen_small", minhash_threshold=None,
                                   embedding_threshold=None)
    assert [(r["model"], r["sample"]) for r in chosen["1x1"]] == [("base", 0)] * 2       # first answer, unfiltered
    assert [(r["model"], r["sample"]) for r in chosen["1x3_self"]] == [("base", 2)] * 2  # its own best of three
    assert [(r["model"], r["sample"]) for r in chosen["weak"]] == [("gen_small", 0)] * 2
    assert all("score" not in r for r in rows)  # the candidates themselves are untouched
    with pytest.raises(ValueError, match=r"self-filter needs the base model 'base' in the likelihood committee"):
        F.ablation_selections(rows, {"gen_small": base_scores}, "base", "gen_small")
    with pytest.raises(ValueError, match=r"the weakest generator 'tiny' answered none.*\['base', 'gen_small'\]"):
        F.ablation_selections(rows, {"base": base_scores}, "base", "tiny")


def notebook_params(run, **changed):
    from helpers import pipeline
    from tests.conftest import ROOT

    return pipeline.notebook_parameters(ROOT / "notebooks" / "03_filtering.ipynb") | {"run_name": run, **changed}


def test_notebook_03_scores_with_each_scorer_its_parameters_name(outputs, monkeypatch):
    """Notebook 03's scoring on a tiny case, the lab's models as judges: the likelihood committee and the LLM judge
    are built from the parameters, score only what can be kept, and the judges' readable ratings reach the metrics."""
    from helpers import committee

    run = prepared(outputs)
    rows = [cand(0, "5", instruction="What is 2 plus 3?"), cand(0, "7", sample=1, instruction="What is 2 plus 3?"),
            cand(1, "", instruction="Spell cat backwards.")]
    params = notebook_params(run, scorers=["likelihood", "judge", "lab_verifier"], committee=["base"],
                             judges=["gen_small", "base"], judge_max_new_tokens=6, progress=False)
    # the lab's models cannot follow a rubric: the judge stops after its probe, and the likelihood scores are kept
    with pytest.raises(committee.JudgeError, match="judge 'gen_small' gave a readable 1-5 rating for 0"):
        F.score_candidates(params, rows)
    assert (runs.stage_dir(run, F.STAGE) / "scores" / "likelihood.json").exists()
    monkeypatch.setattr(committee, "JudgeCommittee", functools.partial(committee.JudgeCommittee, min_parse_rate=0))
    scores, reports = F.score_candidates(params, rows)
    assert list(scores) == ["likelihood", "judge"]  # the lab verifier: notebook 03's lab-only cell
    assert scores["likelihood"][2] is None and scores["judge"][2] is None  # empty: never scored
    assert all(s is None or 1 <= s <= 5 for s in scores["judge"])
    assert set(reports["judge"]["parse_rate"]) == {"gen_small", "base"} and "per_model" in reports["likelihood"]
    judged = runs.read_json(runs.stage_dir(run, F.STAGE) / "scores" / "judge.json")
    assert judged["n_scored"] == 2 and judged["scores"] == scores["judge"]
    kept, dropped = F.select(rows, scores["likelihood"], **F.select_options(params | {"embedding_threshold": None}))
    m = F.metrics(rows, kept, dropped, "likelihood", reports)
    assert m["judge_parse_rate"] == reports["judge"]["parse_rate"] and m["n_selected"] == 1
    assert m["judge_parse_failures"] == sum(reports["judge"]["parse_failures"].values()) >= 1
    assert F.metrics(rows, kept, dropped, "likelihood", {"likelihood": {}})["judge_parse_rate"] == {}


def test_the_notebooks_ablation_reads_the_base_from_notebook_01(outputs):
    run = prepared(outputs)
    runs.finish_stage(run, "01_reconstruct", {"model": "base"}, {})
    rows = ablation_rows()
    reports = {"likelihood": {"per_model": {"base": [-1.0 if r["model"] == "base" else None for r in rows]}}}
    params = notebook_params(run, ablation=True, minhash_threshold=None, embedding_threshold=None)
    with pytest.raises(ValueError, match="ablation = True needs weak_generator"):
        F.run_ablation(params, rows, reports)
    sizes, base = F.run_ablation(params | {"weak_generator": "gen_small"}, rows, reports)
    assert base == "base" and sizes == {"1x1": 2, "1x3_self": 2, "weak": 2}
    assert (runs.stage_dir(run, F.STAGE) / "selected_1x3_self.jsonl").exists()
