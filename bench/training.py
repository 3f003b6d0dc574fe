"""Benchmark: stage 05's QLoRA trainer (helpers.qlora_training) beside a plain training loop, on one GPU (with
several visible, each Trainer row runs in a process launched on the first; ``--ranks N`` adds a DDP row).

    python bench/training.py                  # GPU: Llama-3.1-8B and Qwen2.5-0.5B shapes, NF4, 2,048 tokens
    python bench/training.py --shapes llama-3.1-8b --budget 12
    python bench/training.py --shapes llama-3.1-8b --batch 8 --ranks 2   # one training on two GPUs (DDP)
    python bench/training.py --smoke          # CPU: a tiny Llama, a few steps (run in CI)

Random weights of the real shape (saved once under ``--models``, default ``/tmp/bench-models``), the family's chat
template on the lab's tokenizer (helpers.lab.standins) and conversations cut to ``--length`` tokens (a question of a
quarter of that, then the answer, which carries the loss). LoRA rank 16 on every linear layer, batch ``--batch``
(1). Rows, each a fresh model, those without Liger run first (``uses_liger``):

* ``helpers, before``: the trainer as it was: fp32 adapters, LoRA dropout 0.05, every layer checkpointed, no Liger;
* ``helpers, default``: ``speed_plan`` with the device's free memory as the budget (dropout 0; a base that fits
  dequantised is, ``Speed.dequantised``);
* ``helpers, default, 4-bit layers``: the same plan with the base kept in bitsandbytes' 4-bit layers;
  ``loss_max_diff`` is the largest gap between its per-step losses and the default row's;
* ``helpers, default, layers not graphed``: the same plan with the decoder layers called as usual, not replayed as
  CUDA graphs (``Speed.graphed``, chosen on a GPU where no layer is checkpointed); ``loss_max_diff`` as above;
* ``helpers, budget N GiB``: the same with ``memory_budget_gib=N`` (``--budget``, 8B only);
* ``helpers, default, unquantised base`` (``--unquantised``): the default plan, the base not quantised (LoRA);
* ``helpers, compiled``, ``helpers, compiled per layer`` and ``..., no Liger`` (``--compiled``): the default plan
  with ``torch.compile`` of the whole model, or of each decoder layer (accelerate's regional compilation), every
  batch padded to ``--length`` (the first steps compile; the padding's own cost is not separated from the compile's);
* ``..., no Liger, CUDA graphs`` (``--graphs``): each layer compiled in inductor's "reduce-overhead" mode, its
  forward and backward replayed as CUDA graphs, with the base in 4 bits and unquantised, each in a process of its
  own (GPU only); ``--only TEXT...`` keeps the rows whose label holds one of the texts;
* ``helpers, default, DDP on N ranks`` (``--ranks N``): the default plan with each step's batch split among N
  processes, one per GPU (gloo processes on a CPU), as notebook 05's ``gpus_per_arm``; tokens per second count the
  whole batch, ``vs_single`` compares them with the single process's default row, and ``loss_max_diff`` is the
  largest gap between the two rows' per-step losses (``--ddp-only``: only those two rows);
* ``plain loop``: peft + bitsandbytes by hand: bf16 LoRA, non-reentrant checkpointing on every layer, AdamW, in
  train mode (``from_pretrained`` returns eval mode, where transformers skips checkpointing).

Tokens per second come from the median step time after ``--warmup`` steps; for the Trainer's rows
``tok_per_s_period`` comes from the mean period between step ends after the warm-up, which also holds the Trainer's
work between steps (under DDP, the ranks' gathers of the token count and the loss); ``train_s`` is the whole
training's wall time, the warm-up and any compile included. Peak memory is torch's peak
allocation during the row (weights included). Writes JSON (``--json``, default ``outputs/bench/training.json``).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import chosen, measured, report  # noqa: E402

from helpers import models, qlora_configs as qc, qlora_training as qt, speed as sp  # noqa: E402
from helpers.lab import standins  # noqa: E402

SHAPES = {
    "llama-3.1-8b": ("llama3_1", "llama", dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                               num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
                                               max_position_embeddings=131072, rope_theta=5e5,
                                               tie_word_embeddings=False)),
    "qwen2.5-0.5b": ("qwen2_5", "qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                              num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                                              max_position_embeddings=32768, rope_theta=1e6,
                                              tie_word_embeddings=True)),
    # SmolLM2-135M-Instruct, the real track's model (a Llama; ChatML as Qwen's template writes it)
    "smollm2-135m": ("qwen2_5", "llama", dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                              num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                                              max_position_embeddings=8192, rope_theta=1e5,
                                              tie_word_embeddings=True)),
    "tiny-llama": ("llama3_1", "llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=1536,
                                             max_position_embeddings=1024, tie_word_embeddings=False)),
}


def model_folder(name: str, root: Path, device: str) -> Path:
    """A folder with random weights of the shape ``name`` and the family's stand-in tokenizer (built once)."""
    folder = root / name
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoConfig, AutoModelForCausalLM

    family, arch, shape = SHAPES[name]
    tok = standins.tokenizer(family)
    config = AutoConfig.for_model(arch, **shape, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                  bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    print(f"built {name} in {time.perf_counter() - start:.0f} s: {sum(p.numel() for p in model.parameters()):,} "
          "parameters", flush=True)
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return folder


def conversations(tok, n: int, length: int, seed: int = 0):
    """``n`` conversations longer than ``length`` tokens (truncated to it in training, so every step has exactly
    ``length``): a question of a quarter of that and a longer answer, random words."""
    from datasets import Dataset

    rng = random.Random(seed)
    special = set(tok.all_special_ids)
    vocab = [i for i in range(len(tok)) if i not in special]

    def text(k):
        return tok.decode([rng.choice(vocab) for _ in range(k)])

    return Dataset.from_list([{"messages": [{"role": "user", "content": text(length // 4)},
                                            {"role": "assistant", "content": text(length)}]}
                              for _ in range(n)])


def torch_profiler():
    from torch.profiler import ProfilerActivity, profile

    return profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])


class StepTimes(TrainerCallback):
    """A Trainer callback: wall time of every optimizer step (CUDA synchronised), and when each step ended: the
    period between two ends also holds what the Trainer does between steps (fetching the batch, logging; under DDP
    the ranks' gathers of the token count and the loss), which the step's own time leaves out."""

    def __init__(self):
        self.times, self.ends, self.last = [], [], None

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.ends.append(time.perf_counter())
        self.times.append(self.ends[-1] - self.last)


def ours(folder: Path, setup: models.Setup, data, hp: dict, speed: sp.Speed | None, budget: float, warmup: int,
         profile: bool = False, dequantise: bool = True, **change) -> dict:
    """One row: stage 05's trainer with ``speed`` (default ``speed_plan``, with its ``dequantise``; ``change``
    overrides its fields)."""
    from dataclasses import replace

    row = {}
    speed = replace(speed or sp.speed_plan(str(folder), setup, hp, budget, dequantise=dequantise), **change)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = qt.make_trainer(data, str(folder), setup, qc.from_parameters(setup, str(folder), hp), seed=0,
                                  output_dir=Path(tmp), progress=False, speed=speed)
        times = StepTimes()
        trainer.add_callback(times)
        start = time.perf_counter()
        with measured(row, reset_peak=False):  # GPU busy share over the training steps only
            if profile:
                with torch_profiler() as prof:
                    trainer.train()
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15,
                                                max_name_column_width=50))
                print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=12,
                                                max_name_column_width=50))
            else:
                trainer.train()
        row["train_s"] = round(time.perf_counter() - start, 2)  # every step, a compile included
    losses = [round(h["loss"], 5) for h in trainer.state.log_history if "loss" in h]
    graphs = trainer.layer_graphs
    del trainer
    late = times.ends[max(warmup, 1) - 1:]  # the step ends from the last warm-up step's on
    row.update(period_s=(late[-1] - late[0]) / (len(late) - 1) if len(late) > 1 else None)
    row.update(step_s=statistics.median(times.times[warmup:]), checkpointed=f"{speed.checkpointed_layers}/"
               f"{speed.layers}", adapter_dtype=speed.adapter_dtype, liger=speed.liger, estimate_gib=speed.estimate_gib,
               dequantised=speed.dequantised, graphed=speed.graphed, dropout=hp["lora_dropout"], losses=losses,
               layer_graphs=graphs and graphs.report())
    return row


