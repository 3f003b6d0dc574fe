"""The generation seam: a writer gives the same answers as the batched generate() it wraps, and backends are looked
up by name."""
import pytest

from helpers import generate, writers
from helpers.lab import zoo


def test_hf_writer_is_generate(tmp_path, monkeypatch):
    model, tokenizer = zoo.load("base")
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                             add_generation_prompt=True) for q in ("add 2 and 3", "spell cat")]
    writer = writers.HFWriter(model, tokenizer)
    assert writer.write(prompts, max_new_tokens=8) == generate.generate(model, tokenizer, prompts, max_new_tokens=8)
    sampled = dict(max_new_tokens=8, do_sample=True, temperature=0.7, seed=3)
    assert writer.write(prompts, **sampled) == generate.generate(model, tokenizer, prompts, **sampled)


def test_unknown_backend_names_the_known_ones():
    with pytest.raises(ValueError, match="backend 'vllm' is unknown; the backends are hf"):
        writers.load("lab", "base", backend="vllm")
