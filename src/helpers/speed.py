"""How stage 05 trains fast on this machine: the speed plan (``Speed``) of each arm, recorded in its metrics.

On a GPU four choices decide the speed: bf16 adapters under bf16 compute (fp32 adapters would be cast at every use),
Liger's fused kernels where installed and supported, activation checkpointing on only as many decoder layers as the
memory budget requires (``speed_plan``, from ``memory_estimate``), and a 4-bit base dequantised once where its
dequantised weights fit the budget too (``Speed.dequantised``). On a CPU the plan is fp32 adapters, no Liger, the
base dequantised where it fits and, in the lab, no checkpointing. ``numerics`` names the parts that change the
arithmetic (part of an adapter's settings); checkpointing only recomputes, and the dequantised base holds the values
bitsandbytes' layers compute with. docs/performance.md has the measurements.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .models import Setup


@dataclass(frozen=True)
class Speed:
    """How one arm is trained fast on this machine; recorded in its metrics (``speed``)."""

    adapter_dtype: str  # dtype of the trainable weights: "bfloat16" (GPU, bf16 compute) or "float32"
    liger: bool  # Liger kernels (needs the liger-kernel package, CUDA and a supported architecture)
    checkpointed_layers: int  # decoder layers with activation checkpointing (0: none)
    layers: int  # decoder layers in the model
    estimate_gib: float  # predicted peak device memory with this plan
    budget_gib: float  # the memory it had to fit in
    # torch.compile through the Trainer's torch_compile, every batch padded to max_length (one shape, no recompiles):
    # True compiles the whole model, "regional" each decoder layer on its own (accelerate's regional compilation)
    compiled: bool | str = False
    accumulation: int = 1  # micro-batches per optimizer step (gradient accumulation): the batch in this many parts
    # a 4-bit base dequantised once into the compute dtype before training (``qlora_training``): the NF4 values
    # bitsandbytes' layers dequantise at every step, without that work and its per-layer Python on each step
    dequantised: bool = False
    # each decoder layer's forward and backward recorded once as CUDA graphs and replayed (``layer_graphs``), every
    # batch padded to max_length: a small model's step is bound by launching its kernels (one launch a layer instead)
    graphed: bool = False

    def __post_init__(self):
        if self.compiled and self.graphed:
            raise ValueError("Speed: compiled and graphed are both set; choose one (graphed=False to compile)")


def text_config(base_path: str):
    """The model's (text) config: shape, vocabulary and model type."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_path)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def liger_available(model_type: str) -> bool:
    """Whether Liger kernels are installed and cover ``model_type`` (they need Triton, so CUDA)."""
    try:
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except Exception:  # not installed, or no Triton
        return False
    return model_type in MODEL_TYPE_TO_APPLY_LIGER_FN


def memory_estimate(config, setup: Setup, hp: dict, checkpointed: int, liger: bool, adapter_bytes: int,
                    dequantised: bool = False) -> float:
    """Predicted peak memory (bytes) of one training step, from the model's shape and notebook 05's parameters
    (``hp``: ``lora_rank``, ``train_embeddings``, ``train_batch_size``, ``max_length``).

    Weights (NF4: about half a byte per linear weight, unless ``dequantised``; embeddings in the compute dtype),
    LoRA weights with their gradients and Adam moments, activations kept for the backward pass (``5 x hidden + 3.5 x
    intermediate`` values per token and layer, from the attention and MLP inputs and the SwiGLU intermediates; a
    checkpointed layer keeps only its input, plus one layer's worth during its recompute), and the logits with their
    fp32 copy and gradient unless Liger fuses them away. The activation term was refitted once to the Llama-3.1-8B
    shape on an H100, where ``6 x hidden + 4 x intermediate`` had put the estimate 1 to 1.6 GiB above the measured
    peaks (docs/performance.md)."""
    h, i, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    hd = getattr(config, "head_dim", None) or h // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    act = 2 if setup.device == "cuda" else 4
    linear = layers * (2 * h * heads * hd + 2 * h * kv * hd + 3 * h * i)
    embed = vocab * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    weights = linear * (0.53 if setup.quantization == "nf4" and not dequantised else act) + embed * act
    r = hp["lora_rank"]
    lora = layers * r * (2 * (h + heads * hd) + 2 * (h + kv * hd) + 3 * (h + i))
    trainable = lora + (vocab * h if hp.get("train_embeddings") else 0)
    optim = trainable * (2 * adapter_bytes + 8)
    tokens = hp["train_batch_size"] * hp["max_length"]
    full_layer = tokens * (5 * h + 3.5 * i) * act
    kept = layers - checkpointed
    activations = kept * full_layer + checkpointed * tokens * h * act + (full_layer if checkpointed else 0)
    logits = 0 if liger else tokens * vocab * (act + 8)
    return weights + optim + activations + logits


