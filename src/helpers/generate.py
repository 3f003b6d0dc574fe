"""Batched text generation shared by every stage that samples from a model (00, 01, 02, 06).

Prompts are already-rendered strings (chat template applied, generation prompt included), tokenised by
``chat.encode_prompts`` so that they carry exactly one BOS where the model expects one.
Batches are sorted by length (less padding) and left-padded (decoder-only models continue from the right edge).

On a CUDA GPU (``generation_plan``) the decode loop runs with a static KV cache and a compiled step
(``decode.static_decode``: the model's one-token step and the draw of the next token in one CUDA graph, the end of
the rows tested every few steps; uncompiled, the GPU idles while the CPU launches kernels: bench/generation.py,
docs/performance.md). Compiling costs tens of seconds per shape, so
prompt widths are rounded up to a few buckets (``bucket_width``), every batch of a call has the same number of rows
(the last one is filled with copies whose answers are dropped), and a job too short or a model too small to repay
the compile runs uncompiled. A compiled decode of a grouped-query model reads its K/V heads unexpanded
(``packed_gqa_attention``). The batch size defaults to what the GPU's free memory holds. On the CPU nothing
changes but for greedy answers, whose finished rows leave the batch (``decode.greedy_decode``): the dynamic cache,
no compile, 64 rows a batch unless the caller says otherwise, transformers' greedy tokens and its sampling. Both
loops of ``decode`` run only what transformers would do the same way (``decode.draws_alone``: not, say, a repetition
penalty in the model's generation config); the rest goes to transformers' ``generate``.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager, nullcontext
from functools import lru_cache, partial
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .chat import encode_prompts
from .decode import INDUCTOR, draws_alone, greedy_decode, nucleus, static_decode

CPU_BATCH = 64  # rows per batch on the CPU when the caller names none
GPU_MAX_BATCH = 1024  # rows per batch at most on a GPU (bench/generation.py)
COMPILE_MIN_STEPS = 1024  # decode steps of a job below which compiling does not pay for itself (generation_plan)
COMPILE_MIN_PARAMS = 50_000_000  # smaller models (the lab's) decode fast uncompiled: a compile would cost more
# the compiled decode reads grouped K/V heads unexpanded (packed_gqa_attention) below this size: measured faster for
# the 135M-0.5B shapes (1.10-2.10x) and, since 2026-12-01, for the 8B shape (2.01x over four batches of 256 rows,
# 2.12x over one of 1,024; two of 512 as fast; its one slow two-batch call of 2026-11-30 did not recur:
# docs/performance.md); kept as a switch for a model that measures slower packed
PACKED_GQA_MAX_PARAMS = float("inf")
# a packed decode step compiled by inductor whose groups hold a power of two of query heads of at most 128 dimensions
# runs PyTorch's FlexAttention (the padding mask applied to the scores) instead of SDPA, on a GPU of compute
# capability 8.0 or later (FlexAttention's Triton kernels): the 8B shape's whole decode 1.20x (one run, 2026-12-01,
# docs/performance.md); with a block mask, 49-110x slower than cuDNN's kernel for 3 or 7 heads a group
# (bench/decode_attention.py), so those keep SDPA; other head sizes were not measured
FLEX_DECODE = True
COMPILE_DEVICES = ("cuda",)  # where the static-cache decode step is compiled (as transformers: CUDA only)
NUCLEUS_MIN_VOCAB = 100_000  # from this vocabulary size on, top-p sampling looks at decode.NUCLEUS_TOP_K first


def bucket_width(width: int) -> int:
    """The padded prompt width a batch runs at on the static-cache path: the next power of two up to 256, then the
    next multiple of 256, so that a call compiles a handful of shapes, not one per prompt length."""
    if width <= 256:
        return max(16, 1 << math.ceil(math.log2(max(width, 1))))
    return -(-width // 256) * 256


def left_padded(seqs: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)`` of token sequences left-padded to ``width`` (decoder-only models continue from the right
    edge): ``pad_id`` and 0 before each sequence, its tokens and 1 from there."""
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids, mask


def _is_cuda(model) -> bool:
    return next(model.parameters()).device.type == "cuda"


