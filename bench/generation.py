"""Benchmark: the project's generation (helpers.generate) beside plain transformers, in one process.

    python bench/generation.py            # GPU: Qwen2.5-0.5B's shape, 512 prompts of ~100 tokens, 256 sampled tokens
    python bench/generation.py --smoke    # CPU: a tiny model of the same family, seconds (run in CI)
    python bench/generation.py --shape llama-3.1-8b --prompts 256   # the paper's generator class; also
                                          # smollm2-135m and gemma-3-270m, the real track's two generators

Random weights of the real shape (no hub needed; the speed of a forward pass does not depend on the values) and the
Qwen2.5 chat template on the lab's tokenizer (helpers.lab.standins); sampling at temperature 1, so answers run to
the full length. Rows:

* ``helpers, before``: the dynamic cache with cuDNN attention at the old default batch of 64, as before the fast path;
* ``helpers, dynamic cache``: what runs uncompiled now (cuDNN attention off on CUDA), at 64 and, on the GPU, at 256
  (the notebooks' batch);
* ``helpers, compiled``: ``generate(compile=True)``: static cache, a compiled step that also draws the token
  (``helpers.decode``), bucketed widths, equal batches, the batch size from free memory (and at 256); timed on a second
  call, the first call's extra time is reported as ``compile_s``;
* ``helpers, compiled, K/V heads expanded``: the same at the automatic batch with the decode's grouped-query
  attention as transformers compiles it (``repeat_kv``), i.e. without ``packed_gqa_attention``: as it was before;
  for a model over ``PACKED_GQA_MAX_PARAMS`` (whose plan does not pack; no limit since 2026-12-01) the packed
  decode forced instead; the ``packed_gqa`` column says which ran; GPU only (on the CPU, uncompiled, transformers
  packs by itself);
* ``helpers, compiled, FlexAttention off``: the compiled row without ``generate.FLEX_DECODE`` (the packed decode
  step through SDPA also where a group holds a power of two of query heads; elsewhere the same; GPU only);
* ``helpers, static cache + CUDA graphs only``: ``generate(compile="graphs")``, the same decode captured in CUDA
  graphs by torch.compile's "cudagraphs" backend, without inductor's kernels (GPU only);
* ``helpers, static cache + compile, transformers' decode loop (before)``: the compiled row's batches, widths and
  packed attention, decoded by transformers' ``generate`` loop instead of ``helpers.decode`` (as until 2026-12-01;
  GPU only);
* ``helpers, static cache + compile, top-p P`` (``--top-p P``): the compiled row sampling with top-p (the loop's
  nucleus from the top 1,024 tokens, and a synchronisation at each step to draw again the rows it does not cover);
  random weights give flat rows, which the nucleus never covers, so ``--head-scale S`` multiplies the output head's
  weights (untied from the embedding) to make the logits peaked, as a trained model's are (GPU only);
* ``plain transformers``: ``model.generate`` on one left-padded batch with ``cache_implementation="static"``, with
  its automatic compile and without (the reference recipe), at 256 rows and, compiled, also at the batch of the
  rows above when that is larger (GPU only).

``--only TEXT...`` keeps the rows whose label holds one of the texts (the 8B shape's slow rows take minutes).

Prints the table (new tokens per second, ratio to the first row, peak GPU memory, GPU busy share) and writes JSON
(``--json``, default ``outputs/bench/generation.json``; ``--smoke``: ``outputs/bench/generation-smoke.json``).
"""

from __future__ import annotations

import argparse
import random
import sys
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import chosen, measured, report  # noqa: E402

from helpers import decode as helpers_decode  # noqa: E402
from helpers import generate as helpers_generate  # noqa: E402
from helpers.chat import encode_prompts  # noqa: E402
from helpers.generate import auto_batch_size, bucket_width, generate, left_padded  # noqa: E402
from helpers.lab import standins  # noqa: E402

