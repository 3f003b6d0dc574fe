"""The drift from the base: KL(base || tuned) on the base's own greedy answers (real models; notebook 06's
``kl_drift``). A service beside ``loglik``, whose passes it runs.

Where the model keeps its prompts' passes (a ``prompt_cache.PromptCache``, ``states``), each answer is read as a
continuation of its prompt's kept KV cache (``_answer_logprobs``): the prompt, most of what the drift reads, is
not run again. Otherwise prompt and answer run as one pass (``loglik._logprobs_at``). Both give the same
distributions to float rounding (tests/test_prompt_cache.py).
"""

from __future__ import annotations

from contextlib import contextmanager

from .chat import encode_prompts
from .generate import scoring_batches
from . import loglik
from .loglik import _continuations, _head, _logprobs_at, _prompt_pass, _prompts_padded, padded
from .prompt_cache import PromptCache
from .writers import HFWriter


@contextmanager
def _base_of(model, reference=None):
    """The base distribution: ``reference`` if given, else ``model`` with its peft adapter switched off (one model
    in memory; ``disable_adapter`` also switches off ``modules_to_save`` copies such as a trained embedding)."""
    if reference is not None:
        yield reference
        return
    if not hasattr(model, "disable_adapter"):
        raise TypeError(f"{type(model).__name__} has no adapter to switch off: pass the base model as reference=")
    with model.disable_adapter():
        yield model


def base_answer_ids(model, tokenizer, prompts: list[str], *, reference=None, max_new_tokens: int = 32,
                    batch_size: int = 64, progress: bool | str = False) -> list[list[int]]:
    """The base model's own greedy answers to ``prompts``, as token ids (stop token included when produced): the
    text ``drift_kl`` measures on. Compute them once and pass them to ``drift_kl`` for every arm."""
    with _base_of(model, reference) as base:
        was_training = base.training
        base.eval()
        try:
            outs = HFWriter(base, tokenizer).write(list(prompts), max_new_tokens=max_new_tokens, batch_size=batch_size,
                            progress=progress and (progress if isinstance(progress, str) else "base answers"))
            return [o["ids"] for o in outs]
        finally:
            base.train(was_training)


