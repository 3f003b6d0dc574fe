"""``generate``'s own decode loops. ``static_decode``, the static-cache path: the model's one-token step and the draw of
the next token run as one compiled function, and the loop asks whether every row has ended only every ``CHECK_EVERY``
steps. ``greedy_decode``, greedy answers on the CPU's dynamic cache: finished rows leave the batch. Both decode only
what ``draws_alone`` says transformers' ``generate`` would do the same way.

transformers' ``generate`` compiles the model's step alone: the draw (a float32 copy of the logits, softmax,
``multinomial``) runs uncompiled after it, and its loop synchronises with the GPU at every step to test whether all rows
ended, so the GPU waits while Python prepares the next step. On one H200 (Qwen2.5-0.5B's shape, 1,024 rows, 256 sampled
tokens, random weights) that loop made 59,201 new tok/s where this one made 86,317, in the same process
(bench/generation.py, docs/performance.md; 1.31x of it is this loop's cache length, ``STATIC_CACHE_MULTIPLE``). The draw
is exact: greedy is the argmax of the float32 logits, as transformers'; sampling adds Gumbel noise to the tempered
logits and takes the argmax (the Gumbel-max trick: the softmax distribution, without a softmax or a sort); top-p keeps
the nucleus that ``nucleus`` keeps, read from the top ``top_k`` tokens when they hold it; a row whose nucleus is wider
(a flat distribution) is drawn again after the step from its whole sorted row (``nucleus``), which costs one
synchronisation a step when top-p is on. A model whose generation config asks for more (a repetition penalty, say) is
left to transformers' loop (``draws_alone``).
"""

from __future__ import annotations

import inspect

import torch

NUCLEUS_TOP_K = 1024  # top-p's nucleus is read from this many most likely tokens first (``nucleus``, ``draw``)
RECOMPILE_LIMIT = 64  # graphs of _step a process may compile (models x settings x shapes) before torch gives up
CHECK_EVERY = 16  # decode steps between two tests of whether every row has ended (each test waits for the GPU)
# the static cache's length is rounded up to a multiple of this: transformers' own size (prompt + new tokens - 1, 383
# for 128 + 256) made the 0.5B shape's decode 1.31x slower than 384 (one H200, 1,024 rows, random weights: 65,965
# against 86,602 and 86,975 new tok/s in one call, alternating; docs/performance.md). The extra positions are masked
STATIC_CACHE_MULTIPLE = 64
# how the step is compiled on CUDA: transformers' ``CompileConfig`` defaults for a static-cache decode. With
# ``dynamic=False`` gemma-3's sliding-window cache layers, which count their tokens in a Python int, recompiled at
# every step until torch's recompile limit stopped the call (H200, torch 2.11); ``dynamic=None`` recompiles once
INDUCTOR = {"backend": "inductor", "mode": "reduce-overhead", "fullgraph": False, "dynamic": None}