def free_memory(device: str) -> int:
    """Bytes free for training on ``device`` (the GPU's free memory; on the CPU, the memory available)."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    import psutil

    return psutil.virtual_memory().available


def numerics(config, setup: Setup) -> dict:
    """The parts of the speed plan that change the arithmetic: bf16 adapters under bf16 compute on a GPU (else
    fp32), and Liger's fused kernels on CUDA where installed and supported."""
    return {"adapter_dtype": "bfloat16" if setup.device == "cuda" and setup.compute_dtype == "bfloat16" else "float32",
            "liger": setup.device == "cuda" and liger_available(config.model_type)}


GRAPHS_SWITCH = "HELPERS_CUDA_GRAPHS"  # set to 0: no plan records the layers as CUDA graphs (worker processes too)


def speed_plan(base_path: str, setup: Setup, hp: dict, memory_budget_gib: float = 0, ranks: int | None = None,
               dequantise: bool = True, graphs: bool = True) -> Speed:
    """The fastest settings that fit: bf16 adapters under bf16 compute, Liger where available, and activation
    checkpointing on the fewest layers whose estimated peak stays within 90% of the budget (``memory_budget_gib``,
    0 for the device's free memory). When even full checkpointing does not fit the batch, the batch is split into
    micro-batches with gradient accumulation (2, 3, 4... parts that divide it: the same effective batch and
    optimizer steps, each part costing another pass of per-step overhead), again with the fewest checkpointed layers
    that fit. When nothing fits, every layer is checkpointed, one row at a time. With ``dequantise``, a 4-bit base
    is then dequantised once (``Speed.dequantised``) if the plan still fits with its weights in the compute dtype (2
    bytes a weight on a GPU, 4 on a CPU, against about half a byte): the same weights, without bitsandbytes'
    dequantising at every layer and step (on one H200, SmolLM2 at 16 x 384 tokens took 0.157 s a step against 0.203 s
    in 4-bit layers, docs/performance.md). SDFT arms keep the 4-bit layers (``dequantise=False``): they sample their
    own answers, and bitsandbytes' fused kernel for a few rows rounds otherwise than a dequantised product, so a
    sampled token could change. With ``graphs``, on a GPU, each decoder layer is recorded as CUDA graphs
    (``Speed.graphed``, ``layer_graphs``) where a step can replay them: no checkpointing, no micro-batches, no 4-bit
    layers, one rank; the environment's ``HELPERS_CUDA_GRAPHS=0`` turns that off. ``ranks``: the data-parallel processes sharing each batch (default: this process's
    ``WORLD_SIZE``); the plan is for one rank's share."""
    config = text_config(base_path)
    adapter, liger = numerics(config, setup).values()
    budget = memory_budget_gib * 2**30 if memory_budget_gib and memory_budget_gib > 0 else free_memory(setup.device)
    layers = config.num_hidden_layers
    adapter_bytes = 2 if adapter == "bfloat16" else 4
    from .workers import world

    ranks = ranks or world()[2]
    batch = hp["train_batch_size"] // ranks  # under DDP, a rank's share

    def estimate(parts: int, checkpointed: int, dequantised: bool = False) -> float:
        return memory_estimate(config, setup, {**hp, "train_batch_size": batch // parts}, checkpointed, liger,
                               adapter_bytes, dequantised)

    # checkpointing first (a recompute costs at most a third of a step), micro-batches only when it is not enough
    plans = [(parts, n) for parts in range(1, batch + 1) if batch % parts == 0 for n in range(layers + 1)]
    parts, chosen = next(((p, n) for p, n in plans if estimate(p, n) <= 0.9 * budget), (batch, layers))
    # the base dequantised only where that costs no checkpointing and no micro-batches: memory buys those first
    dequantised = dequantise and setup.quantization == "nf4" and estimate(parts, chosen, True) <= 0.9 * budget
    graphed = (graphs and os.environ.get(GRAPHS_SWITCH) != "0" and setup.device == "cuda" and chosen == 0
               and parts == 1 and ranks == 1 and (dequantised or setup.quantization != "nf4"))
    return Speed(adapter, liger, chosen, layers, round(estimate(parts, chosen, dequantised) / 2**30, 2),
                 round(budget / 2**30, 2), accumulation=parts, dequantised=dequantised, graphed=graphed)


def side_by_side(jobs: int, workers: int, base_path: str, setup: Setup, hp: dict, memory_budget_gib: float = 0,
                 gpus_per_arm: int = 1):
    """Where ``jobs`` trainings run (``workers.plan``, ``workers``: 0 chooses) and the memory each may take:
    ``(plan, memory_budget_gib)``. On GPUs as many side by side as fit by this speed plan's estimate and as the
    cores allow (a training over ``gpus_per_arm`` GPUs keeps that many cores busy, and takes a group of GPUs); on a
    CPU one. The budget is the given one, else each training's share of a GPU it shares (0: the free memory)."""
    from . import workers as workers_service

    cuda = setup.device == "cuda"
    # packed by the 4-bit estimate: each training's share of the memory then decides whether its base is dequantised
    estimate = speed_plan(base_path, setup, hp, memory_budget_gib, dequantise=False).estimate_gib if cuda else 0.0
    free = (memory_budget_gib or free_memory(setup.device) / 2**30) if cuda else 0.0
    cpus = workers_service.cores_each(gpus_per_arm)
    plan = workers_service.plan(jobs, workers, setup.device, estimate, free, cpus=cpus,
                                gpus=workers_service.gpu_groups(gpus_per_arm, setup.device))
    return plan, memory_budget_gib or plan.memory_budget_gib


def cast_adapters(model, dtype: str) -> None:
    """Put the trainable weights in ``dtype`` ("float32" or "bfloat16").

    TRL casts every trainable parameter of a quantised model to bf16, and peft makes new adapters fp32. fp32 is the
    usual mixed-precision master copy and what the CPU needs: there a bf16 embedding would feed bf16 into fp32 layers
    (a dtype error at generation) and lose small optimizer updates. Under bf16 compute on a GPU, bf16 adapters save
    the casts autocast would make at every use (docs/performance.md)."""
    target = getattr(torch, dtype)
    for param in model.parameters():
        if param.requires_grad and param.dtype != target:
            param.data = param.data.to(target)


def one_shape(trainer, speed: Speed) -> None:
    """For a compiled or graphed plan, every batch of ``trainer`` padded to one length: the longest of its tokenized
    rows (at most ``max_length``, where ``arm_sft_config`` pads them, since TRL cuts rows there): in the GPU real
    track (docs/bench/smollm2-gpu-exposure) an arm's rows averaged 62 to 135 tokens against a ``max_length`` of
    384. The padding is masked: the loss is unchanged."""
    if not (speed.compiled or speed.graphed):
        return
    collator, columns = trainer.data_collator, trainer.train_dataset.column_names
    if not hasattr(collator, "pad_to_multiple_of") or "input_ids" not in columns:
        raise ValueError(f"Speed.compiled / graphed pad every batch to one length, but {type(collator).__name__} "
                         f"has no pad_to_multiple_of or the tokenized rows no input_ids ({columns}): train with "
                         "Speed.compiled = False and Speed.graphed = False")
    collator.pad_to_multiple_of = max(map(len, trainer.train_dataset["input_ids"]))


def partial_checkpointing_callback(kept: int):
    """A Trainer callback that leaves the last ``kept`` decoder layers without activation checkpointing."""
    from transformers import TrainerCallback

    class PartialCheckpointing(TrainerCallback):
        """Turn activation checkpointing off again on the last ``kept`` decoder layers once the Trainer has enabled
        it on all of them (at the start of training): they keep their activations and skip the recompute."""

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            from transformers.modeling_layers import GradientCheckpointingLayer

            blocks = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
            for block in blocks[len(blocks) - kept:] if kept else ():
                block.gradient_checkpointing = False
            return control

    return PartialCheckpointing()


@contextmanager
def regional_compilation(compiled: bool | str):
    """While a Trainer is built for ``Speed.compiled``: accelerate's regional compilation (each repeated decoder layer
    compiled on its own, the rest apart) for "regional", the whole model for True. The Trainer builds its accelerate
    dynamo plugin from its ``torch_compile`` arguments, and the plugin reads this one setting from the environment
    only, then; the environment is restored afterwards. Uncompiled, nothing is set."""
    if compiled not in (False, True, "regional"):
        raise ValueError(f"Speed.compiled = {compiled!r}: give False, True (the whole model) or 'regional'")
    name = "ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION"
    before = os.environ.get(name)
    if compiled:
        os.environ[name] = "1" if compiled == "regional" else "0"
    try:
        yield
    finally:
        if compiled and before is None:
            os.environ.pop(name, None)
        elif compiled:
            os.environ[name] = before
