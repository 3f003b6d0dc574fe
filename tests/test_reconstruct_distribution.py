"""Stage 01 (helpers.reconstruct_distribution): sampling with the pre-query template, cleaning, categorisation,
and the lab-only measurement."""
import numpy as np
import pytest

from helpers import embeddings, writers
from helpers import reconstruct_distribution as rd
from helpers.lab import tasks, zoo
from helpers.lab.evaluate import reconstruction_report, total_variation


def row(i, text, finished=True):
    return {"id": i, "text": text, "finished": finished, "new_tokens": 5}


def test_clean_keeps_reasons():
    rows = [row(0, "  Reverse the order of these words: cat dog sun  "), row(1, "reverse the ORDER of these words:  cat dog sun"),
            row(2, "Sort these numbers", finished=False), row(3, "   "), row(4, "Hi there"),
            row(5, "Sure, here is the list you asked for"), row(6, "12 + 4 = 16 ."), row(7, "word " * 300)]
    kept, reasons = rd.clean(rows, min_words=3, max_words=200)
    assert kept == [{"id": 0, "instruction": "Reverse the order of these words: cat dog sun"}]
    assert reasons == {"duplicate": 1, "truncated": 1, "empty": 1, "too_short": 1, "looks_like_response": 2,
                       "too_long": 1}
    assert [r["dropped"] for r in rows] == [None, "duplicate", "truncated", "empty", "too_short",
                                            "looks_like_response", "looks_like_response", "too_long"]


def test_categorise_finds_the_obvious_groups():
    groups = {
        "capital": [f"What is the capital of {c}?" for c in list(tasks.CAPITALS)[:10]],
        "uppercase": [f"Convert to uppercase: {w} {v}" for w, v in zip(tasks.WORDS[:10], tasks.WORDS[10:20])],
        "sort": [f"Sort these numbers from smallest to largest: {i} {i + 3} {i + 1}" for i in range(10)],
    }
    texts = [t for g in groups.values() for t in g]
    cat = rd.categorise(texts, embeddings.embed(texts), k_min=2, k_max=6, seed=0)
    assert cat["k"] == 3
    labels = np.array(cat["labels"]).reshape(3, 10)
    assert all(len(set(r)) == 1 for r in labels) and len({r[0] for r in labels}) == 3
    assert sum(c["size"] for c in cat["clusters"]) == 30 and all(c["label"] and c["examples"] for c in cat["clusters"])
    assert rd.categorise(texts, embeddings.embed(texts), n_clusters=4)["k"] == 4  # a fixed k is respected


def test_categorise_needs_enough_instructions():
    with pytest.raises(ValueError, match="only 2 instructions left"):
        rd.categorise(["a b c", "d e f"], np.eye(2))


def test_bundled_minilm_is_real():
    vec = embeddings.embed(["What is the capital of France?", "Name the capital city of France.", "Sort 3 1 2"])
    assert vec.shape == (3, 384)
    assert vec[0] @ vec[1] > vec[0] @ vec[2] + 0.2  # paraphrases are close, unrelated requests are not


def test_embeddings_run_on_the_gpu_when_there_is_one(monkeypatch):
    """``embed`` asks for the encoder on "cuda" when this process sees a GPU (on the GPU machine it ran on the CPU:
    03's selection took 30 s), on "cpu" otherwise, and on the device given."""
    from helpers import workers

    asked = []

    class Encoder:
        def encode(self, texts, **kwargs):
            return np.zeros((len(texts), 2))

    monkeypatch.setattr(embeddings, "load_encoder", lambda name, device: asked.append(device) or Encoder())
    for gpus in (["0"], []):
        monkeypatch.setattr(workers, "visible_gpus", lambda gpus=gpus: gpus)
        embeddings.embed(["a"])
    embeddings.embed(["a"], device="cpu")
    assert asked == ["cuda", "cpu", "cpu"]


