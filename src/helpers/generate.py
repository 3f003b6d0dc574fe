"""Batched text generation shared by every stage that samples from a model (00, 01, 02, 06).

Prompts are already-rendered strings (chat template applied, generation prompt included), tokenised by
``chat.encode_prompts`` so that they carry exactly one BOS where the model expects one.
Batches are sorted by length (less padding) and left-padded (decoder-only models continue from the right edge).
"""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from .chat import encode_prompts


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_token: str | None = None,
    stop_strings: Sequence[str] | None = None,
    progress: bool | str = False,
) -> list[dict]:
    """Generate one continuation per prompt, in the input order.

    Generation stops at ``stop_token`` if given, else at the tokenizer's eos token or any end token of the model's
    generation config (e.g. Gemma ends a turn with ``<end_of_turn>``, not its eos ``<eos>``).
    Returns dicts with ``text`` (decoded without special tokens, stripped), ``prompt_tokens``, ``new_tokens``,
    ``finished`` (a stop token was produced before ``max_new_tokens``) and ``ids`` (the answer's token ids, with the
    stop token when one was produced).
    ``stop_strings`` (e.g. a few-shot frame's next question) also end an answer: the text is cut where the first one
    starts, and the answer counts as finished.
    """
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token) first")
    if stop_token:
        stop_ids = [tokenizer.convert_tokens_to_ids(stop_token)]
    else:
        configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        configured = list(configured) if isinstance(configured, (list, tuple, set)) else [configured]
        stop_ids = list(dict.fromkeys(i for i in [tokenizer.eos_token_id, *configured] if i is not None))
    if not stop_ids or None in stop_ids:
        raise ValueError(f"no stop token: stop_token={stop_token!r}, the tokenizer has no eos token and the model's "
                         "generation config names none; pass stop_token (the token that ends an answer)")
    device = next(model.parameters()).device
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[dict | None] = [None] * len(prompts)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generate", disable=not progress)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = encoded[i]
                ids[row, width - len(seq) :] = torch.tensor(seq)
                mask[row, width - len(seq) :] = 1
            if do_sample:  # one seed per batch keeps results independent of what ran before in the process
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            with torch.no_grad():
                out = model.generate(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    temperature=temperature if do_sample else None,
                    top_p=top_p if do_sample else None,
                    top_k=None,
                    eos_token_id=stop_ids,
                    pad_token_id=tokenizer.pad_token_id,
                    **({"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}),
                )
            for row, i in enumerate(idx):
                new = out[row, width:].tolist()
                end = next((k for k, t in enumerate(new) if t in stop_ids), None)
                finished = end is not None
                ids_out = new[: end + 1] if finished else list(new)
                if finished:
                    new = new[:end]
                while new and new[-1] == tokenizer.pad_token_id:
                    new.pop()
                text = tokenizer.decode(new, skip_special_tokens=True)
                cut = min((text.find(s) for s in stop_strings or () if s in text), default=-1)
                if cut >= 0:
                    text, finished = text[:cut], True
                    new = tokenizer(text, add_special_tokens=False)["input_ids"]
                    ids_out = new
                results[i] = {
                    "text": text.strip(),
                    "prompt_tokens": len(encoded[i]),
                    "new_tokens": len(new) + int(finished),
                    "finished": finished,
                    "ids": ids_out,
                }
            bar.update(len(idx))
    finally:
        bar.close()
        model.train(was_training)
    return results  # type: ignore[return-value]


LOGITS_BUDGET = 1 << 27  # elements of one scoring batch's logits: 512 MiB in fp32


def scoring_batches(lengths: Sequence[int], order: Sequence[int], batch_size: int, vocab_size: int,
                    budget: int = LOGITS_BUDGET):
    """Batches of ``order`` (indices sorted by ascending ``lengths``) for a forward pass that returns full logits.

    A batch holds at most ``batch_size`` rows, and fewer when its logits (rows x longest row x vocabulary) would pass
    ``budget`` elements: a 262k vocabulary (Gemma 3) at 150 tokens gets batches of 2 where the lab's 1.3k vocabulary
    takes hundreds; without the cap a batch of 32 would take 5 GB for the logits alone."""
    start = 0
    while start < len(order):
        n = min(batch_size, len(order) - start)
        while n > 1 and n * lengths[order[start + n - 1]] * vocab_size > budget:
            n = max(1, n // 2)
        yield order[start : start + n]
        start += n

