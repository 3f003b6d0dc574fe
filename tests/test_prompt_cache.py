"""helpers.prompt_cache: a prompt's pass kept and read back by the model's other measures gives their numbers to
1e-4 (issue 24's tolerance) and leaves greedy answers exactly as they were."""

import copy

import pytest
import torch

from helpers import kl_drift, loglik, scoring
from helpers.chat import render_prompt
from helpers.generate import generate
from helpers.lab.evaluate import heldout_sets
from helpers.prompt_cache import PromptCache, reusable

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(model_type: str, **extra):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, **extra)
    return AutoModelForCausalLM.from_config(config).eval()


def _padded(prompts, pad=0):
    return loglik._prompts_padded(prompts, pad)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_a_kept_prompt_read_in_another_batch_gives_the_fresh_pass(model_type):
    """Prompts run in one batch, kept, then read back in batches of other rows and widths: the last position's logits
    and a continuation on the put-together cache equal a fresh pass of the same batch (1e-5); a row not kept, or a
    batch that is not left-padded, is not read."""
    model = _tiny(model_type)
    assert reusable(model)
    prompts = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18, 19, 20, 21, 22, 23]]
    states = PromptCache(model)
    ids, mask = _padded(prompts)
    loglik._prompt_pass(model, ids, mask, states)
    assert len(states.rows) == 4 and states.bytes > 0
    for chosen in ([1, 3], [2], [3, 0, 1, 2], [1, 1]):
        ids, mask = _padded([prompts[i] for i in chosen])
        kept_cache, kept_last = states.get(ids, mask)
        fresh_cache, fresh_last = loglik._prompt_pass(model, ids, mask)
        assert torch.allclose(kept_last, fresh_last, atol=1e-5)
        nxt = torch.tensor([[40, 41]] * len(chosen))
        full = torch.cat([mask, torch.ones_like(nxt)], 1)
        positions = mask.sum(1)[:, None] + torch.arange(2)[None, :]
        with torch.no_grad():
            a = model(input_ids=nxt, attention_mask=full, position_ids=positions, past_key_values=kept_cache).logits
            b = model(input_ids=nxt, attention_mask=full, position_ids=positions, past_key_values=fresh_cache).logits
        assert torch.allclose(a, b, atol=1e-5)
    ids, mask = _padded([prompts[0], [30, 31]])
    assert states.get(ids, mask) is None  # one row not kept
    right = torch.tensor([[12, 13, 0]]), torch.tensor([[1, 1, 0]])
    other = PromptCache(model)
    assert states.get(*right) is None and loglik._prompt_pass(model, *right, other) is not None and not other.rows
    assert states.misses == 3  # the first pass (nothing kept yet), the row not kept, the right-padded batch


def test_which_models_keep_their_prompts():
    assert reusable(_tiny("llama")) and reusable(_tiny("qwen2"))
    assert not reusable(_tiny("mistral"))  # not among the tested architectures
    assert not reusable(_tiny("gemma3_text"))  # sliding-window layers
    assert not reusable(_tiny("qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=0))
    assert PromptCache.of(_tiny("mistral")) is None and PromptCache.of(_tiny("llama")) is not None
    with pytest.raises(ValueError, match="PromptCache.of"):
        PromptCache(_tiny("gemma3_text"))


def test_the_budget_bounds_what_is_kept():
    model = _tiny("llama")
    states = PromptCache(model)
    ids, mask = _padded([[5, 6, 7]])
    loglik._prompt_pass(model, ids, mask, states)
    one = states.bytes
    small = PromptCache(model, budget=one * 2)
    ids, mask = _padded([[5, 6, 7], [8, 9, 10], [11, 12, 13]])
    loglik._prompt_pass(model, ids, mask, small)
    assert len(small.rows) == 2 and small.bytes == 2 * one
    assert small.get(ids, mask) is None  # the third was not kept: the batch runs again


@pytest.fixture(scope="module")
def arm(base):
    """The lab's base with a random LoRA adapter, merged as notebook 06 scores an adapter on a CPU."""
    from peft import LoraConfig, get_peft_model

    model, tok = base
    torch.manual_seed(3)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                                 init_lora_weights=False))
    return peft_model, tok


def test_answers_fill_the_cache_and_are_unchanged(base):
    """Greedy answers on the CPU leave their prompts' pass in the cache and are token for token the answers without
    it (they never read it back)."""
    model, tok = base
    prompts = [render_prompt(tok, e.instruction) for e in heldout_sets(2, seed=5)["general"]]
    states = PromptCache(model)
    with_states = generate(model, tok, prompts, max_new_tokens=12, states=states)
    assert [o["ids"] for o in with_states] == [o["ids"] for o in generate(model, tok, prompts, max_new_tokens=12)]
    assert len(states.rows) == len(set(prompts)) and states.reads == 0