def auto_batch_size(model, width: int, max_new_tokens: int, free_bytes: int | None = None) -> int:
    """Rows per batch: ``CPU_BATCH`` on the CPU; on a GPU, as many as half its free memory holds (KV cache of
    ``width + max_new_tokens`` positions, full-vocabulary logits of the sampling step and the prefill's activations
    per row), rounded down to a power of two, between 8 and ``GPU_MAX_BATCH``."""
    if not _is_cuda(model):
        return CPU_BATCH
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(next(model.parameters()).device)
    c = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
    elem = next(model.parameters()).element_size()
    kv = 2 * c.num_hidden_layers * kv_heads * head_dim * (width + max_new_tokens) * elem
    logits = c.vocab_size * 4 * 3  # fp32 logits, processed scores and probabilities of one step
    prefill = width * (20 * c.hidden_size + 6 * getattr(c, "intermediate_size", 4 * c.hidden_size)) * elem
    rows = int(free_bytes * 0.5 // (kv + logits + prefill))
    return max(8, min(GPU_MAX_BATCH, 1 << max(0, rows.bit_length() - 1)))


def _no_cudnn_attention():
    """Scaled-dot-product attention without cuDNN's kernel: uncompiled, with a new key length at every step, cuDNN
    attention made the dynamic-cache path 2.5-3.1x slower on an H100 than flash / memory-efficient attention
    (bench/generation.py --no-cudnn-attention, docs/performance.md)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


PACKED_GQA = "sdpa_packed_gqa"  # the attention implementation ``generate`` registers for a compiled decode
# compile="graphs": torch.compile's "cudagraphs" backend, which captures the decode step's eager kernels in CUDA graphs
# (no inductor code generation, whose kernels changed sampled rows between processes: docs/scale.md)
GRAPHS_ONLY = {"backend": "cudagraphs", "mode": None}


def packed_gqa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, flex=True, **kwargs):
    """transformers' SDPA attention, except that a one-token decode step of a grouped-query model reads the key and
    value heads as they are: the query heads of a group become that group's query rows, so SDPA sees one key/value
    head per group and needs no copy. transformers 5.23 does this itself (``pack_gqa``) only outside
    ``torch.compile``; under compile, as in a static-cache decode, it expands the key/value heads first
    (``repeat_kv``), a copy that took 41.6% of the GPU time of a compiled 0.5B decode (docs/performance.md).
    Everything else (prefill, a mask per head, position biases, soft-capping, paged caches) goes to
    ``sdpa_attention_forward`` unchanged."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_length, dim = query.shape
    other = any(kwargs.get(k) is not None for k in ("position_bias", "softcap", "cache"))
    if (groups == 1 or q_length != 1 or other or kwargs.get("output_attentions")
            or (attention_mask is not None and attention_mask.shape[1] != 1)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if flex and flex_decodes(groups, dim, dropout, query):
        return _flex_decode(query, key, value, attention_mask, scaling), None
    query = query.reshape(batch, heads // groups, groups, dim)  # (batch, kv heads, the group's query heads, dim)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling)  # mask: (b, 1, 1, kv)
    return out.reshape(out.shape[0], heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def flex_decodes(groups: int, dim: int, dropout: float, query) -> bool:
    """Whether ``packed_gqa_attention`` runs a decode step through FlexAttention (``FLEX_DECODE``): groups of a
    power of two of query heads, heads of at most 128 dimensions, no dropout, and on CUDA compute capability 8.0."""
    return (FLEX_DECODE and groups & (groups - 1) == 0 and dim <= 128 and not dropout
            and (not query.is_cuda or torch.cuda.get_device_capability(query.device) >= (8, 0)))


def _flex_decode(query, key, value, attention_mask, scaling):
    """One decode step through FlexAttention (``FLEX_DECODE``): the key/value heads read as they are
    (``enable_gqa``), the padding mask (SDPA's, (batch, 1, 1, keys)) applied to the scores; as transformers' layout."""
    from torch.nn.attention.flex_attention import flex_attention

    score_mod = None
    if attention_mask is not None:
        keys = attention_mask[:, 0, 0, :]

        def score_mod(score, b, h, q_idx, kv_idx):
            if keys.dtype == torch.bool:
                return torch.where(keys[b, kv_idx], score, -float("inf"))
            return score + keys[b, kv_idx]
    out = flex_attention(query, key, value, score_mod=score_mod, enable_gqa=True, scale=scaling)
    return out.transpose(1, 2).contiguous()


def packs_gqa(model) -> bool:
    """Whether ``_packed_gqa`` switches ``model``: a text model (its config its own text config; a multimodal
    model is left alone) with fewer key/value heads than query heads, on transformers' SDPA attention."""
    config = getattr(model, "config", None)
    if config is None or config.get_text_config() is not config:
        return False
    heads = getattr(config, "num_attention_heads", 0)
    return 0 < (getattr(config, "num_key_value_heads", None) or heads) < heads and config._attn_implementation == "sdpa"


@contextmanager
def _packed_gqa(model, flex: bool = True):
    """While ``generate`` runs: a model that ``packs_gqa`` uses ``packed_gqa_attention`` (registered under
    ``PACKED_GQA``, with SDPA's masks; ``flex=False``: never FlexAttention, for a decode captured in CUDA graphs
    without inductor, where FlexAttention would run unfused); any other is left as it is. Restored afterwards, also
    after an error, so training and scoring see the model as loaded."""
    if not packs_gqa(model):
        yield
        return
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PACKED_GQA, packed_gqa_attention if flex else partial(packed_gqa_attention, flex=False))
    AttentionMaskInterface.register(PACKED_GQA, sdpa_mask)
    try:
        model.set_attn_implementation(PACKED_GQA)
        yield
    finally:
        model.set_attn_implementation("sdpa")


def generation_plan(model, n_prompts: int, width: int, max_new_tokens: int, batch_size: int | None = None,
                    compile: bool | str | None = None, job_prompts: int | None = None) -> dict:
    """How ``generate`` will run: ``compile`` (a static KV cache and ``decode.static_decode``, its step compiled with
    CUDA graphs on CUDA; else the dynamic cache, uncompiled: ``decode.greedy_decode`` for greedy answers on the CPU,
    transformers' ``generate`` otherwise; either loop of ``decode`` only where ``decode.draws_alone``), ``batch_size``,
    ``equal_batches`` (every batch filled to one size so the compiled shapes repeat), this call's ``decode_steps``
    (batches x ``max_new_tokens``) and ``packed_gqa`` (a compiled CUDA decode of a model under ``PACKED_GQA_MAX_PARAMS``
    that ``packs_gqa`` runs ``packed_gqa_attention``; uncompiled, transformers packs grouped heads itself) and
    ``graphs_only`` (``compile="graphs"``: the static-cache path, compiled with ``GRAPHS_ONLY``).

    ``compile=None`` compiles on CUDA when the job has at least ``COMPILE_MIN_STEPS`` decode steps and the model at
    least ``COMPILE_MIN_PARAMS`` parameters: a compile costs tens of seconds (39.5 s for Qwen2.5-0.5B on an H100,
    docs/performance.md), more than a short job or a tiny model takes uncompiled, and is reused by every later call
    with the same shapes. The job is this call, or ``job_prompts`` prompts for a caller that generates in shards
    (notebook 02). ``compile=True`` forces the static-cache path (on the CPU its step is not compiled,
    which is how the tests check it gives the same answers). Deterministic: the plan never depends on timings."""
    cuda = _is_cuda(model)
    graphs_only = compile == "graphs"
    compile = True if graphs_only else compile
    rows = batch_size or auto_batch_size(model, bucket_width(width), max_new_tokens)
    n_batches = max(1, -(-n_prompts // rows))
    steps = n_batches * max_new_tokens
    # parameters, not stored elements (a 4-bit weight stores two in one)
    count = model.num_parameters() if hasattr(model, "num_parameters") else sum(p.numel() for p in model.parameters())
    if compile is None:
        quantizer = getattr(model, "hf_quantizer", None)
        compileable = quantizer is None or getattr(quantizer, "is_compileable", False)
        job_steps = max(1, -(-(job_prompts or n_prompts) // rows)) * max_new_tokens
        big = count >= COMPILE_MIN_PARAMS
        one_device = len(set((getattr(model, "hf_device_map", None) or {"": 0}).values())) <= 1  # not spread
        compile = cuda and compileable and big and one_device and job_steps >= COMPILE_MIN_STEPS
    # a compiled decode on CUDA only: uncompiled, transformers packs by itself
    packed = bool(compile) and cuda and count < PACKED_GQA_MAX_PARAMS and packs_gqa(model)
    return {"compile": bool(compile), "batch_size": -(-n_prompts // n_batches) if compile else rows,
            "equal_batches": bool(compile), "decode_steps": steps, "packed_gqa": packed, "graphs_only": graphs_only}


def compile_choice(value, parameter: str = "compile_decode") -> bool | str | None:
    """A notebook's ``compile_decode`` parameter as ``generate``'s ``compile``: None or ``"auto"`` (``generation_plan``
    decides by the job's size), ``True``, ``False`` or ``"graphs"``. On a GPU the compiled decode does not repeat its
    sampled rows bit for bit: two runs of notebook 02 on one H200 gave 393 and 414 of 600 rows differing when forced
    to compile, none uncompiled (docs/bench/h200x2-determinism/); ``False`` is the choice for rows that repeat (with a
    fixed ``batch_size``: the batches decide each draw's seed). ``"graphs"``: the static-cache decode captured in CUDA
    graphs without inductor's generated kernels (``GRAPHS_ONLY``): in notebook 02 on an H200 (200 instructions, the
    real generators) its rows repeated between two runs, but it took about twice the uncompiled decode's time
    (docs/bench/h200x2-8b-ddp-graphs/)."""
    if value in ("auto", None):
        return None
    if isinstance(value, bool) or value == "graphs":
        return value
    raise ValueError(f"{parameter} = {value!r}: use None (null in YAML: compile a GPU decode when it pays), True "
                     "(always), False (never: sampled rows repeat on a GPU) or \"graphs\" (CUDA graphs of the "
                     "uncompiled kernels)")


def _vocab_size(model) -> int:
    """Rows of the model's output layer (the logits' width; the config's ``vocab_size`` may be padded)."""
    head = model.get_output_embeddings()
    return head.weight.shape[0] if head is not None else 0


class NucleusSampler:
    """Temperature and top-p sampling as a logits processor that draws the token itself: the scores it returns are
    0 at the drawn token and -inf elsewhere, for ``generate(do_sample=False)`` to pick. transformers' own sampling
    sorts the whole vocabulary and draws from all of it at every step: for gemma-3-270m's 262,144 tokens that was
    39 of 90 s of notebook 02's generation on the 2-core CPU (docs/performance.md). The same distribution; the
    draws come from torch's global generator, which ``generate`` seeds per batch, so a seed still gives the same
    answers, but not the answers transformers' sampler draws with that seed. Used from ``NUCLEUS_MIN_VOCAB``
    tokens on (``generate``), so smaller vocabularies (the lab's, SmolLM2's) sample as before."""

    def __init__(self, temperature: float, top_p: float):
        if not temperature > 0 or not 0 < top_p <= 1:  # transformers' own checks, which this path bypasses
            raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, "
                             f"top_p={top_p}")
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids, scores):
        out = torch.full_like(scores, float("-inf"))
        for rows, ids, probs in nucleus(scores / self.temperature, self.top_p):
            out[rows, ids.gather(-1, torch.multinomial(probs, 1)).squeeze(-1)] = 0.0
        return out


@lru_cache(maxsize=8)
def stop_criterion(tokenizer, stop_strings: tuple[str, ...]):
    """transformers' ``StopStringCriteria`` for ``stop_strings``, built once per tokenizer. Building one reads the
    whole vocabulary (2.3 s for gemma-3-270m's 262,144 tokens on the 2-core CPU, and 4.6 s more the first time in a
    process), and ``model.generate(stop_strings=...)`` builds one at every call, so once per batch."""
    from transformers import StopStringCriteria

    return StopStringCriteria(tokenizer=tokenizer, stop_strings=list(stop_strings))


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 32,
    batch_size: int | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    stop_token: str | None = None,
    stop_strings: Sequence[str] | None = None,
    progress: bool | str = False,
    compile: bool | str | None = None,
    job_prompts: int | None = None,
    states=None,
) -> list[dict]:
    """Generate one continuation per prompt, in the input order.

    Generation stops at ``stop_token`` if given, else at the tokenizer's eos token or any end token of the model's
    generation config (e.g. Gemma ends a turn with ``<end_of_turn>``, not its eos ``<eos>``).
    Returns dicts with ``text`` (decoded without special tokens, stripped), ``prompt_tokens``, ``new_tokens``,
    ``finished`` (a stop token was produced before ``max_new_tokens``) and ``ids`` (the answer's token ids, with the
    stop token when one was produced).
    ``stop_strings`` (e.g. a few-shot frame's next question) also end an answer: the text is cut where the first one
    starts, and the answer counts as finished.
    ``batch_size``: rows per batch (None: ``auto_batch_size``); ``compile`` and ``job_prompts``: see
    ``generation_plan``. ``states``: a ``prompt_cache.PromptCache`` that greedy answers on the CPU
    (``decode.greedy_decode``) leave their prompts' pass in, for the model's other measures (never read here).
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
    if not prompts:
        return []
    plan = generation_plan(model, len(prompts), max(map(len, encoded)), max_new_tokens, batch_size, compile,
                           job_prompts)
    static = plan["compile"]
    step = plan["batch_size"]
    # the static-cache path runs decode.static_decode, its step compiled on CUDA (transformers compiles nowhere else),
    # unless the model's generation config asks for more than it applies (e.g. a repetition penalty): then
    # transformers' generate with its static cache, as before 2026-12-01
    loop = static and draws_alone(model, not do_sample, temperature, top_p, stop_ids, tokenizer.pad_token_id)
    # greedy answers on the dynamic cache drop their finished rows as they go (decode.greedy_decode)
    # on the CPU (elsewhere a smaller batch may take other kernels: greedy_decode's docstring)
    shrink = not static and not do_sample and device.type == "cpu" \
        and draws_alone(model, True, 1.0, 1.0, stop_ids, tokenizer.pad_token_id)
    extra: dict = {"cache_implementation": "static"} if static and not loop else {}
    if static and not loop and plan["graphs_only"]:
        from transformers import CompileConfig

        extra["compile_config"] = CompileConfig(**GRAPHS_ONLY)
    options = ({**INDUCTOR, **GRAPHS_ONLY} if plan["graphs_only"] else INDUCTOR) \
        if loop and device.type in COMPILE_DEVICES else None
    ended = (lambda rows: [any(s in t for s in stop_strings) for t in tokenizer.batch_decode(
        rows, skip_special_tokens=True)]) if stop_strings else None
    own_sampler = do_sample and top_p < 1.0 and _vocab_size(model) >= NUCLEUS_MIN_VOCAB
    hf_sampling = do_sample and not own_sampler  # transformers samples, unless NucleusSampler draws instead
    if own_sampler:
        from transformers import LogitsProcessorList

        extra["logits_processor"] = LogitsProcessorList([NucleusSampler(temperature, top_p)])
    if stop_strings and not loop and not shrink:
        from transformers import StoppingCriteriaList

        extra |= {"stopping_criteria": StoppingCriteriaList([stop_criterion(tokenizer, tuple(stop_strings))])}
    gen = torch.Generator(device="cpu").manual_seed(seed)
    was_training = model.training
    model.eval()
    bar = tqdm(total=len(prompts), desc=progress if isinstance(progress, str) else "generate", disable=not progress)
    attention = _no_cudnn_attention if device.type == "cuda" and not static else nullcontext
    scope = ExitStack()
    try:
        if plan["packed_gqa"]:
            scope.enter_context(_packed_gqa(model, flex=not plan["graphs_only"]))
        for start in range(0, len(order), step):
            idx = order[start : start + step]
            rows = idx + [idx[-1]] * (step - len(idx)) if plan["equal_batches"] else idx  # copies keep one shape
            width = max(len(encoded[i]) for i in idx)
            if static:
                width = bucket_width(width)
            ids, mask = left_padded([encoded[i] for i in rows], width, tokenizer.pad_token_id)
            if do_sample:  # one seed per batch keeps results independent of what ran before in the process
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            if loop:
                out = static_decode(model, ids.to(device), mask.to(device), max_new_tokens, greedy=not do_sample,
                                    temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                                    pad_id=tokenizer.pad_token_id, ended=ended, compile=options)
            elif shrink:
                with attention():
                    out = greedy_decode(model, ids.to(device), mask.to(device), max_new_tokens, stop_ids=stop_ids,
                                        pad_id=tokenizer.pad_token_id, ended=ended, states=states)
            else:
                with torch.no_grad(), attention():
                    out = model.generate(
                        input_ids=ids.to(device),
                        attention_mask=mask.to(device),
                        max_new_tokens=max_new_tokens,
                        do_sample=hf_sampling,
                        temperature=temperature if hf_sampling else None,
                        top_p=top_p if hf_sampling else None,
                        top_k=None,
                        eos_token_id=stop_ids,
                        pad_token_id=tokenizer.pad_token_id,
                        **extra,
                    )[:, width:]
            for row, i in enumerate(idx):
                new = out[row].tolist()
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
        scope.close()
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