def draws_alone(model, greedy: bool, temperature: float, top_p: float, stop_ids: list[int], pad_id: int) -> bool:
    """Whether this module's loops decode as transformers' ``generate`` would for these settings and the model's
    generation config: greedy or sampled (not beam search), with no logits processor but a temperature and top-p
    (``draw`` applies those), and no stop strings or time limit of the config's own. Anything else (a repetition
    penalty, a minimum length, suppressed tokens, beams...) is left to transformers' loop, and so is a model whose
    ``generate`` this cannot ask: it asks transformers' own helpers, which ``generate`` calls in this order
    (``_prepare_generation_config``, ``_prepare_special_tokens``, ``_get_logits_processor``; tests/test_api_drift.py
    checks them)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper
    from transformers.generation.configuration_utils import GenerationMode

    settings = {"do_sample": not greedy, "temperature": None if greedy else temperature,
                "top_p": None if greedy else top_p, "top_k": None, "eos_token_id": stop_ids, "pad_token_id": pad_id,
                "max_new_tokens": 1}
    try:
        config, _ = model._prepare_generation_config(None, **settings)
        model._prepare_special_tokens(config, True, device="cpu")  # a minimum length's processors need its eos
        mode = config.get_generation_mode()
        processors = model._get_logits_processor(
            generation_config=config, input_ids_seq_length=1, encoder_input_ids=torch.zeros((1, 1), dtype=torch.long),
            prefix_allowed_tokens_fn=None, logits_processor=LogitsProcessorList(), device="cpu", model_kwargs={})
    except (AttributeError, TypeError, ValueError):
        return False
    return (mode in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE) and config.stop_strings is None
            and config.max_time is None
            and all(isinstance(p, (TemperatureLogitsWarper, TopPLogitsWarper)) for p in processors))


def nucleus(scores: torch.Tensor, top_p: float, k: int = NUCLEUS_TOP_K) -> list[tuple]:
    """Top-p's nucleus of each row of ``scores`` (logits after temperature), as groups ``(rows, token ids,
    probabilities)``, ids and probabilities in descending order and those of tokens outside the nucleus set to 0
    (not renormalised). A token is kept when the probability mass of the tokens above it is below ``top_p``: the
    rule of transformers' ``TopPLogitsWarper``, which sorts the whole vocabulary of every row to apply it. Here a
    row is read from its ``k`` most likely tokens (``topk``) when their mass reaches ``top_p``, so that they hold its
    whole nucleus; only the other rows (flat distributions, such as a finished row's) are sorted in full."""
    scores = scores.float()
    log_z = scores.logsumexp(-1, keepdim=True)
    values, ids = scores.topk(min(k, scores.shape[-1]), dim=-1)
    covered = (values - log_z).exp().sum(-1) >= top_p
    groups = []
    for rows, whole in ((covered.nonzero().squeeze(-1), False), ((~covered).nonzero().squeeze(-1), True)):
        if rows.numel() == 0:
            continue
        v, i = scores[rows].sort(dim=-1, descending=True) if whole else (values[rows], ids[rows])
        probs = (v - log_z[rows]).exp()
        keep = (probs.cumsum(-1) - probs) < top_p
        groups.append((rows, i, torch.where(keep, probs, torch.zeros_like(probs))))
    return groups


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


def redraw(tokens: torch.Tensor, covered: torch.Tensor, logits: torch.Tensor, temperature: float,
           top_p: float) -> None:
    """Draw the rows that ``draw`` could not (``covered`` False) from their whole nucleus (``nucleus``, which sorts
    such rows in full), in place."""
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


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor, cache, **more) -> torch.Tensor:
    """The prompt's pass into ``cache``: the last position's logits only (``logits_to_keep``, where the model's
    ``forward`` takes it; a peft model hands it on to its base), positions counted from each row's first token."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "logits_to_keep" in inspect.signature(inner.forward).parameters:
        more["logits_to_keep"] = 1
    return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                 past_key_values=cache, use_cache=True, **more).logits[:, -1]


def _mark_ended(done: torch.Tensor, ended, tokens: torch.Tensor) -> None:
    """Both loops' test of ``ended`` (stop strings): the rows of ``tokens`` (each row's new tokens so far, aligned
    with ``done``) not yet done that ``ended`` says have ended are marked done, in place."""
    rest = (~done).nonzero().squeeze(-1)
    done[rest] |= torch.tensor(ended(tokens[rest].tolist()), dtype=torch.bool, device=done.device)


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
                  temperature: float = 1.0, top_p: float = 1.0, top_k: int = NUCLEUS_TOP_K, stop_ids: list[int],
                  pad_id: int, ended=None, compile: dict | None = None) -> torch.Tensor:
    """``max_new_tokens`` new tokens for each row of the left-padded batch ``ids`` (``mask``: 1 at its tokens), as
    a (rows x ``max_new_tokens``) tensor on the CPU. The prompt runs uncompiled into a static KV cache; each later
    token is one call of ``_step``, compiled with ``compile`` (``torch.compile``'s arguments, e.g. ``INDUCTOR``).
    Every ``CHECK_EVERY`` steps the loop stops if each row has produced a token of ``stop_ids`` or, for
    ``ended(rows' new token ids so far)`` (a list of booleans), ended otherwise (a stop string). A row's tokens after
    its first stop token are ``pad_id``."""
    from transformers import StaticCache

    if not greedy and not (temperature > 0 and 0 < top_p <= 1):  # transformers' checks, which this loop replaces
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, "
                         f"top_p={top_p}")
    rows, width = ids.shape
    if max_new_tokens < 1:
        return torch.zeros((rows, 0), dtype=torch.long)
    # the last new token is never fed back (transformers' size), rounded up (STATIC_CACHE_MULTIPLE)
    length = -(-(width + max_new_tokens - 1) // STATIC_CACHE_MULTIPLE) * STATIC_CACHE_MULTIPLE
    cache = StaticCache(config=model.config, max_cache_len=length)
    full = torch.cat([mask, torch.ones((rows, max_new_tokens), dtype=mask.dtype, device=mask.device)], 1)
    step = _compiled_step(compile)
    lengths = mask.sum(-1)
    # every model and setting of a process compiles the one function _step: more graphs than torch's default limit
    # of 8 recompiles, past which it runs the step uncompiled without saying so
    limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    with torch.no_grad(), torch._dynamo.config.patch(recompile_limit=limit):
        prefill = _prefill(model, ids, mask, cache, cache_position=torch.arange(width, device=ids.device))
        device = prefill.device  # the output head's (a model spread over GPUs takes its input on another)
        out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
        stops = torch.tensor(stop_ids, device=device)
        token, covered = draw(prefill, greedy, temperature, top_p, top_k)
        if covered is not None:
            redraw(token, covered, prefill, temperature, top_p)
        out[:, 0] = token
        done = torch.isin(token, stops)
        for s in range(1, max_new_tokens):
            positions = (lengths + (s - 1))[:, None]
            token, covered, logits = step(model, cache, _step_mask(model, cache, full[:, : width + s], positions),
                                          out[:, s - 1].contiguous().to(ids.device), positions,
                                          torch.tensor([width + s - 1], device=ids.device), greedy, temperature,
                                          top_p, top_k)
            token = token.clone()
            if covered is not None:  # finished rows are not drawn again: their tokens become pads
                redraw(token, covered | done, logits, temperature, top_p)
            out[:, s] = torch.where(done, pad_id, token)
            done |= torch.isin(token, stops)
            if s % CHECK_EVERY == 0:
                if ended is not None and not bool(done.all()):
                    _mark_ended(done, ended, out[:, : s + 1])
                if bool(done.all()):
                    break
    return out.cpu()


SHRINK_SHARE = 8  # greedy_decode drops finished rows once at least 1 in SHRINK_SHARE of its rows have finished


def greedy_decode(model, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int, *, stop_ids: list[int],
                  pad_id: int, ended=None, states=None) -> torch.Tensor:
    """Greedy decoding with transformers' dynamic KV cache, uncompiled, where rows that finished stop costing compute:
    once at least one row in ``SHRINK_SHARE`` has produced a stop token (or, tested every ``CHECK_EVERY`` steps,
    ``ended`` says it ended), those rows leave the batch and their cache (``Cache.reorder_cache``). Every row's
    computation is transformers' (argmax of the float32 logits, the same positions and masks), in a smaller batch;
    ``generate`` uses it on the CPU, where the tokens were measured equal to transformers' ``generate`` (the tests,
    notebook 06's answers of the SmolLM2 preset). On a GPU a batch of another size can take other matrix kernels
    (cuBLAS's, bitsandbytes' 4-bit ones choose by the number of rows), so a near tie could go the other way; there
    ``generate`` keeps transformers' loop. The answer is a (rows x ``max_new_tokens``) tensor on the CPU, ``pad_id``
    after a row's stop token. On the 2-core CPU SmolLM2's 40 general answers of notebook 06 (32 new tokens at most,
    14 on average) took 5.13 s against 6.33 and 6.58 s through ``generate``, the same tokens (docs/performance.md).
    ``states``: a ``prompt_cache.PromptCache`` the prompts' pass is left in (copied before decoding changes it)."""
    from transformers import DynamicCache

    rows, width = ids.shape
    if max_new_tokens < 1:
        return torch.zeros((rows, 0), dtype=torch.long)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        logits = _prefill(model, ids, mask, cache)
        if states is not None:
            states.put(ids, mask, cache, logits)
        device = logits.device
        out = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
        stops = torch.tensor(stop_ids, device=device)
        alive = torch.arange(rows, device=device)  # the batch's rows, as rows of ``out``
        token = logits.float().argmax(-1)
        out[:, 0] = token
        done = torch.isin(token, stops)
        lengths = mask.sum(-1)
        for s in range(1, max_new_tokens):
            if ended is not None and s % CHECK_EVERY == 0 and not bool(done.all()):
                _mark_ended(done, ended, out[alive, :s])
            finished = int(done.sum())
            if finished == len(done):
                break
            if finished and finished * SHRINK_SHARE >= len(done):
                keep = (~done).nonzero().squeeze(-1)
                on_cpu = keep.cpu()  # indexes a tensor on any device (a model spread over GPUs has several)
                # beam search's reordering, which every kind of cache layer has (K/V, sliding, linear attention's
                # and convolutions' states); batch_select_indices leaves the latter two out
                cache.reorder_cache(on_cpu)
                alive, done, token = alive[keep], done[keep], token[keep]
                mask, lengths = mask[on_cpu], lengths[on_cpu]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], 1)
            logits = model(input_ids=token[:, None].to(ids.device), attention_mask=mask,
                           position_ids=(lengths + s - 1)[:, None], past_key_values=cache, use_cache=True).logits
            token = torch.where(done, pad_id, logits[:, -1].float().argmax(-1))
            out[alive, s] = token
            done |= torch.isin(token, stops)
    return out.cpu()