def launched(args: tuple, kwargs: dict, ranks: int, workdir: Path, name: str, env: dict | None = None) -> dict:
    """``ours(*args, **kwargs)`` on ``ranks`` processes started by torch's launcher (``workers.run_ranked``, as
    notebook 05's ``gpus_per_arm``): rank k on the k-th visible GPU (gloo processes on a CPU). With one rank, on the
    first GPU alone: in this process, with several GPUs visible, the Trainer would wrap the model in
    ``nn.DataParallel``, which TRL's SFTTrainer refuses. ``env``: variables for the launched processes only (this
    process's environment is as it was afterwards). Rank 0's row; the ranks' log stays in ``workdir`` if they
    fail."""
    import importlib
    from unittest import mock

    from helpers import workers

    here = str(Path(__file__).resolve().parent)  # the ranks import this file as `training`, not as __main__
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if here not in paths:  # once, however many rows call this
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, *paths) if p)
    this = importlib.import_module("training")
    # with one rank, the launched process gets the first GPU; CUDA in this process started already and keeps its GPUs
    first = {"CUDA_VISIBLE_DEVICES": workers.visible_gpus()[0]} if ranks == 1 else {}
    with mock.patch.dict(os.environ, {**first, **(env or {})}):
        return workers.run_ranked(this.ours, args, kwargs, ranks, workdir, name)


