"""Scoring by probabilities (helpers.loglik): multiple choice by log-likelihood and drift (KL) from the base, on the
lab's tiny models (offline, CPU)."""
import copy

import numpy as np
import pytest
import torch

from helpers import kl_drift, loglik
from helpers.chat import render_prompt
from helpers.committee import response_logprobs
from helpers.lab import tasks
from helpers.lab.evaluate import heldout_sets


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------
# Multiple choice
# ----------------------------------------------------------------------------------------------------------------
def test_choose_acc_and_acc_norm():
    assert loglik.choose([-4.0, -6.0], ["a", "ten chars!"]) == (0, 1)  # -4/1 < -6/10
    assert loglik.choose([-2.0, -2.0], ["x", "y"]) == (0, 0)  # ties go to the first


def test_multiple_choice_picks_what_the_model_would_say(base, lab_questions):
    """Options: the model's own greedy answer and three answers to other questions of the same family, placed at
    every position in turn: the model's answer is the most likely continuation every time."""
    model, tok = base
    examples, prompts, greedy = lab_questions
    items = []
    for k, (e, g) in enumerate(zip(examples, greedy)):
        others = list(dict.fromkeys(x.response for x in tasks.sample_examples({e.family: 1.0}, 40, seed=k)))
        wrong = [o for o in others if o != g][:3]
        choices = wrong[:]
        choices.insert(k % 4, g)
        items.append({"family": e.family, "choices": choices, "label": k % 4})
    got = loglik.multiple_choice(model, tok, prompts, items, delimiter="")
    assert got["accuracy"] == 1.0 and got["n"] == len(items)
    assert got["pred"] == [k % 4 for k in range(len(items))]
    assert set(got["per_family"]) == {e.family for e in examples}
    # the same items with the label moved off the model's answer score 0
    moved = [{**it, "label": (it["label"] + 1) % 4} for it in items]
    assert loglik.multiple_choice(model, tok, prompts, moved, delimiter="")["accuracy"] == 0.0


def test_option_logprobs_agree_with_the_filtering_stage_and_batching(base, lab_questions):
    """The summed log-probability of answer + end token equals stage 03's mean per-token log-prob x its length, and
    does not depend on the batch (padding is masked)."""
    model, tok = base
    examples, prompts, greedy = lab_questions
    rows = [{"instruction": e.instruction, "response": g} for e, g in zip(examples, greedy)]
    means = response_logprobs(model, tok, rows)
    options = [[g + tok.eos_token, "cat dog"] for g in greedy]
    together = loglik.option_logprobs(model, tok, prompts, options, delimiter="", batch_size=64)
    n = [len(tok(g + tok.eos_token, add_special_tokens=False)["input_ids"]) for g in greedy]
    assert np.allclose([t[0] for t in together], np.array(means) * np.array(n), atol=1e-4)
    alone = loglik.option_logprobs(model, tok, prompts[:6], options[:6], delimiter="", batch_size=1)
    assert np.allclose(together[:6], alone, atol=1e-4)
    assert all(v < 0 for t in together for v in t)


def test_question_answer_frame_moves_the_trailing_space(base):
    """lm-evaluation-harness style: "Answer:" + " Paris" and "Answer: " + "Paris" are scored identically."""
    model, tok = base
    assert loglik.plain_prompt("What is 2 plus 3?") == "Question: What is 2 plus 3?\nAnswer:"
    a = loglik.option_logprobs(model, tok, [loglik.plain_prompt("What is 2 plus 3?")], [["5", "6"]], delimiter=" ")
    b = loglik.option_logprobs(model, tok, ["Question: What is 2 plus 3?\nAnswer: "], [["5", "6"]], delimiter="")
    assert np.allclose(a, b)


def test_multiple_choice_with_a_bos_tokenizer():
    """A Llama-3 stand-in (its tokenizer adds BOS): every scored sequence starts with exactly one BOS, and a prompt
    whose template already wrote the BOS gets no second one."""
    from helpers.lab import standins

    tok = standins.tokenizer("llama3")
    model = standins.model("llama3", tok)
    prompt = render_prompt(tok, "Capital of France?")
    pairs = loglik._continuation_ids(tok, [prompt, "Question: Capital of France?\nAnswer:"], [["Paris", "Lyon"]] * 2, "")
    assert all(ctx.count(tok.bos_token_id) == 1 and ctx[0] == tok.bos_token_id for ctx, _ in pairs)
    assert all(cont and tok.bos_token_id not in cont for _, cont in pairs)
    got = loglik.multiple_choice(model, tok, [prompt], [{"family": "f", "choices": ["Paris", "Lyon", "Nice", "Lille"],
                                                    "label": 0}], delimiter="")
    assert got["n"] == 1 and len(got["logprobs"][0]) == 4 and all(np.isfinite(got["logprobs"][0]))