def _drift_batches(model, tokenizer, prompts: list[str], answers: list[list[int]], batch_size: int):
    """``drift_kl``'s batches, ``(prompt indices, their (prompt ids, answer ids), ids, mask, answer-token
    positions)`` of the prompts that have an answer, by total length (``scoring_batches``); and how many prompts
    have one."""
    pairs = list(zip(encode_prompts(tokenizer, prompts), [list(a) for a in answers]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = [i for i in sorted(range(len(pairs)), key=lambda i: sum(map(len, pairs[i]))) if pairs[i][1]]
    lengths = [sum(map(len, p)) for p in pairs]
    batches = [(idx, [pairs[i] for i in idx], *padded([pairs[i] for i in idx], pad))
               for idx in scoring_batches(lengths, order, batch_size, model.config.vocab_size)]
    return batches, len(order)


DRIFT_BATCH = 16  # rows per batch of drift_kl (fewer when the logits would pass scoring_batches' budget)


def _answer_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad: int, states: PromptCache):
    """``_logprobs_at``'s distributions for ``(prompt ids, answer ids)`` pairs (at each answer token, the model's
    log-distribution over it, flattened row by row), from the prompts' pass (``loglik._prompt_pass``: read from
    ``states``, or run and kept there) and one pass of the answers on its cache: the prompt's last logits give the
    first answer token's distribution, the answer's tokens but the last give the others. The head runs at the
    answers' tokens only (``HEAD_TYPES``: every architecture a ``PromptCache`` keeps)."""
    import torch

    device = next(model.parameters()).device
    ids, mask = _prompts_padded([p for p, _ in pairs], pad)
    cache, last = _prompt_pass(model, ids, mask, states)
    parts = [[last[r : r + 1].float()] for r in range(len(pairs))]
    rest = [a[:-1] for _, a in pairs]
    width = max(map(len, rest))
    if width:
        assert getattr(model.config, "model_type", None) in loglik.HEAD_TYPES  # read now: benches patch it
        cids, both, positions, cmask = _continuations(rest, mask, pad)
        with torch.no_grad():
            hidden = model.get_decoder()(input_ids=cids.to(device), attention_mask=both.to(device),
                                         position_ids=positions.to(device), past_key_values=cache,
                                         use_cache=True).last_hidden_state
            later = _head(model, hidden[cmask.to(device).bool()])
        k = 0
        for r, a in enumerate(rest):
            parts[r].append(later[k : k + len(a)])
            k += len(a)
    return torch.cat([t for row in parts for t in row]).log_softmax(-1)


def _distributions(model, batch: tuple, pad: int, states: PromptCache | None):
    """One ``_drift_batches`` batch's log-distributions at the answer tokens: on the kept prompts' caches
    (``_answer_logprobs``) where ``states`` is given, else one pass of prompt and answer (``_logprobs_at``)."""
    _, pairs, ids, mask, predicts = batch
    return _logprobs_at(model, ids, mask, predicts) if states is None else _answer_logprobs(model, pairs, pad, states)


def _pad(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def base_logprobs(base, tokenizer, prompts: list[str], answers: list[list[int]],
                  batch_size: int = DRIFT_BATCH, states: PromptCache | None = None) -> list:
    """``drift_kl``'s base pass on its own, for ``reference_logprobs``: per batch of ``drift_kl``'s batching, the
    base model's log-distributions at its answers' tokens. The same for every arm, so an evaluation that scores
    several arms in one process can run it once; it holds answer tokens x vocabulary float32 values
    (``base_logprobs_bytes``). ``states``: the base's ``PromptCache`` (``drift_kl``'s)."""
    was_training = base.training
    base.eval()
    try:
        batches, _ = _drift_batches(base, tokenizer, list(prompts), answers, batch_size)
        return [_distributions(base, batch, _pad(tokenizer), states) for batch in batches]
    finally:
        base.train(was_training)


def base_logprobs_bytes(model, answers: list[list[int]]) -> int:
    """What ``base_logprobs`` holds for ``answers``: one float32 distribution over the vocabulary per answer token."""
    return sum(map(len, answers)) * model.config.vocab_size * 4


def drift_kl(model, tokenizer, prompts: list[str], *, reference=None, answers: list[list[int]] | None = None,
             max_new_tokens: int = 32, batch_size: int = DRIFT_BATCH, progress: bool | str = False,
             reference_logprobs: list | None = None, states: PromptCache | None = None) -> dict:
    """How far a fine-tuned model's next-token distribution moved from the base's, where the base is at home: the
    mean per-token KL(base || tuned) over the base's own greedy answers to ``prompts``.

    For each prompt, the base answers greedily (``base_answer_ids``, or ``answers`` computed before); both models then
    read prompt + answer, and at each answer token (the prompt and the padding are masked out) the KL between their
    full next-token distributions is taken. The base is ``reference`` if given (a separate model), else ``model``
    with its peft adapter switched off (``with model.disable_adapter():``, one model in memory). A model against
    itself gives 0 (up to float error); the number grows as training moves the model on the base's own text, which
    general-skill accuracy only sees when a greedy answer flips. ``reference_logprobs``: the base's pass computed
    before for these prompts and answers (``base_logprobs``), used instead of running the base again. ``states``:
    ``model``'s ``PromptCache``: its kept prompts are not run again (the base's side, run here, gets a cache of its
    own, so both sides are read the same way).

    Returns ``{"kl": mean over all answer tokens, "per_prompt": mean KL per prompt, "n_tokens", "answers"}``.
    """
    from tqdm.auto import tqdm

    prompts = list(prompts)
    if answers is None:
        answers = base_answer_ids(model, tokenizer, prompts, reference=reference, max_new_tokens=max_new_tokens,
                                  batch_size=batch_size, progress=progress and "base answers")
    if len(answers) != len(prompts):
        raise ValueError(f"{len(answers)} answers for {len(prompts)} prompts")
    batches, n_answered = _drift_batches(model, tokenizer, prompts, answers, batch_size)
    if reference_logprobs is not None and len(reference_logprobs) != len(batches):
        raise ValueError(f"reference_logprobs has {len(reference_logprobs)} batches, drift_kl makes {len(batches)}: "
                         "compute it with base_logprobs for the same prompts, answers and batch_size")
    sums, counts = [0.0] * len(prompts), [0] * len(prompts)
    models = [model] + ([reference] if reference is not None else [])
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    base_states = None if states is None else PromptCache.of(reference if reference is not None else model)
    try:
        bar = tqdm(total=n_answered, disable=not progress, desc=progress if isinstance(progress, str) else "drift KL")
        for k_batch, batch in enumerate(batches):
            idx, predicts = batch[0], batch[-1]
            bar.update(len(idx))
            if reference_logprobs is not None:
                lb = reference_logprobs[k_batch]
            else:
                with _base_of(model, reference) as base:  # the base pass inside the context, the tuned pass outside
                    lb = _distributions(base, batch, _pad(tokenizer), base_states)
            lt = _distributions(model, batch, _pad(tokenizer), states)
            kl = (lb.exp() * (lb - lt.to(lb.device))).sum(-1).cpu()
            counts_here = predicts.sum(1).tolist()
            k = 0
            for i, c in zip(idx, counts_here):
                sums[i], counts[i] = float(kl[k : k + c].sum()), c
                k += c
        bar.close()
    finally:
        for m, t in zip(models, was_training):
            m.train(t)
    total = sum(counts)
    return {"kl": sum(sums) / total if total else 0.0,
            "per_prompt": [s / c if c else 0.0 for s, c in zip(sums, counts)],
            "n_tokens": total, "answers": answers}
