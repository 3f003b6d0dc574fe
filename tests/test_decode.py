"""The static-cache decode loop (``helpers.decode``): the answers of transformers' own loop, the draw's distribution,
and the stop tests every ``CHECK_EVERY`` steps."""

import functools

import pytest
import torch

from helpers import decode
from helpers.decode import NUCLEUS_TOP_K, nucleus
from helpers.generate import generate
from helpers.lab import standins
from test_generate import GQA_SHAPES, gqa_model, prompts_for


def left_padded(tok, prompts, width=None):
    from helpers.chat import encode_prompts
    from helpers.generate import left_padded as pad

    encoded = encode_prompts(tok, prompts)
    return pad(encoded, width or max(map(len, encoded)), tok.pad_token_id)


def transformers_greedy(model, tok, ids, mask, n):
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, do_sample=False, top_k=None,
                             top_p=None, temperature=None, eos_token_id=[tok.eos_token_id],
                             pad_token_id=tok.pad_token_id)[:, ids.shape[1]:]
    return torch.nn.functional.pad(out, (0, n - out.shape[1]), value=tok.pad_token_id)


@pytest.mark.parametrize("arch", sorted(GQA_SHAPES))
@pytest.mark.parametrize("compiled", [False, True])
def test_greedy_tokens_are_transformers_own(arch, compiled):
    """Left-padded rows wider than a bucket and, for gemma-3, prompts longer than its sliding window (8 here): the
    same greedy tokens as transformers' ``generate`` (dynamic cache), with the step traced whole by
    ``torch.compile`` (``fullgraph``, ``INDUCTOR``'s shapes; the eager backend, as the CPU has no CUDA graphs) or
    not compiled. 20 tokens: more steps than torch's recompile limit (8), which gemma-3's sliding-window cache hit
    with ``dynamic=False``."""
    model, tok = gqa_model(arch)
    ids, mask = left_padded(tok, prompts_for(tok, 5, seed=3), width=64)
    want = transformers_greedy(model, tok, ids, mask, 20)
    torch._dynamo.reset()
    options = {**decode.INDUCTOR, "backend": "eager", "mode": None, "fullgraph": True}
    got = decode.static_decode(model, ids, mask, 20, greedy=True, stop_ids=[tok.eos_token_id],
                               pad_id=tok.pad_token_id, compile=options if compiled else None)
    assert torch.equal(got, want)
    assert (got != tok.pad_token_id).sum(-1).max() >= 10  # not a vacuous match: rows run for many tokens


def test_the_static_cache_is_rounded_up_and_the_extra_positions_are_masked(monkeypatch):
    """The cache holds prompt + new tokens - 1 positions rounded up to ``STATIC_CACHE_MULTIPLE`` (an odd length made
    the GPU's decode 1.31x slower), and the greedy tokens are still transformers'."""
    import transformers

    sizes = []

    class Recording(transformers.StaticCache):
        def __init__(self, config, max_cache_len, **kw):
            sizes.append(max_cache_len)
            super().__init__(config=config, max_cache_len=max_cache_len, **kw)

    monkeypatch.setattr(transformers, "StaticCache", Recording)
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 3, seed=4))
    n = 20 if (ids.shape[1] + 19) % 64 else 21  # a length that needs rounding
    got = decode.static_decode(model, ids, mask, n, greedy=True, stop_ids=[tok.eos_token_id],
                               pad_id=tok.pad_token_id)
    assert decode.STATIC_CACHE_MULTIPLE == 64 and sizes == [-(-(ids.shape[1] + n - 1) // 64) * 64]
    assert sizes[0] > ids.shape[1] + n - 1
    assert torch.equal(got, transformers_greedy(model, tok, ids, mask, n))


def test_sampling_is_seeded_and_the_compiled_step_draws_as_the_uncompiled_one():
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 4, seed=5))

    def run(compile, top_p=1.0):
        torch.manual_seed(7)
        return decode.static_decode(model, ids, mask, 10, greedy=False, temperature=0.8, top_p=top_p,
                                    top_k=NUCLEUS_TOP_K, stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id,
                                    compile=compile)

    torch._dynamo.reset()
    eager = run(None)
    assert torch.equal(eager, run(None))
    assert torch.equal(eager, run({"backend": "eager", "fullgraph": True}))
    assert torch.equal(run(None, 0.9), run({"backend": "eager", "fullgraph": True}, 0.9))


