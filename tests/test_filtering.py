"""Stage 03: scorers, rating parsing, selection and dedup."""
from collections import Counter

import numpy as np
import pytest
import torch

from helpers import filtering as F
from helpers import runs
from helpers.lab import tasks, zoo


@pytest.mark.parametrize("text,expected", [
    ("Rating: 4/5", 4.0), ("**Score: 3**", 3.0), ("Rating: 5", 5.0), ("I'd rate this 4 out of 5.", 4.0),
    ("8/10 - good but terse", 4.0), ("[[2]]", 2.0), ("3", 3.0), ("  4.  ", 4.0), ("Score - 4.5", 4.5),
    ("Rating:\n\n**1**", 1.0), ("The response is correct. Grade: 5", 5.0),
])
def test_parse_rating_messy_judge_outputs(text, expected):
    assert F.parse_rating(text) == expected


@pytest.mark.parametrize("text", [
    "", "The answer is fine.", "Rating: 7", "Rating: 0", "12/10", "The capital has 2 million people and 7 parks",
    "Score: N/A", "cat dog sun",
])
def test_parse_rating_gives_none_rather_than_guessing(text):
    assert F.parse_rating(text) is None


def prepared(outputs, name="f"):
    runs.write_json(runs.stage_dir(name, "00_lab") / "models.json", {n: str(zoo.ZOO_DIR / n) for n in zoo.ZOO})
    return name


def test_judge_committee_counts_unparseable_ratings_and_never_crashes(outputs):
    run = prepared(outputs)
    rows = [{"instruction": "What is 2 plus 3?", "response": r} for r in ("5", "7", "")]
    judge = F.JudgeCommittee(run, ["gen_small", "base"], max_new_tokens=8, progress=False, min_parse_rate=0)
    scores = judge.score(rows)
    assert len(scores) == 3 and set(judge.parse_failures) == {"gen_small", "base"}
    # tiny lab models cannot follow a rubric: their "ratings" are mostly unparseable, recorded as missing
    assert sum(judge.parse_failures.values()) >= 1
    assert all(s is None or 1 <= s <= 5 for s in scores)


def test_judge_average_skips_missing():
    assert F._mean([4.0, None, 2.0]) == 3.0 and F._mean([None, None]) is None


def test_reward_model_scorer_batches_with_masks(tmp_path):
    """A tiny randomly initialised reward model: scores do not depend on batch composition (masks are right)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(zoo.ZOO_DIR / "base")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    rows = [{"instruction": e.instruction, "response": e.response}
            for e in tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), 7, seed=1)]
    together = F.RewardModel(str(tmp_path / "rm"), batch_size=7, progress=False).score(rows)
    alone = [F.RewardModel(str(tmp_path / "rm"), batch_size=1, progress=False).score([r])[0] for r in rows]
    assert np.allclose(together, alone, atol=1e-4)


def test_likelihood_prefers_correct_answers():
    model, tok = zoo.load("gen_uniform")
    examples = tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), 60, seed=2)
    right = F.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response} for e in examples])
    wrong = F.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response + " cat"}
                                             for e in examples])
    assert np.mean(np.array(right) > np.array(wrong)) >= 0.9
    assert all(v <= 0 for v in right)
    # batching does not change a score
    again = F.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response} for e in examples[:5]],
                                batch_size=1)
    assert np.allclose(right[:5], again, atol=1e-5)


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


def test_a_judge_that_cannot_rate_stops_after_its_probe_and_shows_its_answers(outputs, monkeypatch):
    """Failure 2: a judge whose ratings never parse was found out only after rating every candidate."""
    run = prepared(outputs)
    rows = [{"instruction": f"What is {i} plus 1?", "response": str(i + 1)} for i in range(40)]
    rated = []
    monkeypatch.setattr(F.JudgeCommittee, "_rate",
                        lambda self, model, tok, rs, label: rated.extend(rs) or ["Rating: N"] * len(rs))
    judge = F.JudgeCommittee(run, ["base"], progress=False, probe_size=8)
    with pytest.raises(F.JudgeError, match=r"(?s)readable 1-5 rating for 0 of the first 8.*other 32.*'Rating: N'"):
        judge.score(rows)
    assert len(rated) == 8  # the other 32 were never rated
    monkeypatch.setattr(F.JudgeCommittee, "_rate", lambda self, model, tok, rs, label: ["Rating: 4"] * len(rs))
    assert F.JudgeCommittee(run, ["base"], progress=False, probe_size=8).score(rows) == [4.0] * 40


def test_scores_are_cached_per_scorer_and_only_scorable_candidates_are_scored(outputs):
    run = prepared(outputs)
    rows = [{"instruction": "What is 2 plus 3?", "response": r, "finished": f}
            for r, f in (("5", True), ("7", True), ("5 5 5", False), ("", True))]
    mask = F.scorable(rows, max_response_words=200)
    assert mask == [True, True, False, False]

    class Counting(F.LikelihoodCommittee):
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


def test_empty_committees_are_clear_errors(outputs):
    with pytest.raises(ValueError, match="committee is empty"):
        F.LikelihoodCommittee("f", [])
    with pytest.raises(ValueError, match="judges is empty"):
        F.JudgeCommittee("f", [])
    with pytest.raises(ValueError, match="needs reward_model"):
        F.RewardModel("")


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
    scores, info = F.cached_scores(run, F.LikelihoodCommittee(run, ["base", "gen_small"], progress=False), rows, mask)
    per_model = info["per_model"]
    assert set(per_model) == {"base", "gen_small"} and per_model["base"][2] is None
    assert scores[0] == pytest.approx((per_model["base"][0] + per_model["gen_small"][0]) / 2)
    path = runs.stage_dir(run, F.STAGE) / "scores" / "likelihood.json"
    old = runs.read_json(path)
    del old["per_model"]
    runs.write_json(path, old)  # a cache written before per_model existed is recomputed when per_model is needed
    assert "per_model" not in F.cached_scores(run, F.LikelihoodCommittee(run, ["base", "gen_small"], progress=False),
                                              rows, mask)[1]
    again = F.cached_scores(run, F.LikelihoodCommittee(run, ["base", "gen_small"], progress=False), rows, mask,
                            need=("per_model",))[1]
    assert again["per_model"] == per_model


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