# ----------------------------------------------------------------------------------------------------------------
# Shared prefix: each prompt run once, its options scored from the KV cache (the full pass is the reference)
# ----------------------------------------------------------------------------------------------------------------
def _max_gap(a, b):
    assert [len(x) for x in a] == [len(y) for y in b]
    return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


def test_shared_prefix_scores_equal_the_full_pass_on_the_lab_model(base):
    """Items of 2-5 options (one- and several-token), prompts of different lengths (one repeated), batch sizes that
    split an item's options across batches or a batch across items: the numbers of the full pass to 1e-4."""
    model, tok = base
    questions = ["What is 2 plus 3?", "Name the colour of the sky on a clear summer day, in one word please.",
                 "Hi", "Which animal barks and is a common pet in many homes around the world?", "What is 2 plus 3?"]
    prompts = [render_prompt(tok, q) for q in questions] + [loglik.plain_prompt("Capital of France?")]
    options = [["5", "6"], ["blue", "green", "red", "a very long answer indeed"], ["hello", "bye", "x", "yy", "zzz"],
               ["dog", "cat", "cow"], ["five", "4", "six"], ["Paris", "Lyon", "Nice", "Lille"]]
    assert loglik.SHARED_PREFIX_TYPES >= {model.config.model_type}
    for delimiter in ("", " "):
        reference = loglik.option_logprobs(model, tok, prompts, options, delimiter=delimiter, shared_prefix=False)
        assert all(v < 0 for r in reference for v in r)
        for batch_size in (1, 3, 4, 64):
            shared = loglik.option_logprobs(model, tok, prompts, options, delimiter=delimiter, batch_size=batch_size,
                                            shared_prefix=True)
            assert _max_gap(shared, reference) < 1e-4, (delimiter, batch_size)
    default = loglik.option_logprobs(model, tok, prompts, options, batch_size=4)  # the default path is the shared one
    assert default == loglik.option_logprobs(model, tok, prompts, options, batch_size=4, shared_prefix=True)


def _tiny(model_type: str, **extra):
    """A random causal LM of ``model_type``'s architecture, 2 layers wide enough to differ from a pass-through."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, head_dim=8, **extra)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.mark.parametrize("model_type", sorted(loglik.HEAD_TYPES | {"mistral"}))
def test_target_logprobs_equal_the_full_logits(model_type):
    """``target_logprobs`` at scattered positions of a padded batch: for every architecture of HEAD_TYPES (the API
    drift check of its decoder-then-head contract) the head runs only there, in chunks (a budget of one position
    per chunk, and the default), with Gemma's soft cap applied; another architecture (mistral) goes through the
    full logits. The full pass's numbers to 1e-5 either way; the same for the drift's whole distributions."""
    model = _tiny(model_type, **({"final_logit_softcapping": 3.0} if model_type.startswith("gemma") else {}))
    ids = torch.randint(0, 300, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    predicts = torch.zeros_like(ids, dtype=torch.bool)
    predicts[0, 2:8] = predicts[1, 1:5] = predicts[2, 7] = True
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
    rows, cols = predicts.nonzero(as_tuple=True)
    reference = full[rows, cols].gather(-1, ids[rows, cols + 1][:, None])[:, 0]
    assert (model_type in loglik.HEAD_TYPES) == (model_type != "mistral")
    for budget in (300, None):
        got = loglik.target_logprobs(model, ids, mask, predicts, budget=budget)
        assert got.shape == reference.shape and torch.allclose(got, reference, atol=1e-5)
    # the KL drift's full distributions at the same positions, the head run there only (HEAD_TYPES) or not
    assert torch.allclose(loglik._logprobs_at(model, ids, mask, predicts), full[predicts], atol=1e-5)
    assert loglik.batch_width(model) == (48 if model_type != "mistral" else 300)


def test_target_logprobs_of_a_lora_model_equal_its_full_logits():
    """Through peft (notebook 06 scores adapters): the decoder and head reached through the PeftModel carry the
    adapter, and switching it off gives the base's numbers."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny("llama"), LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    ids, mask = torch.randint(0, 300, (2, 7)), torch.ones(2, 7, dtype=torch.long)
    predicts = torch.zeros(2, 7, dtype=torch.bool)
    predicts[:, 2:6] = True
    rows, cols = predicts.nonzero(as_tuple=True)

    def reference():
        with torch.no_grad():
            logp = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        return logp[rows, cols].gather(-1, ids[rows, cols + 1][:, None])[:, 0]

    tuned = loglik.target_logprobs(model, ids, mask, predicts)
    assert torch.allclose(tuned, reference(), atol=1e-5)
    with model.disable_adapter():
        base = loglik.target_logprobs(model, ids, mask, predicts)
        assert torch.allclose(base, reference(), atol=1e-5) and not torch.allclose(base, tuned, atol=1e-3)


