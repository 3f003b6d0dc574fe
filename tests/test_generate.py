import pytest

from helpers.generate import generate
from helpers.lab import tasks, zoo


@pytest.fixture(scope="module")
def base():
    return zoo.load("base")


def prompts_for(tok, n, seed):
    examples = tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), n, seed)
    return [tok.apply_chat_template([{"role": "user", "content": e.instruction}], tokenize=False,
                                    add_generation_prompt=True) for e in examples]


def test_batched_left_padded_greedy_equals_one_by_one(base):
    model, tok = base
    prompts = prompts_for(tok, 12, seed=1)  # different lengths, so batches need padding
    batched = generate(model, tok, prompts, batch_size=5, max_new_tokens=12)
    single = [generate(model, tok, [p], batch_size=1, max_new_tokens=12)[0] for p in prompts]
    assert [b["text"] for b in batched] == [s["text"] for s in single]
    assert all(b["finished"] for b in batched)
    assert all(b["prompt_tokens"] == len(tok(p, add_special_tokens=False)["input_ids"]) for b, p in zip(batched, prompts))


def test_sampling_is_seeded_and_order_preserving(base):
    model, tok = base
    prompts = prompts_for(tok, 6, seed=2)
    a = generate(model, tok, prompts, do_sample=True, temperature=1.0, seed=3, max_new_tokens=8)
    b = generate(model, tok, prompts, do_sample=True, temperature=1.0, seed=3, max_new_tokens=8)
    assert a == b


def test_max_new_tokens_cuts_unfinished(base):
    model, tok = base
    out = generate(model, tok, prompts_for(tok, 3, seed=4), max_new_tokens=1)
    assert all(o["new_tokens"] == 1 for o in out)


def test_no_pad_token_is_a_clear_error(base):
    model, tok = base
    tok = tok.__class__.from_pretrained(zoo.ZOO_DIR / "base")
    tok.pad_token = None
    with pytest.raises(ValueError, match="no pad token"):
        generate(model, tok, ["x"])


def test_stops_at_the_generation_configs_end_tokens_too(base):
    """A tokenizer whose eos is not the turn end (Gemma: <eos> vs <end_of_turn>) still stops at the turn end."""
    model, tok = base
    prompts = prompts_for(tok, 6, seed=5)
    want = generate(model, tok, prompts, max_new_tokens=16)
    other = tok.__class__.from_pretrained(zoo.ZOO_DIR / "base")
    other.eos_token = other.pad_token
    assert other.eos_token_id != tok.eos_token_id and model.generation_config.eos_token_id == tok.eos_token_id
    got = generate(model, other, prompts, max_new_tokens=16)
    assert [g["text"] for g in got] == [w["text"] for w in want] and all(g["finished"] for g in got)


def test_no_stop_token_at_all_is_a_clear_error(base):
    model, tok = base
    other = tok.__class__.from_pretrained(zoo.ZOO_DIR / "base")
    other.eos_token = None
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = None
    try:
        with pytest.raises(ValueError, match="no stop token.*pass stop_token"):
            generate(model, other, ["x"])
    finally:
        model.generation_config.eos_token_id = saved
