"""One pass over each prompt for every measure that reads it: a model's KV cache of a prompt, kept for its other
measures (a service of notebook 06's scoring).

Notebook 06 reads each general question's prompt three times per model (its greedy answer, its multiple-choice
options, the KL drift on the base's answer) and each domain question's twice. After SmolLM2's chat template (with
its default system turn) a prompt is about 46 tokens, against 2-3 tokens of an option and 14 of the base's answer
on average, so most of those passes re-read the prompt. A ``PromptCache`` keeps, per prompt (its token ids), the
KV cache of its tokens and the logits at its last position, from whichever measure ran it first; multiple choice
and the drift (``loglik``) then run only their continuation on it. One cache belongs to one model in one state: a
merged model, or the model with its adapter switched off, is another model and needs another cache.

What a measure reads back is the same function of the prompt as a fresh pass: positions count from each row's
first token and the padding is masked, so the batch a prompt ran in changes its values by float rounding only
(tests/test_prompt_cache.py compares the scores to the fresh passes' within 1e-4, issue 24's tolerance).
Greedy answers fill the cache but never read it back, so answers stay exactly what they were.
"""

from __future__ import annotations

import torch

# architectures whose KV cache can be cut per row and put together again (full attention in every layer; tested
# against the full pass, tests/test_loglik.py and tests/test_prompt_cache.py)
SHARED_PREFIX_TYPES = frozenset({"llama", "qwen2"})
PROMPT_CACHE_BYTES = 2 * 1024**3  # what one PromptCache keeps at most; prompts past it are run again when read


def reusable(model) -> bool:
    """Whether ``model``'s prompts can be kept and put together again: an architecture of ``SHARED_PREFIX_TYPES``
    whose layers all attend to every earlier token (a sliding window keeps a cache that is not cut per row)."""
    config = model.config
    types = getattr(config, "layer_types", None) or ["full_attention"]
    return getattr(config, "model_type", None) in SHARED_PREFIX_TYPES and set(types) == {"full_attention"}


def _prompts(ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]] | None:
    """Each row's prompt tokens of a left-padded batch (``mask`` 0 then 1), or None for a batch that is not."""
    prompts = []
    for row, m in zip(ids.tolist(), mask.tolist()):
        n = sum(m)
        if n == 0 or m[len(m) - n :] != [1] * n or any(m[: len(m) - n]):
            return None
        prompts.append(tuple(row[len(m) - n :]))
    return prompts


class PromptCache:
    """Prompts' KV caches and last-position logits of one model, keyed by the prompt's token ids."""

    def __init__(self, model, budget: int = PROMPT_CACHE_BYTES):
        if not reusable(model):
            raise ValueError(f"{type(model).__name__} ({getattr(model.config, 'model_type', None)}) keeps caches that "
                             "are not cut per row (a sliding window, or an architecture not tested): use "
                             "PromptCache.of(model), which gives None for it")
        self.config, self.budget = model.config, budget
        self.rows: dict[tuple[int, ...], tuple[list, torch.Tensor]] = {}
        self.bytes = self.reads = self.misses = 0

    @classmethod
    def of(cls, model) -> "PromptCache | None":
        """A cache for ``model``, or None where its prompts cannot be put together again (``reusable``) or where
        nothing would fill it: a model off the CPU, whose greedy answers go through transformers' ``generate`` (on a
        GPU multiple choice alone would fill it and nothing read it back, in up to ``PROMPT_CACHE_BYTES`` of its
        memory)."""
        on_cpu = next(model.parameters()).device.type == "cpu"
        return cls(model) if on_cpu and reusable(model) else None

    def put(self, ids: torch.Tensor, mask: torch.Tensor, cache, logits: torch.Tensor) -> None:
        """Keep each row of a prompt pass: ``ids`` and ``mask`` left-padded (rows x width), ``cache`` the
        transformers cache that pass filled (positions ``0..width-1``), ``logits`` its last position's (rows x
        vocabulary). Copies, so the caller may go on changing ``cache``. A prompt already kept stays as it was."""
        prompts = _prompts(ids, mask)
        if prompts is None:
            return
        width = ids.shape[1]
        for r, prompt in enumerate(prompts):
            if prompt in self.rows:
                continue
            n = len(prompt)
            kv = [(layer.keys[r, :, width - n : width].clone(), layer.values[r, :, width - n : width].clone())
                  for layer in cache.layers]
            last = logits[r].detach().clone()
            size = sum(k.nbytes + v.nbytes for k, v in kv) + last.nbytes
            if self.bytes + size > self.budget:
                return
            self.rows[prompt] = (kv, last)
            self.bytes += size

    def get(self, ids: torch.Tensor, mask: torch.Tensor):
        """``(cache, logits)`` for the left-padded batch ``ids``/``mask`` put together from kept prompts: a
        transformers ``DynamicCache`` of ``width`` positions (the padding's keys and values zero, masked) and the
        last position's logits; None unless every row's prompt is kept."""
        from transformers import DynamicCache

        self.reads += 1
        prompts = _prompts(ids, mask)
        if prompts is None or any(p not in self.rows for p in prompts):
            self.misses += 1
            return None
        width = ids.shape[1]
        layers = []
        for layer, (k0, _) in enumerate(self.rows[prompts[0]][0]):
            keys = k0.new_zeros((len(prompts), k0.shape[0], width, k0.shape[2]))
            values = torch.zeros_like(keys)
            for r, p in enumerate(prompts):
                k, v = self.rows[p][0][layer]
                keys[r, :, width - k.shape[1] :] = k
                values[r, :, width - v.shape[1] :] = v
            layers.append((keys, values))
        logits = torch.stack([self.rows[p][1] for p in prompts])
        return DynamicCache(ddp_cache_data=layers, config=self.config), logits