def test_shared_prefix_batches_bound_rows_and_keep_contexts_whole():
    contexts = [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)]
    n_options = dict(zip(contexts, [2, 5, 3, 1]))
    width = dict.fromkeys(contexts, 1)
    got = list(loglik._context_batches(contexts, n_options, width, 4, 10, 1 << 20))
    assert got == [[(1,)], [(1, 2)], [(1, 2, 3), (1, 2, 3, 4)]]  # 5 options go alone; never a context split
    assert list(loglik._context_batches(contexts, n_options, width, 100, 10, 1 << 20)) == [contexts]
    assert len(list(loglik._context_batches(contexts, n_options, width, 100, 10, 100))) == 4  # the logits budget


@pytest.mark.parametrize("family", ["llama3", "qwen2_5"])
def test_shared_prefix_on_stand_ins_with_real_chat_templates(family):
    """A stand-in with a real chat template (Llama 3 adds a BOS, Qwen 2.5 writes a system turn): the same scores
    and the same multiple-choice predictions both ways."""
    from helpers.lab import standins

    tok = standins.tokenizer(family)
    model = standins.model(family, tok)
    assert model.config.model_type in loglik.SHARED_PREFIX_TYPES
    questions = ["Capital of France?", "What is the largest planet of the solar system? One word.", "2+2?"]
    items = [{"family": "f", "choices": ["Paris", "Lyon", "Nice", "Lille"], "label": 0},
             {"family": "g", "choices": ["Jupiter", "Saturn", "the Earth"], "label": 0},
             {"family": "g", "choices": ["4", "five", "22", "four", "3"], "label": 0}]
    prompts = [render_prompt(tok, q) for q in questions]
    reference = loglik.multiple_choice(model, tok, prompts, items, delimiter="", shared_prefix=False)
    for batch_size in (2, 32):
        shared = loglik.multiple_choice(model, tok, prompts, items, delimiter="", batch_size=batch_size)
        assert _max_gap(shared["logprobs"], reference["logprobs"]) < 1e-4
        assert (shared["pred"], shared["pred_norm"]) == (reference["pred"], reference["pred_norm"])


@pytest.mark.slow
def test_shared_prefix_on_smollm2_and_the_general_set():
    """Real SmolLM2 on 10 general items rendered with its chat template, ``delimiter=""`` (as
    ``scoring.score_sets``): the same scores to 1e-4 and identical accuracies both ways."""
    import json
    from pathlib import Path

    from helpers import models

    model, tok = models.load("real", "smollm2-135m-instruct", device="cpu")
    path = Path(__file__).resolve().parents[1] / "data" / "general_eval.jsonl"
    items = [json.loads(line) for line in path.read_text().splitlines()[:10]]
    prompts = [render_prompt(tok, it["instruction"]) for it in items]
    reference = loglik.multiple_choice(model, tok, prompts, items, delimiter="", shared_prefix=False)
    shared = loglik.multiple_choice(model, tok, prompts, items, delimiter="", batch_size=4)
    assert _max_gap(shared["logprobs"], reference["logprobs"]) < 1e-4
    for key in ("accuracy", "accuracy_norm", "pred", "pred_norm", "per_family", "per_family_norm"):
        assert shared[key] == reference[key], key


# ----------------------------------------------------------------------------------------------------------------
# Drift from the base: KL(base || tuned) on the base's own answers
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def drift_prompts(base):
    _, tok = base
    examples = heldout_sets(2, seed=21)["general"]
    return [render_prompt(tok, e.instruction) for e in examples]


