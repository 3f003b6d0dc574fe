"""Scorers that read a model's probabilities instead of its text (real models): multiple choice by log-likelihood,
as lm-evaluation-harness scores ARC, and the passes the KL drift from the base (``kl_drift``) is built on.

Pure functions over already-rendered prompt strings: the caller decides the frame (the model's chat template via
``chat.render_prompt``, or ``plain_prompt``'s "Question: ...\nAnswer:" for a base model). Prompts are tokenised with
``chat.encode_prompts`` (one BOS where the model expects one), as everywhere else in the package. Items are dicts
(rows of the shipped data files) or objects with the same attributes (notebook 06's held-out items: ``response`` is
read as the answer). Accuracies are means over families, as for the generated answers (``scoring``).
"""

from __future__ import annotations

import statistics
from collections import defaultdict

import numpy as np

from .chat import encode_prompts
from .generate import left_padded, scoring_batches
from .prompt_cache import SHARED_PREFIX_TYPES, PromptCache


def _get(item, key: str, default=None):
    """A field of a dict row or an attribute of an item; ``answer`` falls back to ``response`` (``EvalItem``)."""
    keys = (key, "response") if key == "answer" else (key,)
    for k in keys:
        value = item.get(k) if isinstance(item, dict) else getattr(item, k, None)
        if value is not None:
            return value
    return default


def _family_means(items: list, correct: list[bool]) -> tuple[float, dict[str, float]]:
    hits: dict[str, list[bool]] = defaultdict(list)
    for item, ok in zip(items, correct):
        hits[str(_get(item, "family", "all"))].append(bool(ok))
    per_family = {f: sum(v) / len(v) for f, v in sorted(hits.items())}
    return (statistics.fmean(per_family.values()) if per_family else 0.0), per_family


def _check_lengths(prompts: list, items: list) -> None:
    if len(prompts) != len(items):
        raise ValueError(f"{len(prompts)} prompts for {len(items)} items: give one rendered prompt per item")


# --- multiple choice by log-likelihood (lm-evaluation-harness, as it scores ARC) ---------------------------------
def plain_prompt(instruction: str) -> str:
    """The frame lm-evaluation-harness gives a base (non-chat) model: "Question: ...\nAnswer:" (score options with
    ``delimiter=" "``). For an instruct model, render with its chat template instead (``chat.render_prompt``,
    ``delimiter=""``)."""
    return f"Question: {instruction}\nAnswer:"


def _continuation_ids(tokenizer, prompts: list[str], options: list[list[str]],
                      delimiter: str) -> list[tuple[list[int], list[int]]]:
    """``(context ids, continuation ids)`` for every (prompt, option) pair, in order.

    As lm-evaluation-harness: trailing spaces of the prompt move to the continuation ("Answer: " + "Paris" is
    scored as "Answer:" + " Paris", the way a tokenizer that glues spaces to words would write it); the continuation
    is the tail of the joint encoding after the context's tokens, or the option encoded alone if the joint encoding
    does not start with them (a merge across the boundary). Newlines are not moved: a chat template's generation
    prompt ("...assistant\\n") stays what generation sees.
    """
    contexts, joints = [], []
    for prompt, opts in zip(prompts, options):
        n = len(prompt) - len(prompt.rstrip(" "))
        context, lead = (prompt[:-n], prompt[-n:]) if n else (prompt, "")
        for option in opts:
            contexts.append(context)
            joints.append((context, lead + delimiter + option))
    context_ids = dict(zip(dict.fromkeys(contexts), encode_prompts(tokenizer, list(dict.fromkeys(contexts)))))
    whole = encode_prompts(tokenizer, [c + cont for c, cont in joints])
    alone = tokenizer([cont for _, cont in joints], add_special_tokens=False)["input_ids"]
    pairs = []
    for (context, cont_text), w, a in zip(joints, whole, alone):
        ctx = context_ids[context]
        cont = w[len(ctx):] if w[: len(ctx)] == ctx and len(w) > len(ctx) else a
        if not cont or not ctx:
            raise ValueError(f"cannot score {cont_text!r} after {context[-40:]!r}: an empty prompt or option")
        pairs.append((ctx, cont))
    return pairs


