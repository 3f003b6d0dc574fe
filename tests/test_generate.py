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


@pytest.mark.parametrize("peaked", [True, False])
def test_the_nucleus_is_transformers_top_p_without_sorting_the_whole_vocabulary(peaked):
    """``nucleus`` keeps the tokens, and gives them the probabilities, that transformers' ``TopPLogitsWarper``
    keeps: from the top 1,024 when they hold the nucleus (a peaked row, as a language model's usually is), else
    from the whole sorted row."""
    import torch
    from transformers import TopPLogitsWarper

    from helpers.decode import NUCLEUS_TOP_K, nucleus

    torch.manual_seed(0)
    scores = torch.randn(4, 262_144)
    if peaked:
        scores[:, :40] += torch.linspace(14, 8, 40)
    scores[3] = torch.randn(262_144)  # one flat row in either case: sorted in full
    expected = TopPLogitsWarper(0.95)(None, scores.clone()).softmax(-1)
    groups = nucleus(scores, 0.95)
    assert [(rows.tolist(), ids.shape[-1]) for rows, ids, _ in groups] == (
        [([0, 1, 2], NUCLEUS_TOP_K), ([3], scores.shape[-1])] if peaked else [([0, 1, 2, 3], scores.shape[-1])])
    got = torch.zeros_like(expected)
    for rows, ids, probs in groups:
        got[rows] = torch.zeros_like(got[rows]).scatter_(-1, ids, probs / probs.sum(-1, keepdim=True))
    # tokens kept by one side only: at a flat row's nucleus edge, where the two cumulative sums (taken in other
    # orders) round differently; never in a peaked row
    differ = ((got > 0) != (expected > 0)).sum(-1)
    if peaked:
        assert int(differ[:3].sum()) == 0
    assert int(differ.sum()) <= 1e-4 * int((expected > 0).sum())
    assert float(((got - expected).abs() * ((got > 0) & (expected > 0))).max()) < 1e-6


def test_large_vocabularies_sample_through_the_nucleus_sampler(base, monkeypatch):
    """Vocabularies from ``NUCLEUS_MIN_VOCAB`` on (here lowered to the lab's) sample with ``NucleusSampler``: seeded
    as before, and with a nucleus of one token it answers as greedy decoding does."""
    from helpers import generate as g

    model, tok = base
    prompts = prompts_for(tok, 6, seed=2)
    greedy = generate(model, tok, prompts, max_new_tokens=8)
    monkeypatch.setattr(g, "NUCLEUS_MIN_VOCAB", 0)
    calls = []

    class Counted(g.NucleusSampler):
        def __call__(self, input_ids, scores):
            calls.append(1)
            return super().__call__(input_ids, scores)

    monkeypatch.setattr(g, "NucleusSampler", Counted)
    a = generate(model, tok, prompts, do_sample=True, temperature=0.7, top_p=0.9, seed=3, max_new_tokens=8)
    assert calls and a == generate(model, tok, prompts, do_sample=True, temperature=0.7, top_p=0.9, seed=3,
                                   max_new_tokens=8)
    narrow = generate(model, tok, prompts, do_sample=True, temperature=0.7, top_p=1e-9, seed=3, max_new_tokens=8)
    assert [o["text"] for o in narrow] == [o["text"] for o in greedy]
    with pytest.raises(ValueError, match="temperature > 0"):
        generate(model, tok, prompts, do_sample=True, temperature=0.0, top_p=0.9, max_new_tokens=8)


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
    assert plan == {"compile": False, "batch_size": CPU_BATCH, "equal_batches": False, "decode_steps": 10 * 16,
                    "packed_gqa": False, "graphs_only": False}
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
    # the compiled decode packs grouped heads below PACKED_GQA_MAX_PARAMS only (no limit by default: a switch)
    assert shard["packed_gqa"]
    monkeypatch.setattr(g, "PACKED_GQA_MAX_PARAMS", sum(p.numel() for p in model.parameters()))
    assert not g.generation_plan(model, 64 * 64, 40, 16, batch_size=64)["packed_gqa"]


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