def _finetune(model, tok, steps: int, lr: float = 1e-3):
    """A few Adam steps of language modelling on text the model never saw (off-topic for it)."""
    texts = ["The quick brown fox jumps over the lazy dog near the river bank.",
             "Stock markets rallied on Tuesday as investors cheered the earnings reports.",
             "Preheat the oven and whisk the eggs with sugar until fluffy."]
    batch = tok(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    torch.manual_seed(0)
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    return model


def test_kl_of_a_model_against_itself_is_zero(base, drift_prompts):
    model, tok = base
    got = kl_drift.drift_kl(model, tok, drift_prompts, reference=model, max_new_tokens=16)
    assert got["kl"] == pytest.approx(0.0, abs=1e-6) and all(abs(v) < 1e-6 for v in got["per_prompt"])
    # answer tokens only: the count is the answers' length, not the prompts' or the padding's
    assert got["n_tokens"] == sum(len(a) for a in got["answers"]) > len(drift_prompts)
    assert all(a[-1] == tok.eos_token_id for a in got["answers"])  # the base's answers end their turn


def test_kl_grows_with_off_topic_fine_tuning(base, drift_prompts):
    model, tok = base
    answers = kl_drift.base_answer_ids(model, tok, drift_prompts, max_new_tokens=16, reference=model)
    tuned = copy.deepcopy(model)
    kl5 = kl_drift.drift_kl(_finetune(tuned, tok, 5), tok, drift_prompts, reference=model, answers=answers)["kl"]
    kl20 = kl_drift.drift_kl(_finetune(tuned, tok, 15), tok, drift_prompts, reference=model, answers=answers)["kl"]
    assert 0 < kl5 < kl20, (kl5, kl20)
    # padding and batching do not change it
    one = kl_drift.drift_kl(tuned, tok, drift_prompts[:5], reference=model, answers=answers[:5], batch_size=1)
    many = kl_drift.drift_kl(tuned, tok, drift_prompts[:5], reference=model, answers=answers[:5], batch_size=5)
    assert np.allclose(one["per_prompt"], many["per_prompt"], atol=1e-5)


def test_kl_of_a_lora_model_uses_its_own_base(base, drift_prompts):
    """A peft model against its adapter switched off: 0 while LoRA B is zero, > 0 once it is not, and the same
    number as against a separate copy of the base."""
    from peft import LoraConfig, get_peft_model

    model, tok = base
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                                 lora_dropout=0.0, task_type="CAUSAL_LM"))
    answers = kl_drift.base_answer_ids(peft_model, tok, drift_prompts, max_new_tokens=16)
    assert answers == kl_drift.base_answer_ids(model, tok, drift_prompts, max_new_tokens=16, reference=model)
    assert kl_drift.drift_kl(peft_model, tok, drift_prompts, answers=answers)["kl"] == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    own = kl_drift.drift_kl(peft_model, tok, drift_prompts, answers=answers)
    separate = kl_drift.drift_kl(peft_model, tok, drift_prompts, answers=answers, reference=model)
    assert own["kl"] > 1e-4 and own["kl"] == pytest.approx(separate["kl"], rel=1e-4)
    with pytest.raises(TypeError, match="pass the base model as reference="):
        kl_drift.drift_kl(model, tok, drift_prompts[:1])


def test_the_base_pass_run_once_gives_every_arm_the_drift_it_gets_with_its_own(base, drift_prompts):
    """Notebook 06 on a CPU runs the drift's base pass once (``base_logprobs``) for all the adapters it scores: each
    adapter's KL is then exactly the one it gets running the base itself; a reference of other batches is refused."""
    from peft import LoraConfig, get_peft_model

    model, tok = base
    answers = kl_drift.base_answer_ids(model, tok, drift_prompts, max_new_tokens=16, reference=model)
    reference = kl_drift.base_logprobs(model, tok, drift_prompts, answers)
    assert kl_drift.base_logprobs_bytes(model, answers) == sum(r.numel() for r in reference) * 4
    for seed in (0, 1):
        torch.manual_seed(seed)
        arm = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                              init_lora_weights=False))
        own = kl_drift.drift_kl(arm, tok, drift_prompts, answers=answers)
        shared = kl_drift.drift_kl(arm, tok, drift_prompts, answers=answers, reference_logprobs=reference)
        assert own["kl"] > 1e-4 and (own["kl"], own["per_prompt"]) == (shared["kl"], shared["per_prompt"])
    with pytest.raises(ValueError, match="compute it with base_logprobs"):
        kl_drift.drift_kl(arm, tok, drift_prompts, answers=answers, reference_logprobs=reference[:-1])
