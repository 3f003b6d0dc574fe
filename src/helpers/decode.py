"""The decode loop of ``generate``'s static-cache path: the model's one-token step and the draw of the next token
run as one compiled function, and the loop asks whether every row has ended only every ``CHECK_EVERY`` steps.

transformers' ``generate`` compiles the model's step alone: the draw (a float32 copy of the logits, softmax,
``multinomial``) runs uncompiled after it, and its loop synchronises with the GPU at every step to test whether all rows
ended, so the GPU waits while Python prepares the next step. On one H200 (Qwen2.5-0.5B's shape, 1,024 rows, 256 sampled
tokens, random weights) that loop made 60,235 new tok/s where this one made 89,316, in the same process
(bench/generation.py, docs/performance.md). The draw is exact: greedy is the argmax of the float32 logits, as
transformers'; sampling adds Gumbel noise to the tempered logits and takes the argmax (the Gumbel-max trick: the softmax
distribution, without a softmax or a sort); top-p keeps the nucleus that ``generate.nucleus`` keeps, read from the top
``top_k`` tokens when they hold it; a row whose nucleus is wider (a flat distribution) is drawn again after the step
from its whole sorted row (``nucleus``), which costs one synchronisation a step when top-p is on.
"""

from __future__ import annotations

import inspect

import torch

CHECK_EVERY = 16  # decode steps between two tests of whether every row has ended (each test waits for the GPU)
# how the step is compiled on CUDA: transformers' ``CompileConfig`` defaults for a static-cache decode. With
# ``dynamic=False`` gemma-3's sliding-window cache layers, which count their tokens in a Python int, recompiled at
# every step until torch's recompile limit stopped the call (H200, torch 2.11); ``dynamic=None`` recompiles once
INDUCTOR = {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": None}


def draw(logits: torch.Tensor, greedy: bool, temperature: float, top_p: float, top_k: int):
    """The next token of each row of ``logits`` (rows x vocabulary) and whether each row's draw is final:
    ``(tokens, covered)``. ``covered`` is False only for a top-p row whose nucleus the top ``top_k`` tokens do not
    hold; ``redraw`` draws those again. Greedy: the argmax of the logits in float32. Sampling: Gumbel-max over the
    tempered logits, restricted to the nucleus when ``top_p`` < 1 (the tokens whose more likely tokens hold less
    than ``top_p`` of the mass, with the probabilities they have in the whole row)."""
    scores = logits.float()
    if greedy:
        return scores.argmax(-1), None
    scores = scores / temperature
    noise = -torch.log(-torch.log(torch.rand_like(scores).clamp_(min=torch.finfo(torch.float32).tiny)))
    if top_p >= 1.0:
        return (scores + noise).argmax(-1), None
    log_z = scores.logsumexp(-1, keepdim=True)
    values, ids = scores.topk(min(top_k, scores.shape[-1]), dim=-1)
    probs = (values - log_z).exp()
    keep = (probs.cumsum(-1) - probs) < top_p
    pick = torch.where(keep, values + noise.gather(-1, ids), float("-inf")).argmax(-1, keepdim=True)
    return ids.gather(-1, pick).squeeze(-1), probs.sum(-1) >= top_p


def redraw(tokens: torch.Tensor, covered: torch.Tensor, logits: torch.Tensor, temperature: float, top_p: float,
           nucleus) -> None:
    """Draw the rows that ``draw`` could not (``covered`` False) from their whole nucleus (``nucleus``: the function
    ``generate.nucleus``, which sorts such rows in full), in place."""
    rows = (~covered).nonzero().squeeze(-1)
    if rows.numel():
        for sub, ids, probs in nucleus(logits[rows].float() / temperature, top_p):
            tokens[rows[sub]] = ids.gather(-1, torch.multinomial(probs, 1)).squeeze(-1)


def _step(model, cache, mask, tokens, positions, cache_position, greedy, temperature, top_p, top_k):
    """One decode step: the model's logits for ``tokens`` at ``positions`` (rows x 1) and the next token drawn from
    them. ``mask``: the step's attention mask(s), made before the call (``_step_mask``)."""
    logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                   cache_position=cache_position, past_key_values=cache, use_cache=True).logits[:, -1]
    token, covered = draw(logits, greedy, temperature, top_p, top_k)
    return token, covered, (logits if covered is not None else None)