QWEN2_5_0_5B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                    num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1e6,
                    tie_word_embeddings=True)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1536, max_position_embeddings=1024, tie_word_embeddings=True)
# --shape: (architecture, shape) of each model benchmarked, random weights
SHAPES = {
    "qwen2.5-0.5b": ("qwen2", QWEN2_5_0_5B),
    "smollm2-135m": ("llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                                   num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
                                   rope_theta=1e5, tie_word_embeddings=True)),
    "gemma-3-270m": ("gemma3_text", dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                                         num_attention_heads=4, num_key_value_heads=1, head_dim=256,
                                         vocab_size=262144, max_position_embeddings=32768, sliding_window=512)),
    "llama-3.1-8b": ("llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                   max_position_embeddings=131072, rope_theta=5e5, tie_word_embeddings=False)),
}


def build(shape: dict, tok, device: str, arch: str = "qwen2"):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(arch, **shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                  bos_token_id=None)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval()


def make_prompts(tok, n: int, length: int, seed: int = 0) -> list[str]:
    """``n`` chat prompts whose user turn is ``length`` +- 10% random tokens of the tokenizer's vocabulary."""
    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]
    out = []
    for _ in range(n):
        words = tok.decode([rng.choice(vocab) for _ in range(rng.randint(int(length * 0.9), int(length * 1.1)))])
        out.append(tok.apply_chat_template([{"role": "user", "content": words}], tokenize=False,
                                           add_generation_prompt=True))
    return out


def plain_hf(model, tok, prompts: list[str], new_tokens: int, compile: bool) -> int:
    """The reference recipe: one left-padded batch, a static cache, transformers' own compile (or none)."""
    batch = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                             temperature=1.0, top_p=1.0, top_k=None, pad_token_id=tok.pad_token_id,
                             cache_implementation="static", disable_compile=not compile)
    return (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts)


def ours(model, tok, prompts: list[str], new_tokens: int, batch: int | None, compile: bool | str,
         top_p: float = 1.0) -> int:
    outs = generate(model, tok, prompts, max_new_tokens=new_tokens, batch_size=batch, do_sample=True,
                    temperature=1.0, top_p=top_p, seed=0, compile=compile)
    return sum(o["new_tokens"] for o in outs)


def hf_loop(model, tok, prompts: list[str], new_tokens: int, batch: int) -> int:
    """``generate``'s compiled path as it was before ``helpers.decode`` (2026-12-01): the same sorted, bucketed,
    left-padded batches and packed attention, decoded by transformers' ``generate`` loop (static cache, its compiled
    step; the draw and the end-of-rows test outside the compiled step)."""
    encoded = sorted(encode_prompts(tok, prompts), key=len)
    made = 0
    with helpers_generate._packed_gqa(model), torch.no_grad():
        for start in range(0, len(encoded), batch):
            rows = encoded[start : start + batch]
            width = bucket_width(max(map(len, rows)))
            ids, mask = left_padded(rows, width, tok.pad_token_id)
            out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=new_tokens, do_sample=True, temperature=1.0, top_p=1.0, top_k=None,
                                 pad_token_id=tok.pad_token_id, cache_implementation="static")
            made += (out.shape[1] - width) * len(rows)
    return made


def plan_packs(model, prompts: list[str], new_tokens: int) -> bool:
    """Whether a compiled call of ``ours`` on ``prompts`` reads grouped K/V heads unexpanded (``packed_gqa``)."""
    return helpers_generate.generation_plan(model, len(prompts), 128, new_tokens, compile=True)["packed_gqa"]


def timed(name: str, fn, prompts, batch, new_tokens: int, warm: bool) -> dict:
    """Run ``fn`` (returns the new tokens made); with ``warm``, run it once first and report the difference of the
    first run over the second as compile time."""
    row = {"variant": name, "batch": batch, "prompts": len(prompts)}
    first = None
    if warm:
        with measured({}) as w:
            fn()
        first = w["seconds"]
    with measured(row):
        tokens = fn()
    row["new_tokens"] = tokens
    row["tok_per_s"] = round(tokens / row["seconds"], 1)
    row["compile_s"] = round(first - row["seconds"], 1) if first is not None else None
    print(f"  {name}: {row['tok_per_s']:,.0f} new tok/s", flush=True)
    return row