def test_greedy_draw_is_the_float32_argmax():
    logits = torch.randn(6, 50).to(torch.bfloat16)
    tokens, covered = decode.draw(logits, True, 1.0, 1.0, 8)
    assert torch.equal(tokens, logits.float().argmax(-1)) and covered is None


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_sampled_draws_follow_the_tempered_softmax_and_its_nucleus(top_p):
    """Gumbel-max over the tempered logits draws each token with its softmax probability; with top-p, from the
    nucleus that ``decode.nucleus`` (transformers' rule) keeps, renormalised. 20,000 draws of a 12-token row."""
    torch.manual_seed(0)
    row = torch.randn(12) * 2
    temperature = 0.7
    expected = torch.zeros(12)
    for rows, ids, probs in nucleus(row[None] / temperature, top_p, k=12):
        expected[ids[0]] = probs[0] / probs[0].sum()
    tokens, covered = decode.draw(row.expand(20_000, 12), False, temperature, top_p, 12)
    assert covered is None if top_p == 1.0 else bool(covered.all())
    freq = torch.bincount(tokens, minlength=12).float() / 20_000
    assert (freq[expected == 0] == 0).all()  # nothing outside the nucleus
    assert torch.allclose(freq, expected, atol=0.015)


def test_rows_whose_nucleus_is_wider_than_top_k_are_drawn_again_from_the_whole_row():
    """A flat row's nucleus holds more tokens than the top ``top_k``: ``draw`` says so (``covered`` False) and
    ``redraw`` draws it from its whole nucleus; a peaked row keeps its draw."""
    torch.manual_seed(1)
    logits = torch.randn(2, 400) * 0.1  # flat
    logits[0, :3] += 10  # peaked: three tokens hold the nucleus
    tokens, covered = decode.draw(logits, False, 1.0, 0.9, 8)
    assert covered.tolist() == [True, False] and tokens[0] < 3
    seen = set()
    for _ in range(50):
        t = tokens.clone()
        decode.redraw(t, covered, logits, 1.0, 0.9)
        assert t[0] == tokens[0]
        seen.add(int(t[1]))
    assert len(seen) > 8 and max(seen) >= 8  # tokens beyond any top 8


def test_the_loop_stops_at_a_check_once_every_row_ended_and_pads_after_the_stop_token(monkeypatch):
    """Rows end by a stop token (padded after it) or by ``ended`` (a stop string: tested every ``CHECK_EVERY``
    steps); the loop stops at the first test that finds every row ended."""
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 3, seed=2))
    free = decode.static_decode(model, ids, mask, 40, greedy=True, stop_ids=[tok.eos_token_id],
                                pad_id=tok.pad_token_id)
    stop = int(free[0, 2])  # the first row's third token as the stop token
    monkeypatch.setattr(decode, "CHECK_EVERY", 4)
    calls = []
    got = decode.static_decode(model, ids, mask, 40, greedy=True, stop_ids=[stop], pad_id=tok.pad_token_id,
                               ended=lambda rows: calls.append(len(rows[0])) or [True] * len(rows))
    first = free[0].tolist().index(stop)
    assert got[0, : first + 1].tolist() == free[0, : first + 1].tolist()
    assert (got[0, first + 1:] == tok.pad_token_id).all()
    assert calls == [5] and (got[:, 5:] == tok.pad_token_id).all()  # one test, after step 4 (5 tokens), then stop
    for row in (1, 2):  # the other rows as without the stop token, up to the test (or their own stop)
        mine = got[row, :5].tolist()
        end = mine.index(stop) + 1 if stop in mine else 5
        assert mine[:end] == free[row, :end].tolist()


def test_bad_sampling_settings_are_a_clear_error():
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 2, seed=1))
    with pytest.raises(ValueError, match="temperature > 0"):
        decode.static_decode(model, ids, mask, 4, greedy=False, temperature=0.0, stop_ids=[tok.eos_token_id],
                             pad_id=tok.pad_token_id)


