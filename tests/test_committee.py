"""The response scorers (``helpers.committee``): rating parsing, the LLM judges through the generation seam, the
reward model, the likelihood committee, and the one registry notebook 03 and the pipeline read."""
import numpy as np
import pytest
import torch

from helpers import committee as C
from helpers import pipeline, runs, sources, writers
from helpers.chat import render_prompt
from helpers.generate import generate
from helpers.lab import tasks, zoo
from tests.conftest import ROOT


@pytest.mark.parametrize("text,expected", [
    ("Rating: 4/5", 4.0), ("**Score: 3**", 3.0), ("Rating: 5", 5.0), ("I'd rate this 4 out of 5.", 4.0),
    ("8/10 - good but terse", 4.0), ("[[2]]", 2.0), ("3", 3.0), ("  4.  ", 4.0), ("Score - 4.5", 4.5),
    ("Rating:\n\n**1**", 1.0), ("The response is correct. Grade: 5", 5.0),
])
def test_parse_rating_messy_judge_outputs(text, expected):
    assert C.parse_rating(text) == expected


@pytest.mark.parametrize("text", [
    "", "The answer is fine.", "Rating: 7", "Rating: 0", "12/10", "The capital has 2 million people and 7 parks",
    "Score: N/A", "cat dog sun",
])
def test_parse_rating_gives_none_rather_than_guessing(text):
    assert C.parse_rating(text) is None


def prepared(outputs, name="f"):
    runs.write_json(runs.stage_dir(name, "00_lab") / "models.json", {n: str(zoo.ZOO_DIR / n) for n in zoo.ZOO})
    return name


def test_judge_committee_counts_unparseable_ratings_and_never_crashes(outputs):
    run = prepared(outputs)
    rows = [{"instruction": "What is 2 plus 3?", "response": r} for r in ("5", "7", "")]
    judge = C.JudgeCommittee(run, ["gen_small", "base"], max_new_tokens=8, progress=False, min_parse_rate=0)
    scores = judge.score(rows)
    assert len(scores) == 3 and set(judge.parse_failures) == {"gen_small", "base"}
    # tiny lab models cannot follow a rubric: their "ratings" are mostly unparseable, recorded as missing
    assert sum(judge.parse_failures.values()) >= 1
    assert all(s is None or 1 <= s <= 5 for s in scores)


def test_the_judge_writes_through_the_generation_seam_as_generate_did():
    """The judge asks a writer (helpers.writers) for its ratings: the same text generate() gave it before."""
    model, tok = zoo.load("base")
    rows = [{"instruction": "What is 2 plus 3?", "response": r} for r in ("5", "7", "")]
    judge = C.JudgeCommittee("f", ["base"], max_new_tokens=6, batch_size=2, progress=False)
    prompts = [render_prompt(tok, C.RUBRIC.format(**r)) for r in rows]
    direct = [o["text"] for o in generate(model, tok, prompts, max_new_tokens=6, batch_size=2, progress=False)]
    assert judge._rate(writers.HFWriter(model, tok), rows, False) == direct


def test_judge_average_skips_missing():
    assert C._mean([4.0, None, 2.0]) == 3.0 and C._mean([None, None]) is None


def test_reward_model_scorer_batches_with_masks(tmp_path):
    """A tiny randomly initialised reward model: scores do not depend on batch composition (masks are right)."""
    rows = [{"instruction": e.instruction, "response": e.response}
            for e in tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), 7, seed=1)]
    path = tiny_reward_model(tmp_path)
    together = C.RewardModel(path, batch_size=7, progress=False).score(rows)
    alone = [C.RewardModel(path, batch_size=1, progress=False).score([r])[0] for r in rows]
    assert np.allclose(together, alone, atol=1e-4)


def tiny_reward_model(tmp_path) -> str:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tok = AutoTokenizer.from_pretrained(zoo.ZOO_DIR / "base")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=tok.pad_token_id)
    LlamaForSequenceClassification(cfg).save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    return str(tmp_path / "rm")