def ddp(folder: Path, setup: models.Setup, data, hp: dict, ranks: int, warmup: int, workdir: Path) -> dict:
    """``ours`` with the default plan on ``ranks`` processes at once (``launched``): the speed plan made once, here,
    for a rank's share of a batch, and each rank takes ``train_batch_size / ranks`` rows of every step, so the steps
    and the effective batch are the single process's."""
    plan = sp.speed_plan(str(folder), setup, hp, 0, ranks=ranks)
    return launched((folder, setup, data, hp, plan, 0, warmup), {}, ranks, workdir, f"the DDP row on {ranks} ranks")


def plain(folder: Path, setup: models.Setup, data, hp: dict, warmup: int) -> dict:
    """peft + bitsandbytes by hand: bf16 (or fp32 on CPU) LoRA, every layer checkpointed, AdamW, no Trainer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    row = {}
    tok = AutoTokenizer.from_pretrained(folder)
    with measured(row):
        model = models.load_base(str(folder), setup)
        model = get_peft_model(model, LoraConfig(r=hp["lora_rank"], lora_alpha=hp["lora_alpha"], lora_dropout=0.0,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
        sp.cast_adapters(model, "bfloat16" if setup.compute_dtype == "bfloat16" else "float32")
        model.get_base_model().activation_checkpointing_enable({"use_reentrant": False})
        model.enable_input_require_grads()
        model.train()
        optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp["learning_rate"])
        times = []
        batch = hp["train_batch_size"]
        for first in range(0, len(data) - batch + 1, batch):  # every conversation is cut to exactly max_length
            ids = torch.tensor([tok.apply_chat_template(data[i]["messages"], tokenize=True, return_dict=False)
                                [: hp["max_length"]] for i in range(first, first + batch)], device=setup.device)
            if setup.device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optim.step()
            optim.zero_grad(set_to_none=True)
            if setup.device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    del model, optim
    row.update(step_s=statistics.median(times[warmup:]), checkpointed="all", adapter_dtype="bf16/fp32 by device",
               liger=False, dropout=0.0)
    return row


def uses_liger(label: str) -> bool:
    """Whether a row trains with Liger's kernels. Liger patches transformers' model classes for the whole process
    (docs/performance.md), so a row without it that ran after one with it would train on Liger's RMSNorm and SwiGLU
    all the same (seen on 2026-12-01: a "no Liger" row's traceback passed through ``LigerRMSNorm``): those rows run
    first. A DDP row runs in processes of its own and is left where it is."""
    return not any(t in label for t in ("helpers, before", "no Liger", "plain loop"))


def graphed(folder, setup, data, hp, warmup, workdir: Path) -> dict:
    """A row compiled per layer without Liger, in inductor's "reduce-overhead" mode (CUDA graphs), in a process of
    its own (``launched``): a failed capture spoils the rows after it in the same process, and Liger's patches of an
    earlier row would reach it. The mode reaches accelerate's dynamo plugin through the environment, as
    ``TrainingArguments(torch_compile_mode=...)`` passes it."""
    return launched((folder, setup, data, hp, None, 0, warmup),
                    {"compiled": "regional", "liger": False, "graphed": False}, 1, workdir, "a CUDA-graphs row",
                    env={"ACCELERATE_DYNAMO_MODE": "reduce-overhead"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, a tiny Llama, a few steps (seconds)")
    parser.add_argument("--shapes", nargs="+", default=["llama-3.1-8b", "qwen2.5-0.5b"], choices=sorted(SHAPES))
    parser.add_argument("--length", type=int, default=2048, help="tokens per conversation (max_length)")
    parser.add_argument("--batch", type=int, default=1, help="conversations per step (the real track: 16 of 384)")
    parser.add_argument("--compiled", action="store_true",
                        help="add rows with torch.compile (Speed.compiled): the whole model, and each decoder layer")
    parser.add_argument("--graphs", action="store_true",
                        help="add rows compiled per layer, no Liger, in CUDA graphs (mode reduce-overhead), with "
                             "the base in 4 bits and unquantised")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="run only the rows whose label holds one of these texts, or ends with one ending in $ "
                             "(e.g. 'default$' 'graphs')")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget", type=float, default=12.0, help="GiB for the 'budget' row of the 8B shape")
    parser.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "bench-models")
    parser.add_argument("--profile", action="store_true", help="add a profiled row: top ops by CPU and GPU time")
    parser.add_argument("--unquantised", action="store_true",
                        help="add a row of the default plan on the base unquantised (LoRA, quantization: none)")
    parser.add_argument("--ranks", type=int, default=1,
                        help="add a row with the default plan data parallel on this many GPUs (DDP; gloo on a CPU)")
    parser.add_argument("--ddp-only", action="store_true",
                        help="with --ranks: only the single process's default row and the DDP row")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.ranks < 1 or args.batch % args.ranks:
        parser.error(f"--ranks {args.ranks} must be 1 or more and divide --batch {args.batch}: each rank takes an "
                     "equal share")
    if args.ranks > 1 and torch.cuda.is_available() and not args.smoke and torch.cuda.device_count() < args.ranks:
        parser.error(f"--ranks {args.ranks}: this machine shows {torch.cuda.device_count()} GPU(s); one rank a GPU")
    if args.smoke:
        args.shapes, args.length, args.steps, args.warmup = ["tiny-llama"], 128, 4, 1
    json_path = args.json or Path("outputs/bench") / ("training-smoke.json" if args.smoke else "training.json")
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.graphs and device == "cpu":
        parser.error("--graphs needs a GPU: its rows replay CUDA graphs")
    setup, bare = models.choose_setup("nf4", device), models.choose_setup("none", device)  # 4-bit, unquantised
    rows = []

    def one(*row_args, **row_kwargs) -> dict:  # a Trainer row on one GPU: here, or launched on the first of several
        if device == "cpu" or torch.cuda.device_count() == 1:
            return ours(*row_args, **row_kwargs)
        return launched(row_args, row_kwargs, 1, json_path.parent / "one-gpu-rows", "a one-GPU row")

    for name in args.shapes:
        folder = model_folder(name, args.models, device)
        data = conversations(standins.tokenizer(SHAPES[name][0]), args.steps * args.batch, args.length)
        hp = dict(lora_rank=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", train_embeddings=False,
                  max_steps=args.steps, train_batch_size=args.batch, learning_rate=1e-4, max_length=args.length)
        plan = sp.speed_plan(str(folder), setup, hp)
        before = sp.Speed("float32", False, plan.layers, plan.layers, 0.0, plan.budget_gib)
        variants = [("helpers, before", lambda: one(folder, setup, data, {**hp, "lora_dropout": 0.05}, before, 0,
                                                    args.warmup)),
                    ("helpers, default", lambda: one(folder, setup, data, hp, None, 0, args.warmup)),
                    ("helpers, default, 4-bit layers", lambda: one(folder, setup, data, hp, None, 0, args.warmup,
                                                                   dequantise=False)),
                    ("helpers, default, layers not graphed", lambda: one(folder, setup, data, hp, None, 0,
                                                                         args.warmup, graphed=False))]
        if args.ddp_only:  # the single process's default row and the DDP row, nothing else
            variants = variants[1:2]
        elif device == "cuda" and name == "llama-3.1-8b":
            variants.append((f"helpers, budget {args.budget:g} GiB",
                             lambda: one(folder, setup, data, hp, None, args.budget, args.warmup)))
        if args.unquantised and not args.ddp_only:  # what 4-bit costs per step: the same plan, no bitsandbytes
            variants.append(("helpers, default, unquantised base",
                             lambda: one(folder, bare, data, hp, None, 0, args.warmup)))
        if args.compiled and not args.ddp_only:  # the whole model; each decoder layer (with Liger's kernels and not)
            variants += [("helpers, compiled", lambda: one(folder, setup, data, hp, None, 0, args.warmup,
                                                           compiled=True, graphed=False)),
                         ("helpers, compiled per layer", lambda: one(folder, setup, data, hp, None, 0, args.warmup,
                                                                     compiled="regional", graphed=False)),
                         ("helpers, compiled per layer, no Liger",
                          lambda: one(folder, setup, data, hp, None, 0, args.warmup, compiled="regional", liger=False,
                                      graphed=False))]
            if args.unquantised:  # the same per layer on the unquantised base: no bitsandbytes op to break its graphs
                variants += [(f"helpers, compiled per layer{', no Liger' * (not lg)}, unquantised base",
                              lambda lg=lg: one(folder, bare, data, hp, None, 0, args.warmup, compiled="regional",
                                                graphed=False, **({} if lg else {"liger": False})))
                          for lg in (True, False)]
        if args.graphs and not args.ddp_only:  # each layer's forward and backward replayed as CUDA graphs
            variants += [(f"helpers, compiled per layer, no Liger, CUDA graphs{', unquantised base' * (s is bare)}",
                          lambda s=s: graphed(folder, s, data, hp, args.warmup, json_path.parent / "graphed-rows"))
                         for s in (setup, bare)]
        if args.profile and not args.ddp_only:
            variants.append(("helpers, default (profiled)",
                             lambda: one(folder, setup, data, {**hp, "max_steps": args.warmup + 2}, None, 0,
                                         args.warmup, profile=True)))
        if args.ranks > 1:  # the default plan data parallel: the same batch split among the ranks (workers.run_ranked)
            variants.append((f"helpers, default, DDP on {args.ranks} ranks",
                             lambda: ddp(folder, setup, data, hp, args.ranks, args.warmup,
                                         json_path.parent / f"ddp-ranks-{name}")))
        if not args.ddp_only:
            variants.append(("plain loop", lambda: plain(folder, setup, data, hp, args.warmup)))
        if args.only:
            variants = [(label, run) for label, run in variants if chosen(label, args.only)]
        variants.sort(key=lambda v: uses_liger(v[0]))  # (stable) rows without Liger first: see uses_liger
        first = None
        for label, run in variants:
            try:
                row = {"shape": name, "variant": label, **run()}
            except Exception as err:  # the rows measured so far are kept (a DDP row can fail where one GPU does not)
                print(f"  {name} {label}: failed: {type(err).__name__}: {str(err)[:2000]}", flush=True)
                rows.append({"shape": name, "variant": label, "error": f"{type(err).__name__}: {str(err)[:2000]}"})
                continue
            row["tok_per_s"] = round(args.length * args.batch / row["step_s"], 1)
            if row.get("period_s"):
                row["tok_per_s_period"] = round(args.length * args.batch / row["period_s"], 1)
                row["period_s"] = round(row["period_s"], 4)
            first = first or row["tok_per_s"]
            row["vs_first"] = round(row["tok_per_s"] / first, 2)
            row["step_s"] = round(row["step_s"], 4)
            if label.startswith(("helpers, default, DDP", "helpers, default, 4-bit", "helpers, default, layers not")):
                single = next((r for r in rows if r["shape"] == name and r["variant"] == "helpers, default"
                               and "tok_per_s" in r), None)
                if single is not None:  # (a failed single row leaves the DDP row standing alone)
                    row["vs_single"] = round(row["tok_per_s"] / single["tok_per_s"], 2)
                    row["loss_max_diff"] = round(max(abs(a - b) for a, b in zip(single["losses"], row["losses"],
                                                                                 strict=True)), 5)
            rows.append(row)
            print(f"  {name} {label}: {row['tok_per_s']:,.0f} tok/s, peak {row['peak_gib']} GiB", flush=True)
            gc.collect()
            torch._dynamo.reset()  # a compiled row's graphs and caches are not the next row's
            if device == "cuda":
                torch.cuda.empty_cache()
    report(rows, ["shape", "variant", "tok_per_s", "tok_per_s_period", "vs_first", "vs_single", "step_s",
                  "peak_gib", "estimate_gib", "gpu_busy", "train_s", "checkpointed", "dequantised", "graphed",
                  "adapter_dtype", "liger", "dropout", "loss_max_diff", "error"], json_path, device=device,
           tokens_per_step=args.length * args.batch, steps=args.steps, warmup=args.warmup, setup=asdict(setup))


if __name__ == "__main__":
    main()