def test_generate_samples_through_the_loop_seeded_and_in_order():
    """``generate(compile=True)`` (the static-cache path, uncompiled on the CPU) with sampling and top-p: the same
    seed gives the same answers, which differ from another seed's."""
    model, tok = gqa_model("qwen2")
    prompts = prompts_for(tok, 6, seed=9)
    a = generate(model, tok, prompts, max_new_tokens=8, batch_size=3, do_sample=True, temperature=0.9, top_p=0.9,
                 seed=4, compile=True)
    b = generate(model, tok, prompts, max_new_tokens=8, batch_size=3, do_sample=True, temperature=0.9, top_p=0.9,
                 seed=4, compile=True)
    c = generate(model, tok, prompts, max_new_tokens=8, batch_size=3, do_sample=True, temperature=0.9, top_p=0.9,
                 seed=5, compile=True)
    assert a == b != c
    assert [x["prompt_tokens"] for x in a] == [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]


def test_a_peft_model_decodes_as_in_transformers_loop_and_its_prompt_keeps_one_position_of_logits(monkeypatch):
    """notebook 06 generates with adapters on: the prompt's pass asks for the last position's logits only
    (``logits_to_keep``, which a peft model's ``forward`` does not name but hands on), and the answers are those of
    transformers' loop on the same model."""
    from peft import LoraConfig, get_peft_model

    model, tok = gqa_model("qwen2")
    torch.manual_seed(0)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ids, mask = left_padded(tok, prompts_for(tok, 3, seed=6))
    want = transformers_greedy(peft, tok, ids, mask, 8)
    widths = []
    real = type(peft.get_base_model()).forward

    @functools.wraps(real)  # the signature the loop reads
    def spy(self, *args, **kwargs):
        widths.append(kwargs.get("logits_to_keep"))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(peft.get_base_model()), "forward", spy)
    got = decode.static_decode(peft, ids, mask, 8, greedy=True, stop_ids=[tok.eos_token_id], pad_id=tok.pad_token_id)
    assert torch.equal(got, want) and widths[0] == 1


def test_top_p_draws_from_the_top_k_follow_the_nucleus_of_a_wide_vocabulary():
    """A peaked row of 400 tokens whose nucleus the top 8 hold: ``draw`` marks it covered and draws from those 8 with
    the nucleus' renormalised probabilities (30,000 draws)."""
    torch.manual_seed(2)
    row = torch.randn(400)
    row[:5] += torch.tensor([10.0, 9.5, 9.0, 8.0, 7.0])
    expected = torch.zeros(400)
    for rows, ids, probs in nucleus(row[None], 0.9, k=400):
        expected[ids[0]] = probs[0] / probs[0].sum()
    tokens, covered = decode.draw(row.expand(30_000, 400), False, 1.0, 0.9, 8)
    assert bool(covered.all()) and 1 < int((expected > 0).sum()) <= 8
    freq = torch.bincount(tokens, minlength=400).float() / 30_000
    assert (freq[expected == 0] == 0).all() and torch.allclose(freq, expected, atol=0.015)


def test_a_generation_config_that_asks_for_more_is_left_to_transformers_loop(monkeypatch):
    """A model whose generation config adds a logits processor (here a repetition penalty, as some instruct models
    ship) is not decoded by ``static_decode``, which would ignore it: ``generate(compile=True)`` then runs
    transformers' loop with its static cache, and gives the dynamic path's answers, penalty applied."""
    from helpers import generate as g

    model, tok = gqa_model("qwen2")
    stops, pad = [tok.eos_token_id], tok.pad_token_id
    assert decode.draws_alone(model, True, 1.0, 1.0, stops, pad)
    assert decode.draws_alone(model, False, 0.7, 0.9, stops, pad)
    prompts = prompts_for(tok, 4, seed=11)
    plain = generate(model, tok, prompts, max_new_tokens=10, batch_size=2)
    model.generation_config.repetition_penalty = 1.5
    assert not decode.draws_alone(model, True, 1.0, 1.0, stops, pad)
    want = generate(model, tok, prompts, max_new_tokens=10, batch_size=2)
    assert [w["ids"] for w in want] != [p["ids"] for p in plain]  # the penalty changes the answers
    looped = []
    monkeypatch.setattr(g, "static_decode", lambda *a, **k: looped.append(1))
    got = generate(model, tok, prompts, max_new_tokens=10, batch_size=2, compile=True)
    assert not looped and [x["ids"] for x in got] == [w["ids"] for w in want]