def test_likelihood_prefers_correct_answers():
    model, tok = zoo.load("gen_uniform")
    examples = tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), 60, seed=2)
    right = C.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response} for e in examples])
    wrong = C.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response + " cat"}
                                             for e in examples])
    assert np.mean(np.array(right) > np.array(wrong)) >= 0.9
    assert all(v <= 0 for v in right)
    # batching does not change a score
    again = C.response_logprobs(model, tok, [{"instruction": e.instruction, "response": e.response} for e in examples[:5]],
                                batch_size=1)
    assert np.allclose(right[:5], again, atol=1e-5)


def test_a_judge_that_cannot_rate_stops_after_its_probe_and_shows_its_answers(outputs, monkeypatch):
    """Failure 2: a judge whose ratings never parse was found out only after rating every candidate."""
    run = prepared(outputs)
    rows = [{"instruction": f"What is {i} plus 1?", "response": str(i + 1)} for i in range(40)]
    rated = []
    monkeypatch.setattr(C.JudgeCommittee, "_rate",
                        lambda self, writer, rs, label: rated.extend(rs) or ["Rating: N"] * len(rs))
    judge = C.JudgeCommittee(run, ["base"], progress=False, probe_size=8)
    with pytest.raises(C.JudgeError, match=r"(?s)readable 1-5 rating for 0 of the first 8.*other 32.*'Rating: N'"):
        judge.score(rows)
    assert len(rated) == 8  # the other 32 were never rated
    monkeypatch.setattr(C.JudgeCommittee, "_rate", lambda self, writer, rs, label: ["Rating: 4"] * len(rs))
    assert C.JudgeCommittee(run, ["base"], progress=False, probe_size=8).score(rows) == [4.0] * 40


def test_empty_committees_are_clear_errors(outputs):
    with pytest.raises(ValueError, match="committee is empty"):
        C.LikelihoodCommittee("f", [])
    with pytest.raises(ValueError, match="judges is empty"):
        C.JudgeCommittee("f", [])
    with pytest.raises(ValueError, match="needs reward_model"):
        C.RewardModel("")


# ----------------------------------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------------------------------
def test_every_registered_scorer_builds_from_notebook_03s_parameters(outputs, tmp_path):
    """SCORERS is the one place a scorer is named: each builds from the parameters notebook 03 declares, and the
    pipeline's preflight checks the models of exactly the parameters the registry names."""
    params = pipeline.notebook_parameters(ROOT / "notebooks" / "03_filtering.ipynb")
    params |= {"run_name": prepared(outputs), "reward_model": tiny_reward_model(tmp_path), "judge_max_new_tokens": 5}
    for name, registered in C.SCORERS.items():
        scorer = C.build(name, params)
        if registered.build is None:
            assert scorer is None and registered.lab_only  # the lab verifier: 03's lab-only cell
            continue
        assert scorer.name == name and isinstance(scorer.config(), dict)
        if registered.models:
            assert registered.models in params
    judge = C.build("judge", params)
    assert (judge.max_new_tokens, judge.batch_size, judge.backend) == (5, 256, "hf")
    assert "backend" not in judge.config()  # hf keeps the cache key it had; another backend enters it
    assert C.build("judge", params | {"backend": "vllm"}).config()["backend"] == "vllm"
    assert sources.MODEL_KEYS == {"model": None, "generators": None, "committee": "likelihood", "judges": "judge",
                                   "reward_model": "reward"}


def test_check_scorers_reads_the_registry():
    C.check_scorers(["likelihood", "judge", "reward", "lab_verifier"], lab=True)
    with pytest.raises(ValueError, match=r"unknown \['likelyhood'\]; choose from \['likelihood', 'judge'"):
        C.check_scorers(["likelyhood"], lab=True)
    with pytest.raises(ValueError, match="lab_verifier reads the lab's ground truth and exists only with lab = True"):
        C.check_scorers(["likelihood", "lab_verifier"], lab=False)