def _step_mask(model, cache, mask, positions):
    """The attention mask(s) of a one-token step (a 4-D mask, or one per kind of layer, such as gemma-3's sliding
    ones) from the 2-D ``mask`` of the tokens so far, made outside the compiled step as transformers' ``generate``
    makes them for a static cache. Made inside, inductor fused the mask's arithmetic into FlexAttention's kernel
    template and the kernel did not compile (the 8B shape on an H200, torch 2.11: "NameError('XBLOCK is not
    defined')")."""
    from transformers.masking_utils import create_masks_for_generate

    make = getattr(model, "create_masks_for_generate", create_masks_for_generate)
    shape = torch.empty((mask.shape[0], 1, 0), dtype=model.dtype, device=mask.device)  # rows, one query, dtype
    made = make(config=model.config, inputs_embeds=shape, attention_mask=mask, past_key_values=cache,
                position_ids=positions)
    if isinstance(made, dict):
        return {k: v.contiguous() if v is not None else None for k, v in made.items()}
    return made.contiguous() if made is not None else None


_COMPILED: dict = {}


def _compiled_step(options: dict | None):
    """``_step`` compiled with ``options`` (``torch.compile``'s arguments; None: not compiled), once per process."""
    if options is None:
        return _step
    key = tuple(sorted(options.items()))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(_step, **options)
    return _COMPILED[key]


def static_decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, *, greedy: bool,
                  temperature: float = 1.0, top_p: float = 1.0, top_k: int = 1024, stop_ids: list[int],
                  pad_id: int, ended=None, nucleus=None, compile: dict | None = None) -> torch.Tensor:
    """``max_new_tokens`` new tokens for each row of the left-padded batch ``ids`` (``mask``: 1 at its tokens), as
    a (rows x ``max_new_tokens``) tensor on the CPU. The prompt runs uncompiled into a static KV cache; each later
    token is one call of ``_step``, compiled with ``compile`` (``torch.compile``'s arguments, e.g. ``INDUCTOR``).
    Every ``CHECK_EVERY`` steps the loop stops if each row has produced a token of ``stop_ids`` or, for
    ``ended(rows' new token ids so far)`` (a list of booleans), ended otherwise (a stop string). A row's tokens after
    its first stop token are ``pad_id``. ``top_p`` < 1 needs ``nucleus`` (``generate.nucleus``)."""
    from transformers import StaticCache

    if not greedy and not (temperature > 0 and 0 < top_p <= 1):  # transformers' checks, which this loop replaces
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, "
                         f"top_p={top_p}")
    device = ids.device
    rows, width = ids.shape
    cache = StaticCache(config=model.config, max_cache_len=width + max_new_tokens)
    full = torch.cat([mask, torch.ones((rows, max_new_tokens), dtype=mask.dtype, device=device)], 1)
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(inner.forward).parameters else {}
    step = _compiled_step(compile)
    out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    stops = torch.tensor(stop_ids, device=device)
    with torch.no_grad():
        prefill = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                        cache_position=torch.arange(width, device=device), past_key_values=cache, use_cache=True,
                        **extra).logits[:, -1]
        token, covered = draw(prefill, greedy, temperature, top_p, top_k)
        if covered is not None:
            redraw(token, covered, prefill, temperature, top_p, nucleus)
        out[:, 0] = token
        done = torch.isin(token, stops)
        lengths = mask.sum(-1)
        for s in range(1, max_new_tokens):
            positions = (lengths + (s - 1))[:, None]
            token, covered, logits = step(model, cache, _step_mask(model, cache, full[:, : width + s], positions),
                                          out[:, s - 1].clone(), positions,
                                          torch.tensor([width + s - 1], device=device), greedy, temperature, top_p,
                                          top_k)
            token = token.clone()
            if covered is not None:
                redraw(token, covered, logits, temperature, top_p, nucleus)
            out[:, s] = torch.where(done, pad_id, token)
            done |= torch.isin(token, stops)
            if s % CHECK_EVERY == 0:
                if ended is not None and not bool(done.all()):
                    done |= torch.tensor(ended(out[:, : s + 1].tolist()), device=device)
                if bool(done.all()):
                    break
    return out.cpu()