def test_stop_strings_end_answers_on_both_loops_as_on_transformers_own(monkeypatch):
    """``generate(stop_strings=...)`` greedy through the static loop and through ``greedy_decode`` (tested every
    ``CHECK_EVERY`` steps, the text cut after) gives transformers' ``generate`` texts, ids, counts and ``finished``
    (its ``StopStringCriteria`` at every step)."""
    from helpers import generate as g

    model, tok = gqa_model("qwen2")
    prompts = prompts_for(tok, 5, seed=12)
    free = generate(model, tok, prompts, max_new_tokens=24, batch_size=5)
    stop = next(t["text"][3:6] for t in free if len(t["text"]) > 8)  # a piece of one answer's text
    with monkeypatch.context() as m:
        m.setattr(g, "draws_alone", lambda *a: False)  # neither loop: transformers' generate
        want = generate(model, tok, prompts, max_new_tokens=24, batch_size=5, stop_strings=[stop])
    assert any(w["text"] != f["text"] for w, f in zip(want, free))  # the stop string cut something
    assert generate(model, tok, prompts, max_new_tokens=24, batch_size=5, stop_strings=[stop]) == want
    assert generate(model, tok, prompts, max_new_tokens=24, batch_size=5, stop_strings=[stop], compile=True) == want


def test_the_step_is_handed_its_masks_made_outside_it(monkeypatch):
    """The compiled step gets the step's attention masks ready (4-D, or one per kind of layer for gemma-3), made
    before the call: made inside, inductor fused them into FlexAttention's kernel, which did not compile on a GPU."""
    seen = []
    real = decode._step
    monkeypatch.setattr(decode, "_step",
                        lambda model, cache, mask, *a: seen.append(mask) or real(model, cache, mask, *a))
    for arch in sorted(GQA_SHAPES):
        model, tok = gqa_model(arch)
        ids, mask = left_padded(tok, prompts_for(tok, 2, seed=1))
        seen.clear()
        decode.static_decode(model, ids, mask, 4, greedy=True, stop_ids=[-1], pad_id=tok.pad_token_id)
        assert len(seen) == 3
        masks = [m for x in seen for m in (x.values() if isinstance(x, dict) else [x])]
        assert all(m.dim() == 4 for m in masks), arch


def test_no_new_tokens_asked_gives_none():
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 2, seed=1))
    assert decode.static_decode(model, ids, mask, 0, greedy=True, stop_ids=[1], pad_id=0).shape == (2, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_the_compiled_draw_takes_fresh_noise_at_every_replay_on_a_gpu():
    check_compiled_draw("cuda")


def check_compiled_draw(device: str) -> dict:
    """``draw`` compiled as ``static_decode`` compiles its step (``INDUCTOR``: inductor, CUDA graphs), replayed 40
    times on the same logits (4,096 rows of 6 tokens): every replay draws anew (the draws differ between replays)
    and their frequencies are the softmax's. Run on the GPU machine by hand (``python3 -c``); returns the numbers."""
    fn = torch.compile(lambda x: decode.draw(x, False, 1.0, 1.0, 6)[0], **decode.INDUCTOR)
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], device=device).expand(4096, 6).contiguous()
    draws = [fn(logits).clone() for _ in range(40)]
    freq = torch.bincount(torch.cat(draws), minlength=6).float().cpu() / (40 * 4096)
    expected = logits[0].softmax(-1).cpu()
    distinct = len({tuple(d[:64].tolist()) for d in draws})
    assert distinct == 40 and torch.allclose(freq, expected, atol=0.01), (distinct, freq, expected)
    return {"distinct_replays": distinct, "freq": freq.tolist(), "expected": expected.tolist()}