def test_choices_and_drift_read_the_answers_prompts(base, arm):
    """Multiple choice and the KL drift after the answers: every prompt is read from the cache (no prompt pass
    runs again), and the option log-probabilities, the KL and its per-prompt means equal the passes without the
    cache within 1e-4 (the base's side from its own cache, as notebook 06 runs it)."""
    model, tok = base
    peft_model, _ = arm
    examples = heldout_sets(2, seed=9)["general"]
    prompts = [render_prompt(tok, e.instruction) for e in examples]
    answers = kl_drift.base_answer_ids(model, tok, prompts, max_new_tokens=16, reference=model)
    options = [[a, "cat dog", "x"] for a in [o["text"] for o in generate(model, tok, prompts, max_new_tokens=16)]]

    base_states = PromptCache(model)
    generate(model, tok, prompts, max_new_tokens=16, states=base_states)
    reference = kl_drift.base_logprobs(model, tok, prompts, answers)
    kept_reference = kl_drift.base_logprobs(model, tok, prompts, answers, states=base_states)
    assert base_states.misses == 0 and base_states.reads == len(kept_reference)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(reference, kept_reference))

    states = PromptCache(peft_model)
    generate(peft_model, tok, prompts, max_new_tokens=16, states=states)
    fresh = loglik.option_logprobs(peft_model, tok, prompts, options, delimiter="")
    kept = loglik.option_logprobs(peft_model, tok, prompts, options, delimiter="", states=states)
    assert max(abs(x - y) for u, v in zip(fresh, kept) for x, y in zip(u, v)) < 1e-4
    own = kl_drift.drift_kl(peft_model, tok, prompts, answers=answers)
    shared = kl_drift.drift_kl(peft_model, tok, prompts, answers=answers, reference_logprobs=kept_reference,
                               states=states)
    assert states.misses == 0 and own["kl"] > 1e-3
    assert shared["kl"] == pytest.approx(own["kl"], abs=1e-4) and shared["n_tokens"] == own["n_tokens"]
    assert max(abs(x - y) for x, y in zip(own["per_prompt"], shared["per_prompt"])) < 1e-4
    # the base's side run inside drift_kl (the adapter switched off) gets a cache of its own: read from the adapter's
    # cache, it would be the adapter against itself
    inside = kl_drift.drift_kl(peft_model, tok, prompts, answers=answers, states=states)
    assert inside["kl"] == pytest.approx(own["kl"], abs=1e-4) and inside["kl"] > 1e-3
    assert max(abs(x - y) for x, y in zip(own["per_prompt"], inside["per_prompt"])) < 1e-4


def test_answers_of_one_token_and_of_none(base, arm):
    """The drift on answers of one token (only the prompt's last logits), mixed with longer ones, and an empty answer
    (left out): the same per-prompt KL with the cache as without."""
    model, tok = base
    peft_model, _ = arm
    prompts = [render_prompt(tok, e.instruction) for e in heldout_sets(1, seed=4)["general"]][:6]
    answers = kl_drift.base_answer_ids(model, tok, prompts, max_new_tokens=16, reference=model)
    answers = [a[:1] for a in answers[:3]] + [[]] + answers[4:]
    own = kl_drift.drift_kl(peft_model, tok, prompts, answers=answers)
    states = PromptCache(peft_model)
    shared = kl_drift.drift_kl(peft_model, tok, prompts, answers=answers, states=states)
    assert len(states.rows) == 5 and shared["n_tokens"] == own["n_tokens"] == sum(map(len, answers))
    assert max(abs(x - y) for x, y in zip(own["per_prompt"], shared["per_prompt"])) < 1e-5
    assert own["per_prompt"][3] == shared["per_prompt"][3] == 0.0
    only_first = kl_drift.drift_kl(peft_model, tok, prompts[:3], answers=answers[:3], states=PromptCache(peft_model))
    assert only_first["per_prompt"] == pytest.approx(own["per_prompt"][:3], abs=1e-5)


def test_score_sets_with_the_cache_scores_as_without(base):
    """The lab's held-out sets: the same accuracies, per-family scores and answers with the cache as without."""
    model, tok = base
    sets = heldout_sets(2, seed=13)
    without = scoring.score_sets(model, tok, sets, max_new_tokens=16)
    states = PromptCache(model)
    with_states = scoring.score_sets(model, tok, sets, max_new_tokens=16, states=states)
    assert with_states == without and len(states.rows) > 0
    # the lab's items have no choices, so nothing read the cache here; multiple choice on the same prompts reads it
    prompts = [render_prompt(tok, e.instruction) for e in sets["general"]]
    items = [{"family": e.family, "choices": [e.response, "x"], "label": 0} for e in sets["general"]]
    reads = states.reads
    kept = loglik.multiple_choice(model, tok, prompts, items, delimiter="", states=states)
    assert states.reads > reads and states.misses == 0
    fresh = loglik.multiple_choice(model, tok, prompts, items, delimiter="")
    assert kept["pred"] == fresh["pred"] and kept["accuracy"] == fresh["accuracy"]