GQA_SHAPES = {  # (architecture, shape): grouped-query models of the real track's two families, tiny
    "qwen2": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2, vocab_size=1536, max_position_embeddings=1024),
    "gemma3_text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=1, head_dim=32, vocab_size=1536, max_position_embeddings=1024,
                        sliding_window=8),
}


def gqa_model(arch):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = standins.tokenizer("qwen2_5")
    config = AutoConfig.for_model(arch, **GQA_SHAPES[arch], pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tok


@pytest.mark.parametrize("arch", sorted(GQA_SHAPES))
def test_packed_gqa_decode_reads_kv_heads_unexpanded_and_equals_sdpa_under_compile_too(arch, monkeypatch):
    """A one-token decode step through ``packed_gqa_attention`` gives transformers' SDPA logits, also traced by
    ``torch.compile`` (whole graph, the eager backend: the CPU has no CUDA graphs), where transformers itself
    expands the key/value heads; SDPA (or, for gemma's groups of 4 query heads, FlexAttention: ``FLEX_DECODE``) is
    then handed one key/value head per group, never the expanded copy."""
    import torch
    from transformers import StaticCache

    from helpers import generate as g
    from helpers.generate import _packed_gqa

    model, tok = gqa_model(arch)
    heads, kv_heads = model.config.num_attention_heads, model.config.num_key_value_heads
    ids = torch.randint(10, 1500, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # a left-padded row: the decode mask is not all ones

    def decode(compiled: bool):
        cache = StaticCache(config=model.config, max_cache_len=16)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True)
            step = dict(input_ids=ids[:, -1:], attention_mask=torch.cat([mask, mask[:, -1:]], 1),
                        past_key_values=cache, use_cache=True, cache_position=torch.tensor([9]))
            forward = torch.compile(model.forward, backend="eager", fullgraph=True) if compiled else model.forward
            return forward(**step).logits

    torch._dynamo.reset()
    reference = decode(compiled=False)  # transformers' own SDPA path (packs itself outside compile)
    seen, flexed = [], []
    sdpa, flex = torch.nn.functional.scaled_dot_product_attention, g._flex_decode
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: seen.append((q.shape[1], q.shape[2], k.shape[1])) or sdpa(q, k, v, **kw))
    monkeypatch.setattr(g, "_flex_decode", lambda q, k, *a: flexed.append((q.shape[1], k.shape[1])) or flex(q, k, *a))
    by_flex = (heads // kv_heads) & (heads // kv_heads - 1) == 0
    for compiled, flex_allowed in ((False, True), (True, True), (True, False)):  # False: compile="graphs"
        seen.clear(), flexed.clear()
        with _packed_gqa(model, flex=flex_allowed):
            assert model.config._attn_implementation == "sdpa_packed_gqa"
            got = decode(compiled)
        assert model.config._attn_implementation == "sdpa"  # restored
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)
        if by_flex and flex_allowed:  # the decode step through FlexAttention, the K/V heads as they are
            assert flexed and set(flexed) == {(heads, kv_heads)}, (compiled, flexed)
        else:  # the decode step, packed
            assert (kv_heads, heads // kv_heads, kv_heads) in seen and not flexed, (compiled, seen)
        assert all(q_len != 1 for _, q_len, _ in seen), (compiled, seen)  # and never unpacked (expanded K/V)


@pytest.mark.parametrize("case", ["no mask", "padding mask", "mask per head", "position bias", "prefill"])
def test_packed_gqa_attention_equals_expanded_heads_and_hands_the_rest_to_transformers(case):
    """The fold against the reference it replaces (K/V expanded by ``repeat_kv``, then SDPA), on random tensors; what
    it does not fold (a mask per head, a position bias, several query positions) goes to transformers' SDPA function
    and gives its result."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    from helpers.generate import packed_gqa_attention

    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    torch.manual_seed(0)
    q_len = 4 if case == "prefill" else 1
    query, key, value = torch.randn(2, 6, q_len, 16), torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
    mask = torch.ones(2, 6 if case == "mask per head" else 1, q_len, 9, dtype=torch.bool)
    mask[0, ..., :3] = False  # a left-padded row
    mask = None if case == "no mask" else mask
    extra = {"position_bias": torch.randn(1, 6, q_len, 9)} if case == "position bias" else {}
    got, _ = packed_gqa_attention(module, query, key, value, mask, dropout=0.0, scaling=0.25, **extra)
    want, _ = sdpa_attention_forward(module, query, key, value, mask, dropout=0.0, scaling=0.25, **extra)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert got.shape == (2, q_len, 6, 16)
    if case in ("no mask", "padding mask"):
        reference = torch.nn.functional.scaled_dot_product_attention(query, repeat_kv(key, 3), repeat_kv(value, 3),
                                                                     attn_mask=mask, scale=0.25).transpose(1, 2)
        torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mask", ["bool", "additive", None])
def test_the_flex_decode_step_equals_expanded_heads(mask, monkeypatch):
    """``FLEX_DECODE``: a decode step of groups of 4 query heads through FlexAttention gives SDPA's result on the
    expanded heads, with SDPA's boolean padding mask, an additive one, or none; groups of 3 keep SDPA."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    from helpers import generate as g

    monkeypatch.setattr(g, "FLEX_DECODE", True)
    flexed = []
    real = g._flex_decode
    monkeypatch.setattr(g, "_flex_decode", lambda *a: flexed.append(1) or real(*a))
    for groups in (4, 3):
        module = torch.nn.Module()
        module.num_key_value_groups, module.is_causal = groups, True
        torch.manual_seed(0)
        query, key, value = torch.randn(2, 2 * groups, 1, 16), torch.randn(2, 2, 9, 16), torch.randn(2, 2, 9, 16)
        keep = torch.ones(2, 1, 1, 9, dtype=torch.bool)
        keep[0, ..., :3] = False  # a left-padded row
        given = {"bool": keep, "additive": torch.zeros(keep.shape).masked_fill(~keep, float("-inf")),
                 None: None}[mask]
        got, _ = g.packed_gqa_attention(module, query, key, value, given, dropout=0.0, scaling=0.25)
        want = torch.nn.functional.scaled_dot_product_attention(
            query, repeat_kv(key, groups), repeat_kv(value, groups), attn_mask=None if mask is None else keep,
            scale=0.25).transpose(1, 2)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        assert len(flexed) == 1  # the groups of 4 only


def test_flex_decode_is_kept_to_the_cases_measured(monkeypatch):
    """``flex_decodes``: groups of a power of two of query heads, heads of at most 128 dimensions, no dropout, on
    a GPU of compute capability 8.0 or later (or the CPU, in tests); ``FLEX_DECODE = False`` turns it off."""
    from types import SimpleNamespace

    import torch

    from helpers import generate as g

    cpu = torch.zeros(1)
    assert g.flex_decodes(4, 128, 0.0, cpu) and g.flex_decodes(8, 64, 0.0, cpu)
    assert not any(g.flex_decodes(*case, cpu) for case in ((3, 64, 0.0), (7, 64, 0.0), (4, 256, 0.0), (4, 64, 0.1)))
    gpu = SimpleNamespace(is_cuda=True, device="cuda:0")
    for capability, flexes in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert g.flex_decodes(4, 128, 0.0, gpu) == flexes, capability
    monkeypatch.setattr(g, "FLEX_DECODE", False)
    assert not g.flex_decodes(4, 128, 0.0, cpu)


def test_a_compiled_gpu_plan_enters_the_packed_attention_and_gives_the_same_greedy_text(monkeypatch):
    """``generate`` switches a grouped-query model to the packed attention exactly when the plan says so (a
    compiled CUDA decode, here pretended on the CPU), and the answers are those of the plain CPU path."""
    from helpers import generate as g

    model, tok = gqa_model("qwen2")
    prompts = prompts_for(tok, 6, seed=4)
    want = generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    entered = []
    real = g._packed_gqa
    monkeypatch.setattr(g, "_packed_gqa", lambda m, flex: entered.append((m.config._attn_implementation, flex))
                        or real(m, flex))
    monkeypatch.setattr(g, "_is_cuda", lambda m: True)
    monkeypatch.setattr(g, "COMPILE_MIN_PARAMS", 1)
    assert g.generation_plan(model, 6, 40, 10, batch_size=3, compile=True)["packed_gqa"]
    got = generate(model, tok, prompts, max_new_tokens=10, batch_size=3, compile=True)
    assert entered == [("sdpa", True)] and model.config._attn_implementation == "sdpa"  # FlexAttention allowed
    assert [x["ids"] for x in got] == [w["ids"] for w in want]
    entered.clear()  # compile="graphs" (no inductor): packed, never through FlexAttention
    got = generate(model, tok, prompts, max_new_tokens=10, batch_size=3, compile="graphs")
    assert entered == [("sdpa", False)] and [x["ids"] for x in got] == [w["ids"] for w in want]
    eager = type(model)(model.config.__class__.from_dict({**model.config.to_dict(), "_attn_implementation": "eager"}))
    assert not g.generation_plan(eager, 6, 40, 10, batch_size=3, compile=True)["packed_gqa"]


def test_graphs_only_compiles_the_static_decode_with_the_cudagraphs_backend_and_gives_the_same_text(base, monkeypatch):
    """``compile="graphs"`` (``compile_decode: graphs``): the static-cache path, its step (``decode._step``) compiled
    with ``GRAPHS_ONLY`` (torch.compile's "cudagraphs" backend: no inductor kernels). Here compiled on the CPU too
    (``COMPILE_DEVICES``), where the backend runs the traced graph's eager kernels without graphs: the greedy
    answers of the uncompiled path."""
    from helpers import decode
    from helpers import generate as g

    model, tok = base
    prompts = prompts_for(tok, 6, seed=8)
    want = generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    assert g.generation_plan(model, 6, 40, 10, batch_size=3, compile="graphs")["graphs_only"]
    compiled, real = [], decode._compiled_step
    monkeypatch.setattr(g, "COMPILE_DEVICES", ("cuda", "cpu"))
    monkeypatch.setattr(decode, "_COMPILED", {})
    monkeypatch.setattr(decode, "_compiled_step", lambda options: compiled.append(options) or real(options))
    got = generate(model, tok, prompts, max_new_tokens=10, batch_size=3, compile="graphs")
    assert compiled and all(c == {**decode.INDUCTOR, **g.GRAPHS_ONLY} for c in compiled)
    assert [x["ids"] for x in got] == [w["ids"] for w in want]
    compiled.clear()  # compile=True: inductor's options, as transformers compiles a static decode (not run here)
    monkeypatch.setattr(g, "COMPILE_DEVICES", ("cuda",))
    generate(model, tok, prompts[:3], max_new_tokens=4, batch_size=3, compile=True)
    assert compiled == [None]  # the CPU: uncompiled


def test_packed_gqa_leaves_models_without_grouped_heads_or_sdpa_alone():
    from helpers.generate import _packed_gqa

    model, _ = gqa_model("qwen2")
    eager = type(model)(model.config.__class__.from_dict({**model.config.to_dict(), "_attn_implementation": "eager"}))
    full = dict(GQA_SHAPES["qwen2"], num_key_value_heads=GQA_SHAPES["qwen2"]["num_attention_heads"])
    mha = type(model)(model.config.__class__(**full))
    for other, implementation in [(eager, "eager"), (mha, "sdpa")]:
        assert other.config._attn_implementation == implementation
        with _packed_gqa(other):
            assert other.config._attn_implementation == implementation