def hybrid_model():
    """A tiny LFM2 (random weights): convolution layers, whose cache holds states rather than keys and values,
    between attention layers."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = standins.tokenizer("qwen2_5")
    config = AutoConfig.for_model("lfm2", vocab_size=1536, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                                  layer_types=["conv", "full_attention", "conv", "full_attention"],
                                  initializer_range=0.2, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval(), tok


@pytest.mark.parametrize("arch", sorted(GQA_SHAPES) + ["lfm2"])
def test_greedy_decode_drops_finished_rows_and_keeps_transformers_tokens(arch, monkeypatch):
    """Rows that end at different steps leave the batch (the forward passes get fewer rows), and every row's tokens
    are still transformers' (``generate`` on the dynamic cache, the same stop token), gemma-3's sliding window
    (8 here) and LFM2's convolution states included."""
    model, tok = hybrid_model() if arch == "lfm2" else gqa_model(arch)
    ids, mask = left_padded(tok, prompts_for(tok, 8, seed=4), width=80)
    free = transformers_greedy(model, tok, ids, mask, 16)
    stop = int(free[0, 3])  # the first row ends by its fourth token, others later or never
    with torch.no_grad():
        want = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False, top_k=None,
                              top_p=None, temperature=None, eos_token_id=[stop], pad_token_id=tok.pad_token_id)
    want = torch.nn.functional.pad(want[:, ids.shape[1]:], (0, 16 - (want.shape[1] - ids.shape[1])),
                                   value=tok.pad_token_id)
    widths = []
    real = type(model).forward

    @functools.wraps(real)
    def spy(self, *args, **kwargs):
        widths.append(kwargs["input_ids"].shape[0])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", spy)
    monkeypatch.setattr(decode, "SHRINK_SHARE", 8)
    got = decode.greedy_decode(model, ids, mask, 16, stop_ids=[stop], pad_id=tok.pad_token_id)
    assert torch.equal(got, want)
    assert widths[0] == 8 and min(widths) < 8, widths  # finished rows left


def test_generate_answers_greedily_through_greedy_decode_on_the_cpu(monkeypatch):
    from helpers import generate as g

    model, tok = gqa_model("qwen2")
    prompts = prompts_for(tok, 5, seed=13)
    calls = []
    real = g.greedy_decode
    monkeypatch.setattr(g, "greedy_decode", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = generate(model, tok, prompts, max_new_tokens=8, batch_size=3)
    assert len(calls) == 2  # two batches
    monkeypatch.setattr(g, "draws_alone", lambda *a: False)
    assert generate(model, tok, prompts, max_new_tokens=8, batch_size=3) == got  # transformers' own answers
    generate(model, tok, prompts, max_new_tokens=8, batch_size=3, do_sample=True)  # sampling: transformers'
    assert len(calls) == 2


@pytest.mark.parametrize("setting", [{"min_new_tokens": 5}, {"min_length": 90}, {"num_beams": 2},
                                     {"stop_strings": ["ab"]}, {"max_time": 10.0}, {"no_repeat_ngram_size": 2}])
def test_generation_configs_the_loops_do_not_follow_go_to_transformers(setting):
    """What a model's generation config may add besides a temperature and top-p (a minimum length, whose
    processors transformers builds only once it knows the eos token; beam search; its own stop strings or time
    limit; a processor) makes ``draws_alone`` say no, and ``generate`` then gives transformers' answers."""
    model, tok = gqa_model("qwen2")
    prompts = prompts_for(tok, 3, seed=14)
    for key, value in setting.items():
        setattr(model.generation_config, key, value)
    assert not decode.draws_alone(model, True, 1.0, 1.0, [tok.eos_token_id], tok.pad_token_id)
    if "min_new_tokens" in setting:  # honoured: no answer shorter than 5 tokens
        assert all(x["new_tokens"] >= 5 for x in generate(model, tok, prompts, max_new_tokens=8, batch_size=3))


def test_greedy_decode_tests_stop_strings_every_check_on_unfinished_rows(monkeypatch):
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 4, seed=15))
    monkeypatch.setattr(decode, "CHECK_EVERY", 4)
    seen = []

    def ended(rows):
        seen.append([len(r) for r in rows])
        return [True] * len(rows)  # every row ends at the first test

    got = decode.greedy_decode(model, ids, mask, 12, stop_ids=[-1], pad_id=tok.pad_token_id, ended=ended)
    assert seen == [[4, 4, 4, 4]] and (got[:, 4:] == tok.pad_token_id).all() and (got[:, :4] != -1).all()


def test_greedy_decode_of_one_token_and_of_none():
    model, tok = gqa_model("qwen2")
    ids, mask = left_padded(tok, prompts_for(tok, 3, seed=16))
    want = transformers_greedy(model, tok, ids, mask, 1)
    assert torch.equal(decode.greedy_decode(model, ids, mask, 1, stop_ids=[tok.eos_token_id],
                                            pad_id=tok.pad_token_id), want)
    assert decode.greedy_decode(model, ids, mask, 0, stop_ids=[1], pad_id=0).shape == (3, 0)