def padded(pairs: list[tuple[list[int], list[int]]], pad: int):
    """Right-padded ids, attention mask and a mask of the positions whose next token is a continuation token (the
    ``predicts`` of ``target_logprobs``), for ``(prompt ids, continuation ids)`` pairs."""
    import torch

    width = max(len(p) + len(a) for p, a in pairs)
    ids = torch.full((len(pairs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    predicts = torch.zeros((len(pairs), width), dtype=torch.bool)
    for row, (p, a) in enumerate(pairs):
        ids[row, : len(p) + len(a)] = torch.tensor(p + a)
        mask[row, : len(p) + len(a)] = 1
        predicts[row, len(p) - 1 : len(p) + len(a) - 1] = True
    return ids, mask, predicts


def _token_logprobs(model, ids, mask, predicts) -> list[float]:
    """Per row: the summed log-probability of the tokens that follow the ``predicts`` positions."""
    return [float(v.sum()) for v in target_logprobs(model, ids, mask, predicts).split(predicts.sum(1).tolist())]


# Architectures whose output head ``target_logprobs`` and the KL drift's ``_logprobs_at`` run only at the positions
# they score (their causal-LM forward is the decoder's last hidden state through the output head, with Gemma's
# optional soft cap; tested against the full pass, tests/test_loglik.py); any other model goes through its full
# logits.
HEAD_TYPES = frozenset({"llama", "qwen2", "gemma3_text"})


def batch_width(model) -> int:
    """Elements per token that bound a scoring batch's memory (``scoring_batches``' ``vocab_size``): the vocabulary
    where the full logits are made; for ``HEAD_TYPES``, whose head runs on a few positions at a time, the widest
    activation of a layer."""
    config = model.config
    if getattr(config, "model_type", None) in HEAD_TYPES:
        return max(config.hidden_size, getattr(config, "intermediate_size", 0) or 0)
    return config.vocab_size


def target_logprobs(model, ids, mask, predicts, budget: int | None = None):
    """``log p(ids[r, t + 1] | ids[r, : t + 1])`` at every position ``(r, t)`` where ``predicts`` is True, in row
    order, as a float32 tensor on the CPU.

    For ``HEAD_TYPES`` the output head runs only at those positions, ``budget`` logits at a time (default
    ``generate.LOGITS_BUDGET``), so a large vocabulary (gemma-3's 262k) no longer bounds how many rows a batch
    holds; otherwise the model's full logits are taken."""
    import torch

    from .generate import LOGITS_BUDGET

    device = next(model.parameters()).device
    rows, cols = predicts.nonzero(as_tuple=True)
    targets = ids[rows, cols + 1].to(device)[:, None]
    step = max(1, (budget or LOGITS_BUDGET) // model.config.vocab_size)
    out = _at_positions(model, ids, mask, predicts, step,
                        lambda logits, s: logits.log_softmax(-1).gather(-1, targets[s : s + len(logits)])[:, 0])
    return torch.cat(out).cpu() if out else torch.zeros(0)


def _at_positions(model, ids, mask, predicts, step, reduce) -> list:
    """``reduce(logits, first)`` of ``model``'s float32 logits at the ``predicts`` positions (flattened row by row),
    a chunk of at most ``step`` positions at a time (None: one chunk), ``first`` the chunk's first position; under
    ``no_grad``. For ``HEAD_TYPES`` the decoder runs once and the output head only at those positions, chunk by
    chunk; any other model gives its full logits, in one chunk."""
    import torch

    device = next(model.parameters()).device
    ids, mask, predicts = ids.to(device), mask.to(device), predicts.to(device)
    with torch.no_grad():
        if getattr(model.config, "model_type", None) not in HEAD_TYPES:
            return [reduce(model(input_ids=ids, attention_mask=mask).logits[predicts].float(), 0)]
        picked = model.get_decoder()(input_ids=ids, attention_mask=mask).last_hidden_state[predicts]
        if not step:
            return [reduce(_head(model, picked), 0)]
        return [reduce(_head(model, picked[s : s + step]), s) for s in range(0, len(picked), step)]


def _head(model, hidden):
    """A ``HEAD_TYPES`` model's logits for the decoder's last hidden states ``hidden``, as float32: its output head,
    then Gemma's soft cap where the config sets one, in the model's dtype (what its own forward does after the
    decoder)."""
    import torch

    logits = model.get_output_embeddings()(hidden)
    cap = getattr(model.config, "final_logit_softcapping", None)
    return (torch.tanh(logits / cap) * cap if cap else logits).float()


# SHARED_PREFIX_TYPES (prompt_cache): architectures whose KV cache the shared-prefix scorer reuses (tested against
# the full pass, tests/test_loglik.py); any other model is scored the reference way, each (prompt, option) pair run
# whole.


def _context_batches(contexts: list[tuple], n_options: dict, width: dict, batch_size: int, vocab_size: int,
                     budget: int):
    """Runs of ``contexts`` (sorted by length) whose options together make at most ``batch_size`` rows (a context
    with more options goes alone) and whose second-pass logits (rows x longest continuation x vocabulary) and
    repeated cache stay in ``budget``, as ``scoring_batches`` bounds the full pass."""
    batch, rows = [], 0
    for c in contexts:
        k = n_options[c]
        longest = max([width[b] for b in batch] + [width[c]])
        if batch and (rows + k > batch_size or (rows + k) * (longest + len(c)) * vocab_size > budget):
            yield batch
            batch, rows = [], 0
        batch.append(c)
        rows += k
    if batch:
        yield batch


def _prompts_padded(prompts: list[list[int]], pad: int):
    """``(ids, mask)`` of token lists left-padded to the longest (``generate.left_padded``), on the CPU."""
    return left_padded(prompts, max(map(len, prompts)), pad)


def _continuations(continuations: list[list[int]], mask, pad: int):
    """The inputs of a pass of ``continuations`` on the KV cache of left-padded prompts whose mask ``mask`` has one
    row per continuation: ``(ids, attention mask, position ids, the continuations' own mask)``, the continuations
    right-padded to the longest, the attention mask the prompt's then the continuation's, positions going on from
    each prompt's length. On the CPU."""
    import torch

    width = max(map(len, continuations))
    ids = torch.full((len(continuations), width), pad, dtype=torch.long)
    own = torch.zeros((len(continuations), width), dtype=torch.long)
    for r, c in enumerate(continuations):
        ids[r, : len(c)] = torch.tensor(c, dtype=torch.long)
        own[r, : len(c)] = 1
    positions = mask.sum(1)[:, None] + torch.arange(width)[None, :]
    return ids, torch.cat([mask, own], 1), positions, own


def _prompt_pass(model, ids, mask, states: PromptCache | None = None):
    """``(KV cache, last position's logits)`` of the left-padded prompts ``ids``/``mask``: from ``states`` when it
    keeps every row, else one pass (positions counted from each row's first token, so the padding does not shift
    them), then kept in ``states``."""
    import torch

    got = states.get(ids, mask) if states is not None else None
    if got is not None:
        return got
    device = next(model.parameters()).device
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                    use_cache=True, logits_to_keep=1)
    if states is not None:
        states.put(ids, mask, out.past_key_values, out.logits[:, -1])
    return out.past_key_values, out.logits[:, -1]


def _shared_batch(model, contexts: list[list[int]], continuations: list[list[list[int]]], pad: int,
                  states: PromptCache | None = None) -> list[float]:
    """Summed log-probabilities of every continuation of every context, each context run once.

    Pass 1 (``_prompt_pass``, or read from ``states``): the contexts, left-padded, the KV cache kept; the last
    position's logits predict each continuation's first token.
    The cache is then repeated per continuation (``Cache.batch_select_indices`` with each context's index once per
    option). Pass 2 (skipped when every continuation is one token): the continuations, right-padded, on that cache,
    attention mask = the context's mask + the continuation's, positions going on from the context's length."""
    import torch

    device = next(model.parameters()).device
    ids, mask = _prompts_padded(contexts, pad)
    cache, last = _prompt_pass(model, ids, mask, states)
    first = last.float().log_softmax(-1)
    owner = [r for r, conts in enumerate(continuations) for _ in conts]
    flat = [a for conts in continuations for a in conts]
    scores = [float(first[r, a[0]]) for r, a in zip(owner, flat)]
    cw = max(len(a) for a in flat)
    if cw == 1:
        return scores
    cache.batch_select_indices(torch.tensor(owner, device=device))
    cids, both, cpos, _ = _continuations(flat, mask[torch.tensor(owner)], pad)
    with torch.no_grad():
        logits = model(input_ids=cids.to(device), attention_mask=both.to(device), position_ids=cpos.to(device),
                       past_key_values=cache, use_cache=True).logits
    for j, a in enumerate(flat):
        if len(a) > 1:
            logp = logits[j, : len(a) - 1].float().log_softmax(-1)
            scores[j] += float(logp.gather(-1, torch.tensor(a[1:], device=device)[:, None]).sum())
    return scores


def _shared_logprobs(model, pairs: list[tuple[list[int], list[int]]], pad: int, batch_size: int, bar,
                     states: PromptCache | None = None) -> list[float]:
    """``option_logprobs``' shared-prefix path: the pairs grouped by context (the same prompt twice is run once)."""
    from .generate import LOGITS_BUDGET

    groups: dict[tuple, list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(tuple(ctx), []).append(i)
    contexts = sorted(groups, key=len)
    n_options = {c: len(groups[c]) for c in contexts}
    width = {c: max(len(pairs[i][1]) for i in groups[c]) for c in contexts}
    flat = [0.0] * len(pairs)
    for batch in _context_batches(contexts, n_options, width, batch_size, model.config.vocab_size, LOGITS_BUDGET):
        rows = [i for c in batch for i in groups[c]]
        scores = _shared_batch(model, [list(c) for c in batch], [[pairs[i][1] for i in groups[c]] for c in batch], pad,
                               states)
        for i, v in zip(rows, scores):
            flat[i] = v
        bar.update(len(rows))
    return flat


def option_logprobs(model, tokenizer, prompts: list[str], options: list[list[str]], *, delimiter: str = " ",
                    batch_size: int = 32, progress: bool | str = False,
                    shared_prefix: bool | None = None, states: PromptCache | None = None) -> list[list[float]]:
    """The summed log-probability of each option as a continuation of its prompt (``prompt + delimiter + option``),
    one list per prompt, on the model's device; the log-softmax is taken only at the continuation's positions (a
    real vocabulary makes full logits large).

    ``shared_prefix`` (default: on for the architectures in ``SHARED_PREFIX_TYPES``): each distinct prompt is run
    once and all its options are scored from its KV cache (``_shared_batch``); ``batch_size`` then bounds the
    options (rows) per batch. Off: lm-evaluation-harness's way, every (prompt, option) pair run whole (sorted by
    length, right-padded, attention-masked), the reference the shared path matches to float error. ``states``: the
    model's ``PromptCache``, whose kept prompts the shared path reads instead of running them again (and adds to).

    ``delimiter``: " " for a "Question: ...\\nAnswer:" frame (lm-evaluation-harness's ``target_delimiter``),
    "" after a chat template's generation prompt.
    """
    from tqdm.auto import tqdm

    if len(prompts) != len(options):
        raise ValueError(f"{len(prompts)} prompts for {len(options)} option lists")
    if shared_prefix is None:
        shared_prefix = getattr(model.config, "model_type", None) in SHARED_PREFIX_TYPES
    pairs = _continuation_ids(tokenizer, list(prompts), [list(o) for o in options], delimiter)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    flat = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    try:
        bar = tqdm(total=len(pairs), disable=not progress,
                   desc=progress if isinstance(progress, str) else "option log-probs")
        if shared_prefix:
            flat = _shared_logprobs(model, pairs, pad, batch_size, bar, states)
        else:
            order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
            lengths = [len(p) + len(a) for p, a in pairs]
            for idx in scoring_batches(lengths, order, batch_size, model.config.vocab_size):
                bar.update(len(idx))
                for i, v in zip(idx, _token_logprobs(model, *padded([pairs[i] for i in idx], pad))):
                    flat[i] = v
        bar.close()
    finally:
        model.train(was_training)
    out, k = [], 0
    for opts in options:
        out.append(flat[k : k + len(opts)])
        k += len(opts)
    return out


def choose(logprobs: list[float], options: list[str]) -> tuple[int, int]:
    """``(pred, pred_norm)``: the option with the highest summed log-probability (``acc``) and the one with the
    highest log-probability per character of the option (``acc_norm``, lm-evaluation-harness's length
    normalisation); ties go to the first."""
    norm = [lp / max(len(o), 1) for lp, o in zip(logprobs, options)]
    return int(np.argmax(logprobs)), int(np.argmax(norm))


def multiple_choice(model, tokenizer, prompts: list[str], items: list, *, delimiter: str = " ",
                    batch_size: int = 32, progress: bool | str = False, shared_prefix: bool | None = None,
                    states: PromptCache | None = None) -> dict:
    """Score 4-option (or any-option) questions the way lm-evaluation-harness scores ARC: the model's prediction is
    the option it finds most likely as a continuation of the prompt; no generation, so no format to follow.

    ``prompts[i]`` is the rendered question of ``items[i]`` (which has ``choices``, ``label`` and ``family``; the
    prompt may list the options or not, as the caller's frame decides). Returns ``{"accuracy", "accuracy_norm"}``
    (means over families), ``per_family`` / ``per_family_norm``, ``n``, per item ``pred`` / ``pred_norm`` (indices),
    ``correct`` / ``correct_norm`` and the options' ``logprobs``. ``states``: ``option_logprobs``'.
    """
    _check_lengths(prompts, items)
    options = [[str(c) for c in _get(item, "choices", [])] for item in items]
    if any(len(o) < 2 for o in options):
        raise ValueError("every item needs 'choices' (two or more options) and 'label'")
    logprobs = option_logprobs(model, tokenizer, prompts, options, delimiter=delimiter, batch_size=batch_size,
                               progress=progress, shared_prefix=shared_prefix, states=states)
    preds = [choose(lp, o) for lp, o in zip(logprobs, options)]
    labels = [int(_get(item, "label")) for item in items]
    correct = [p == y for (p, _), y in zip(preds, labels)]
    correct_norm = [q == y for (_, q), y in zip(preds, labels)]
    acc, per_family = _family_means(items, correct)
    acc_norm, per_family_norm = _family_means(items, correct_norm)
    return {"accuracy": acc, "accuracy_norm": acc_norm, "per_family": per_family, "per_family_norm": per_family_norm,
            "n": len(items), "pred": [p for p, _ in preds], "pred_norm": [q for _, q in preds],
            "correct": correct, "correct_norm": correct_norm, "logprobs": logprobs}


def _logprobs_at(model, ids, mask, predicts):
    """Full next-token log-distributions (float32) of ``model`` at the ``predicts`` positions, flattened row by row.
    For ``HEAD_TYPES`` the output head runs at those positions only, not at every prompt token as well: the head is
    21% of SmolLM2's weights and 63% of gemma-3-270m's (its 262k vocabulary), so the KL drift's passes skip most of
    that arithmetic (the same KL; docs/performance.md)."""
    return _at_positions(model, ids, mask, predicts, None, lambda logits, first: logits.log_softmax(-1))[0]