def test_sampling_from_base_recovers_the_mixture():
    """Lab check on a small sample: the base model writes well-formed instructions in roughly the hidden mix."""
    samples, pq = rd.sample_instructions(writers.HFWriter(*zoo.load("base")), 400, seed=3, progress=False)
    assert pq == {"prefix": "<|im_start|>user\n", "stop_token": "<|im_end|>"}
    kept, _ = rd.clean(samples)
    report = reconstruction_report(samples, kept)
    assert report["well_formed_rate"] >= 0.9
    assert report["tv_distance"] <= 0.15  # 400 samples; the notebook's 2000 give a tighter estimate


def test_total_variation():
    assert total_variation({"a": 1.0}, {"b": 1.0}) == 1.0
    assert total_variation({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


def test_signs_of_trouble_are_printed_and_recorded(capsys):
    """Failure 6: a silhouette of 0.02 passed without a word (02's unfinished answers: test_multi_model_generation)."""
    from collections import Counter

    samples = [{"new_tokens": 5}] * 10
    cat = {"k": 4, "silhouette": {4: 0.02}}
    m = rd.metrics(samples, [{}] * 3, Counter(truncated=7), cat, {})
    assert len(m["warnings"]) == 3 and "silhouette 0.02" in m["warnings"][2]
    assert capsys.readouterr().out.count("WARNING: ") == 3
    assert rd.metrics(samples, [{}] * 10, Counter(), {"k": 4, "silhouette": {4: 0.3}}, {})["warnings"] == []


class CannedWriter:
    """A backend that is not transformers at all: a tokenizer and a write method."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, []

    def write(self, prompts, **options):
        self.calls.append((list(prompts), options))
        return [{"text": f"Spell word {i}", "finished": True, "new_tokens": 3, "prompt_tokens": 2, "ids": []}
                for i in range(len(prompts))]


def test_sampling_asks_the_writer_with_the_prequery_template(lab_tokenizer):
    """Stage 01 only talks to a writer: the template comes from its tokenizer, the instructions from its write."""
    writer = CannedWriter(lab_tokenizer)
    samples, pq = rd.sample_instructions(writer, 3, temperature=0.9, max_new_tokens=12, batch_size=2, seed=4,
                                         progress=False)
    (prompts, options), = writer.calls
    assert prompts == [pq["prefix"]] * 3 and pq["stop_token"] == "<|im_end|>"
    assert options == dict(max_new_tokens=12, batch_size=2, do_sample=True, temperature=0.9, top_p=1.0, seed=4,
                           stop_token="<|im_end|>", progress=False, job_prompts=3, compile=None)
    assert samples[2] == {"id": 2, "text": "Spell word 2", "finished": True, "new_tokens": 3}
    rd.sample_instructions(writer, 3, progress=False, compile=False)  # notebook 01's compile_decode
    assert writer.calls[-1][1]["compile"] is False


@pytest.mark.slow
def test_chunks_split_among_workers_are_the_samples_of_one_process(outputs):
    """Issue 23: 01 samples in chunks, each with its own seed (the first keeps the sample seed, so a run of up to one
    chunk draws what it drew before), and two worker processes sharing the chunks give one process's samples."""
    from helpers.generate import generate

    writer = writers.load("t", str(zoo.ZOO_DIR / "base"))  # a folder: each worker loads it again from its source
    options = dict(max_new_tokens=10, batch_size=4, seed=5, progress=False)
    one, pq = rd.sample_instructions(writer, 8, chunk_size=4, **options)
    two, pq2 = rd.sample_instructions(writer, 8, chunk_size=4, workers=2, **options)
    assert two == one and pq2["sampled_by"]["workers"] == 2 and "sampled_by" not in pq
    assert [r["id"] for r in one] == list(range(8))
    # one chunk: the draws of a single generate call with the sample seed, as before chunks existed
    single, _ = rd.sample_instructions(writer, 4, chunk_size=4, **options)
    direct = generate(writer.model, writer.tokenizer, [pq["prefix"]] * 4, max_new_tokens=10, batch_size=4, seed=5,
                      do_sample=True, stop_token=pq["stop_token"])
    assert [r["text"] for r in single] == [d["text"] for d in direct] == [r["text"] for r in one[:4]]
    assert [r["text"] for r in one[4:]] != [r["text"] for r in one[:4]]  # the second chunk has a seed of its own
