import pytest

from helpers.chat import render_prompt
from helpers.generate import generate
from helpers.lab import standins, tasks, zoo


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


def test_the_gpu_path_static_cache_bucketed_widths_and_filled_batches_gives_the_same_greedy_text(base):
    """What CUDA runs (a static cache, prompt widths rounded up to a bucket, every batch filled to one size with
    copies) minus the compile, which transformers only does on CUDA: the same greedy answers as the dynamic cache,
    in the input order."""
    model, tok = base
    prompts = prompts_for(tok, 11, seed=6)
    want = generate(model, tok, prompts, max_new_tokens=12, batch_size=4)
    got = generate(model, tok, prompts, max_new_tokens=12, batch_size=4, compile=True)
    assert [x["text"] for x in got] == [w["text"] for w in want]
    assert [x["ids"] for x in got] == [w["ids"] for w in want]


def test_generation_plan_keeps_the_cpu_as_it_was(base):
    from helpers.generate import CPU_BATCH, bucket_width, generation_plan

    model, _ = base
    plan = generation_plan(model, 600, 40, 16)
    assert plan == {"compile": False, "batch_size": CPU_BATCH, "equal_batches": False, "decode_steps": 10 * 16}
    assert generation_plan(model, 600, 40, 16, batch_size=256)["batch_size"] == 256
    assert generation_plan(model, 600, 40, 16, batch_size=256, compile=True)["batch_size"] == 200  # 3 equal batches
    assert [bucket_width(w) for w in (1, 16, 17, 100, 256, 257, 700)] == [16, 16, 32, 128, 256, 512, 768]


def test_compiles_on_cuda_only_for_long_jobs_on_models_big_enough(monkeypatch):
    from helpers import generate as g

    model, _ = zoo.load("base")
    monkeypatch.setattr(g, "_is_cuda", lambda m: True)
    assert not g.generation_plan(model, 64, 40, 16, batch_size=64)["compile"]  # 16 steps
    assert not g.generation_plan(model, 64 * 64, 40, 16, batch_size=64)["compile"]  # the lab model is too small
    monkeypatch.setattr(g, "COMPILE_MIN_PARAMS", 1)
    assert g.generation_plan(model, 64 * 64, 40, 16, batch_size=64)["compile"]  # 1024 steps
    # a shard of a longer job (notebook 02): the whole job decides, the plan is for this call's shard
    shard = g.generation_plan(model, 64, 40, 16, batch_size=64, job_prompts=64 * 64)
    assert shard["compile"] and shard["decode_steps"] == 16


def test_auto_batch_size_follows_free_memory(base, monkeypatch):
    from helpers import generate as g

    model, _ = base
    monkeypatch.setattr(g, "_is_cuda", lambda m: True)
    small, large = (g.auto_batch_size(model, 128, 256, free_bytes=f) for f in (2**26, 2**36))
    assert 8 <= small < large == g.GPU_MAX_BATCH
    assert small & (small - 1) == 0  # a power of two


@pytest.mark.parametrize("family", ["qwen2_5", "llama3_1", "gemma", "phi3"])
def test_real_architectures_generate_with_their_own_template(family):
    """Stand-ins of real model families (random weights): rendering, BOS handling and batching work end to end."""
    tok = standins.tokenizer(family)
    model = standins.model(family, tok)
    prompts = [render_prompt(tok, q, date_string="26 Jul 2024") for q in ["Hi", "Sort these numbers: 3 1 2"]]
    out = generate(model, tok, prompts, max_new_tokens=5, batch_size=2, do_sample=True, seed=0)
    single = [generate(model, tok, [p], max_new_tokens=5, batch_size=1, do_sample=False)[0] for p in prompts]
    batched = generate(model, tok, prompts, max_new_tokens=5, batch_size=2, do_sample=False)
    assert [o["text"] for o in batched] == [o["text"] for o in single]
    assert all(o["new_tokens"] >= 1 for o in out)
