"""Benchmark: one decode step's attention, each maintained kernel on the same inputs, against the memory bound.

    python bench/decode_attention.py            # GPU: the Qwen2.5-0.5B and Llama-3.1-8B shapes of bench/generation.py
    python bench/decode_attention.py --smoke    # CPU: a tiny shape, seconds (run in CI)

issue 24's compiled 0.5B decode spends about half its GPU time in cuDNN's attention kernel at about a fifth of the
memory bound (docs/performance.md). This times that one call alone, as a static-cache decode makes it: one new query
token per row, keys and values of ``--cache`` positions (the static cache's length), rows left-padded by different
amounts, and the positions after the current one still empty (masked). Rows:

* ``sdpa packed, <backend>``: what ``generate.packed_gqa_attention`` calls (each group's query heads as its query
  rows, one key/value head per group, a boolean mask), with SDPA held to one backend (cuDNN, memory-efficient,
  math); ``sdpa packed, auto`` lets PyTorch choose, as the compiled decode does;
* ``sdpa expanded``: the key/value heads copied out to the query heads first, as transformers' ``repeat_kv`` does;
* ``flex, score mask (generate's)``: ``generate._flex_decode``, the step ``generate.FLEX_DECODE`` runs: no block
  mask (every block read), the padding mask applied to the scores (compiled on a GPU); timed for every shape,
  though ``generate`` takes it only where a group holds a power of two of query heads (``flex_decodes``);
* ``flex, block mask``: ``torch.nn.attention.flex_attention`` (compiled) with ``enable_gqa`` and a block mask of
  the same positions, made once (a decode could make it once per call); blocks wholly masked are skipped;
* ``flex, mask made each step``: the same, with ``create_block_mask`` inside the timed step.

Each row: microseconds per call (CUDA events over ``--iters`` calls), the largest difference from the math
backend's output, and the fraction of the memory bound: the keys and values read once, at ``--bandwidth`` GB/s
(H200: about 4,300 measured by copies, ../shared/device/README.md). Writes JSON (``--json``, default
``outputs/bench/decode_attention.json``; ``--smoke``: ``outputs/bench/decode_attention-smoke.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import report  # noqa: E402

# (query heads, key/value heads, head dim, layers, batch) of bench/generation.py's shapes at their measured batch
SHAPES = {"qwen2.5-0.5b": (14, 2, 64, 24, 1024), "llama-3.1-8b": (32, 8, 128, 32, 256),
          "smollm2-135m": (9, 3, 64, 30, 1024), "tiny": (4, 2, 16, 2, 8)}
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH}


def inputs(heads, kv_heads, dim, batch, cache, step, device, dtype, seed=0):
    """A decode step: q (batch, heads, 1, dim), k/v (batch, kv_heads, cache, dim), and ``valid`` (batch, cache):
    row b's prompt starts at a random left padding of up to a quarter of the prompt, which fills positions up to
    ``cache // 2``, and the row has decoded ``step`` tokens since."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(batch, heads, 1, dim, generator=g).to(device, dtype)
    k = torch.randn(batch, kv_heads, cache, dim, generator=g).to(device, dtype)
    v = torch.randn(batch, kv_heads, cache, dim, generator=g).to(device, dtype)
    prompt = cache // 2
    pad = torch.randint(0, prompt // 4 + 1, (batch,), generator=g)
    pos = torch.arange(cache)
    valid = (pos[None, :] >= pad[:, None]) & (pos[None, :] < prompt + step)
    return q, k, v, valid.to(device)


def packed(q, k, v, valid, backend=None):
    batch, heads, _, dim = q.shape
    qp = q.reshape(batch, k.shape[1], heads // k.shape[1], dim)
    mask = valid[:, None, None, :]
    if backend is None:
        out = F.scaled_dot_product_attention(qp, k, v, attn_mask=mask)
    else:
        with sdpa_kernel([backend]):
            out = F.scaled_dot_product_attention(qp, k, v, attn_mask=mask)
    return out.reshape(batch, heads, 1, dim)


def expanded(q, k, v, valid):
    groups = q.shape[1] // k.shape[1]
    k2, v2 = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return F.scaled_dot_product_attention(q, k2, v2, attn_mask=valid[:, None, None, :])


def generates_flex(device):
    """``generate._flex_decode``, the decode step ``generate.FLEX_DECODE`` runs (compiled on a GPU, as in a decode)."""
    from helpers.generate import _flex_decode

    return torch.compile(_flex_decode, dynamic=False) if device == "cuda" else _flex_decode


def flex_fns(device):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    compiled = torch.compile(flex_attention, dynamic=False) if device == "cuda" else flex_attention

    def block_mask(valid):
        def mask_mod(b, h, q_idx, kv_idx):
            return valid[b, kv_idx]
        return create_block_mask(mask_mod, valid.shape[0], None, 1, valid.shape[1], device=device)

    def run(q, k, v, mask):
        return compiled(q, k, v, block_mask=mask, enable_gqa=True)
    return block_mask, run


def timed(fn, iters: int, device: str) -> float:
    """Microseconds per call of ``fn``, after three warm-up calls."""
    for _ in range(3):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1000 / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) * 1e6 / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, a tiny shape, a few calls (seconds)")
    parser.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "llama-3.1-8b"], choices=sorted(SHAPES))
    parser.add_argument("--cache", type=int, default=512, help="static cache positions (the 0.5B bench: 512)")
    parser.add_argument("--step", type=int, default=128, help="tokens decoded so far (of the cache's second half)")
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--bandwidth", type=float, default=4300.0, help="GB/s of the memory bound")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    if args.smoke:
        args.shapes, args.cache, args.step, args.iters = ["tiny"], 64, 8, 3
    out_json = args.json or Path("outputs/bench") / ("decode_attention-smoke.json" if args.smoke
                                                      else "decode_attention.json")
    block_mask, flex = flex_fns(device)
    flex_decode = generates_flex(device)
    rows = []
    for name in args.shapes:
        heads, kv_heads, dim, layers, batch = SHAPES[name]
        q, k, v, valid = inputs(heads, kv_heads, dim, batch, args.cache, args.step, device, dtype)
        bound_us = 2 * k.numel() * k.element_size() / (args.bandwidth * 1e3)  # bytes / (GB/s) -> µs
        reference = packed(q.float(), k.float(), v.float(), valid, SDPBackend.MATH)
        mask = block_mask(valid)
        variants = {"sdpa packed, auto": lambda: packed(q, k, v, valid)}
        for label, backend in BACKENDS.items():
            if device == "cpu" and label == "cudnn":
                continue
            variants[f"sdpa packed, {label}"] = lambda b=backend: packed(q, k, v, valid, b)
        variants["sdpa expanded"] = lambda: expanded(q, k, v, valid)
        variants["flex, score mask (generate's)"] = lambda: flex_decode(q, k, v, valid[:, None, None, :],
                                                                         None).transpose(1, 2)
        variants["flex, block mask"] = lambda: flex(q, k, v, mask)
        variants["flex, mask made each step"] = lambda: flex(q, k, v, block_mask(valid))
        for label, fn in variants.items():
            row = {"shape": name, "variant": label, "batch": batch, "cache": args.cache, "step": args.step}
            try:
                row["max_diff"] = float((fn().float() - reference).abs().max())
                row["us"] = round(timed(fn, args.iters, device), 1)
                row["of_bound"] = round(bound_us / row["us"], 3)
                row["ms_per_step"] = round(row["us"] * layers / 1000, 2)  # this call in every layer
            except Exception as e:  # a backend that refuses these inputs says so in its row
                row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
            rows.append(row)
            print(row, flush=True)
    report(rows, ["shape", "variant", "batch", "us", "of_bound", "ms_per_step", "max_diff", "error"], out_json,
           cache=args.cache, step=args.step, iters=args.iters, bandwidth_gbs=args.bandwidth, device=device)


if __name__ == "__main__":
    main()