def profile(fn, out: Path) -> None:
    """Profile one (already compiled) call: print the GPU kernels that took the most time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model, a few prompts (seconds)")
    parser.add_argument("--shape", default="qwen2.5-0.5b", choices=sorted(SHAPES), help="the model's shape (GPU)")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=100)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--no-cudnn-attention", action="store_true",
                        help="disable cuDNN's scaled-dot-product attention (torch picks flash / efficient instead)")
    parser.add_argument("--profile", action="store_true", help="print the top GPU kernels of the compiled call")
    parser.add_argument("--batch", type=int, help="rows per batch of the rows at the automatic batch (default: "
                                                  "auto_batch_size, from half the free memory)")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only the rows whose label holds one of these texts, or ends with one ending in $ "
                             "(e.g. 'compile$' 'Flex')")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="also time the compiled row sampling with this top-p (GPU)")
    parser.add_argument("--head-scale", type=float, default=1.0,
                        help="multiply the output head's weights by this (peaked logits, as a trained model's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not 0 < args.top_p <= 1:
        parser.error(f"--top-p {args.top_p}: give a value in (0, 1]")
    if args.no_cudnn_attention:
        torch.backends.cuda.enable_cudnn_sdp(False)
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.prompts, args.prompt_tokens, args.new_tokens = 24, 20, 8
    json_path = args.json or Path("outputs/bench") / ("generation-smoke.json" if args.smoke else "generation.json")
    tok = standins.tokenizer("qwen2_5")
    arch, shape = ("qwen2", TINY) if args.smoke else SHAPES[args.shape]
    model = build(shape, tok, device, arch)
    if args.head_scale != 1.0:  # a new parameter: the embedding, tied to it in some shapes, keeps its weights
        head = model.get_output_embeddings()
        head.weight = torch.nn.Parameter(head.weight.detach() * args.head_scale, requires_grad=False)
    prompts = make_prompts(tok, args.prompts, args.prompt_tokens)
    n = args.new_tokens
    auto = args.batch or auto_batch_size(model, bucket_width(args.prompt_tokens + 30), n)
    fixed = args.batch  # None: generate sizes the batch itself, as the notebooks' batch_size 0 does
    print(f"{device}: {len(prompts)} prompts, {n} new tokens, auto batch {auto}", flush=True)

    ours(model, tok, prompts[:8], 8, 8, False)  # warm-up: CUDA context, cuBLAS handles, first kernels
    slow = prompts[: max(8, min(64, len(prompts) // 4))]  # slow rows run on fewer prompts: tokens/s is compared
    mid = prompts[: max(8, min(256, len(prompts) // 2))]
    ref = prompts[: min(len(prompts), 256)]
    label = "helpers, static cache + compile" if device == "cuda" else "helpers, static cache (compiled on CUDA)"
    # the compiled decode the other way round: K/V heads expanded as transformers compiles them (as before), or, for
    # a model over PACKED_GQA_MAX_PARAMS, which the plan does not pack, packed (forced, to measure it); on the CPU
    # this row would be the compiled row again
    packs = plan_packs(model, prompts, n)
    other = "K/V heads expanded (before)" if packs else "K/V heads packed (forced)"
    before = mock.patch.object(helpers_generate, "_no_cudnn_attention", nullcontext)  # as it was: cuDNN attention on
    flipped = mock.patch.object(helpers_generate, "PACKED_GQA_MAX_PARAMS", 0 if packs else float("inf"))
    no_flex = mock.patch.object(helpers_generate, "FLEX_DECODE", False)
    # (label, call, its prompts, batch, timed warm, a context it runs in, whether packed_gqa is recorded)
    planned = [("helpers, before (dynamic cache, cuDNN attention)", lambda: ours(model, tok, slow, n, 64, False),
                slow, 64, False, before, False),
               ("helpers, dynamic cache", lambda: ours(model, tok, slow, n, 64, False), slow, 64, False, None, False)]
    if device == "cuda":
        planned.append(("helpers, dynamic cache", lambda: ours(model, tok, mid, n, 256, False), mid, 256, False, None,
                        False))
    planned.append((label, lambda: ours(model, tok, prompts, n, fixed, True), prompts, auto, device == "cuda", None,
                    True))
    if device == "cuda" and auto != 256 and not fixed:  # (with --batch, the batch asked for is the comparison)
        planned.append((label, lambda: ours(model, tok, prompts, n, 256, True), prompts, 256, True, None, True))
    if device == "cuda":
        planned += [(f"{label}, {other}", lambda: ours(model, tok, prompts, n, fixed, True), prompts, auto, True,
                     flipped, True),
                    # the decode without FlexAttention (for groups of a power of two query heads, else the same)
                    (f"{label}, FlexAttention off", lambda: ours(model, tok, prompts, n, fixed, True), prompts,
                     auto, True, no_flex, True),
                    # compile_decode "graphs": CUDA graphs of the eager kernels, no inductor (GRAPHS_ONLY)
                    ("helpers, static cache + CUDA graphs only (no inductor)",
                     lambda: ours(model, tok, prompts, n, fixed, "graphs"), prompts, auto, True, None, True)]
    if device == "cuda" and args.top_p < 1.0:
        planned.append((f"{label}, top-p {args.top_p}", lambda: ours(model, tok, prompts, n, fixed, True, args.top_p),
                        prompts, auto, True, None, True))
    if device == "cuda":  # the same batches decoded by transformers' generate loop, as before helpers.decode
        planned.append((f"{label}, transformers' decode loop (before)",
                        lambda: hf_loop(model, tok, prompts, n, fixed or auto), prompts, fixed or auto, True, None,
                        False))
    planned += [("plain transformers, static cache", lambda: plain_hf(model, tok, ref, n, False), ref, len(ref),
                 False, None, False),
                ("plain transformers, static cache + compile", lambda: plain_hf(model, tok, ref, n, True), ref,
                 len(ref), device == "cuda", None, False)]
    if device == "cuda" and (fixed or auto) > len(ref):  # the plain recipe at the batch of the rows above too
        whole = prompts[: fixed or auto]
        planned.append(("plain transformers, static cache + compile", lambda: plain_hf(model, tok, whole, n, True),
                        whole, len(whole), True, None, False))
    if args.only:
        planned = [p for p in planned if chosen(p[0], args.only)]
    rows, profiled = [], False
    for name, call, rows_prompts, batch, warm, context, packed in planned:
        with context or nullcontext():
            rows.append(timed(name, call, rows_prompts, batch, n, warm))
            if packed:
                rows[-1]["packed_gqa"] = plan_packs(model, prompts, n)
            if args.profile and device == "cuda" and name.startswith(label) and batch == auto and not profiled:
                profile(call, json_path.parent)  # the first compiled row at the automatic batch (kept by --only)
                profiled = True
    for r in rows:
        r["vs_first"] = round(r["tok_per_s"] / rows[0]["tok_per_s"], 2)
    report(rows, ["variant", "batch", "prompts", "tok_per_s", "vs_first", "seconds", "compile_s", "peak_gib",
                  "gpu_busy", "packed_gqa"], json_path, shape="tiny qwen2" if args.smoke else args.shape,
           device=device, new_tokens=n, prompt_tokens=args.prompt_tokens,
           cudnn_attention=not args.no_cudnn_attention, decode_compile=helpers_decode.INDUCTOR, top_p=args.top_p,
           head_scale=args.head_scale)


if __name__ == "__main__":
    main()
