"""Stage 05: QLoRA fine-tuning of the base model on every arm from stage 04 (TRL ``SFTTrainer`` + peft + bitsandbytes).

Every arm is trained with the same hyperparameters, the same number of steps and the same seed, with the loss on
assistant tokens only, so differences in stage 06 come from the data alone. Per arm and seed this writes
``outputs/<run>/05_training/arms/<arm>/seed<k>/``: the LoRA adapter (``adapter_model.safetensors``), the trainer's
log history and a ``metrics.json`` with ``train_seconds``, ``final_loss``, ``quantization``, ``trainable_params``.
A finished arm is skipped when it is run again with the same settings, so an interrupted notebook resumes; an arm
trained again with other settings first moves its adapter to ``previous/<settings key>/``, from where it comes back
if those settings are asked for again (nothing trained is overwritten).

Loss on the answer only, for any chat template (``loss_format``): TRL masks the loss to assistant tokens through the
template's ``{% generation %}`` markers, and patches the templates it knows (Qwen, Llama 3, Gemma, ...). For any
other template (SmolLM2's ChatML, for one) the conversations are handed to TRL as prompt/completion pairs instead,
and TRL trains on the completion: the answer and the tokens that end its turn. Which one ran is recorded.

Compute (``choose_setup``): bf16 on GPUs that support it, fp16 on older ones (T4), fp32 on CPU. The 4-bit NF4
base (double quantisation) is used wherever bitsandbytes can quantise on the device -- bitsandbytes 0.50 does on
CPU -- and plain LoRA on the unquantised base otherwise, with a notice; ``metrics.json`` records which ran.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import arms
from .datafiles import fingerprint
from .models import model_fingerprint, native_bf16
from .runs import read_json, require, save_figure, stage_dir, write_json

STAGE = "05_training"
QUANTIZATIONS = ("nf4", "none")


@dataclass(frozen=True)
class Setup:
    """Where and how training runs; recorded in every arm's metrics."""

    device: str  # "cuda" or "cpu"
    compute_dtype: str  # "bfloat16", "float16" or "float32"
    quantization: str  # "nf4" (4-bit NF4 + double quantisation) or "none" (plain LoRA)
    notice: str = ""  # why the setup differs from what was asked, if it does

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.compute_dtype)


def bnb_4bit_works(device: str) -> str:
    """Empty string when bitsandbytes quantises a layer to NF4 on ``device`` and computes with it; else the reason."""
    try:
        import bitsandbytes as bnb

        torch.manual_seed(0)
        dense = torch.nn.Linear(64, 64, bias=False)
        layer = bnb.nn.Linear4bit(64, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        layer.weight = bnb.nn.Params4bit(dense.weight.data.clone(), requires_grad=False, quant_type="nf4")
        layer = layer.to(device)
        x = torch.randn(4, 64, device=device)
        err = (layer(x) - dense.to(device)(x)).norm() / dense(x).norm()
        if not torch.isfinite(err) or err > 0.2:
            return f"bitsandbytes 4-bit output is off by {float(err):.0%} on {device}"
        return ""
    except Exception as exc:  # ImportError, missing kernels, unsupported device...
        return f"bitsandbytes cannot run 4-bit on {device}: {type(exc).__name__}: {exc}"


def choose_setup(quantization: str = "nf4", device: str = "auto") -> Setup:
    """Pick device, compute dtype and quantisation; fall back to plain LoRA (with a notice) where 4-bit cannot run."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; set the `device` parameter of notebook 05 to "
                         "'auto' or 'cpu'")
    if device == "cuda":
        dtype = "bfloat16" if native_bf16() else "float16"
    else:
        dtype = "float32"  # CPU: bf16/fp16 autocast is slow or unsupported for these ops
    notice = ""
    if quantization == "nf4":
        reason = bnb_4bit_works(device)
        if reason:
            notice = f"{reason}; falling back to plain LoRA on the unquantised base model"
            warnings.warn(notice)
            quantization = "none"
    return Setup(device, dtype, quantization, notice)


def load_base(path: str, setup: Setup):
    """The base model for training or evaluation: 4-bit NF4 with double quantisation, or unquantised."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": setup.dtype if setup.device == "cuda" else torch.float32}
    if setup.quantization == "nf4":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=setup.dtype)
        if setup.device == "cuda":
            kwargs["device_map"] = {"": 0}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    return model if setup.quantization == "nf4" else model.to(setup.device)


@dataclass(frozen=True)
class Speed:
    """How one arm is trained fast on this machine; recorded in its metrics (``speed``)."""

    adapter_dtype: str  # dtype of the trainable weights: "bfloat16" (GPU, bf16 compute) or "float32"
    liger: bool  # Liger kernels (needs the liger-kernel package, CUDA and a supported architecture)
    checkpointed_layers: int  # decoder layers with activation checkpointing (0: none)
    layers: int  # decoder layers in the model
    estimate_gib: float  # predicted peak device memory with this plan
    budget_gib: float  # the memory it had to fit in


def _text_config(base_path: str):
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


def memory_estimate(config, setup: Setup, hp: dict, checkpointed: int, liger: bool, adapter_bytes: int) -> float:
    """Predicted peak memory (bytes) of one training step, from the model's shape.

    Weights (NF4: about half a byte per linear weight; embeddings in the compute dtype), LoRA weights with their
    gradients and Adam moments, activations kept for the backward pass (``5 x hidden + 3.5 x intermediate`` values
    per token and layer, from the attention and MLP inputs and the SwiGLU intermediates; a checkpointed layer keeps
    only its input, plus one layer's worth during its recompute), and the logits with their fp32 copy and gradient
    unless Liger fuses them away. The activation term was refitted once to the Llama-3.1-8B shape on an H100, where
    ``6 x hidden + 4 x intermediate`` had put the estimate 1 to 1.6 GiB above the measured peaks
    (docs/performance.md)."""
    h, i, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
    heads = config.num_attention_heads
    hd = getattr(config, "head_dim", None) or h // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    act = 2 if setup.device == "cuda" else 4
    linear = layers * (2 * h * heads * hd + 2 * h * kv * hd + 3 * h * i)
    embed = vocab * h * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    weights = linear * (0.53 if setup.quantization == "nf4" else act) + embed * act
    r = hp["rank"]
    lora = layers * r * (2 * (h + heads * hd) + 2 * (h + kv * hd) + 3 * (h + i))
    trainable = lora + (vocab * h if hp.get("train_embeddings") else 0)
    optim = trainable * (2 * adapter_bytes + 8)
    tokens = hp["batch_size"] * hp["max_length"]
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


def speed_plan(base_path: str, setup: Setup, hp: dict, memory_budget_gib: float = 0) -> Speed:
    """The fastest settings that fit: bf16 adapters under bf16 compute, Liger where available, and activation
    checkpointing on the fewest layers whose estimated peak stays within 90% of the budget (``memory_budget_gib``,
    0 for the device's free memory). When even full checkpointing does not fit, every layer is checkpointed."""
    config = _text_config(base_path)
    adapter, liger = numerics(config, setup).values()
    budget = memory_budget_gib * 2**30 if memory_budget_gib and memory_budget_gib > 0 else free_memory(setup.device)
    layers = config.num_hidden_layers
    adapter_bytes = 2 if adapter == "bfloat16" else 4
    chosen = layers
    for n in range(layers + 1):  # fewest checkpointed layers first: each costs a recompute of its forward pass
        if memory_estimate(config, setup, hp, n, liger, adapter_bytes) <= 0.9 * budget:
            chosen = n
            break
    estimate = memory_estimate(config, setup, hp, chosen, liger, adapter_bytes)
    return Speed(adapter, liger, chosen, layers, round(estimate / 2**30, 2), round(budget / 2**30, 2))


def lora_config(model, rank: int, alpha: int, dropout: float, target_modules: str | list[str],
                train_embeddings: bool):
    """LoRA on ``target_modules``; with ``train_embeddings`` the input embedding is trained in full as well (and,
    when tied, the output layer with it) -- needed when the domain uses tokens the base model never produced."""
    from peft import LoraConfig

    extra = {}
    if train_embeddings:
        embed = model.get_input_embeddings()
        name = next(n for n, m in model.named_modules() if m is embed).rsplit(".", 1)[-1]
        extra = {"modules_to_save": [name], "ensure_weight_tying": bool(model.config.tie_word_embeddings)}
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      task_type="CAUSAL_LM", **extra)


def train_only_rows(model, token_ids: list[int]) -> None:
    """Let training change only these rows of the trained embedding copy (and so, when tied, of the output layer):
    the other rows' gradients are zeroed, so AdamW (no weight decay) leaves them exactly as the base has them.

    peft's own ``trainable_token_indices`` would do this, but with tied embeddings it wraps the output layer, whose
    weight TRL 1.16's fused LM head then cannot read (``'TrainableTokensWrapper' object has no attribute 'bias'``);
    a gradient mask on the full copy keeps the output layer a plain tied ``Linear``."""
    weight = model.get_input_embeddings().weight
    keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    keep[list(token_ids)] = 1
    weight.register_hook(lambda grad: grad * keep)


EMBEDDING_ROWS = ("all", "domain")


def domain_token_ids(tokenizer, dataset) -> list[int]:
    """The token ids of the arm's domain rows (``source == "domain"``) under the chat template: the embedding rows
    ``embedding_rows = "domain"`` trains. Every arm of notebook 04 shares the same domain rows, so every arm trains
    the same rows; an arm without domain rows trains none."""
    if "source" not in dataset.column_names:
        raise ValueError("embedding_rows = 'domain' needs each training row's 'source' ('domain' or 'general'), "
                         "which notebook 04's arms have: train an arm of notebook 04, or set embedding_rows = 'all'")
    ids: set[int] = set()
    for source, messages in zip(dataset["source"], dataset["messages"]):
        if source == "domain":
            ids.update(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
    return sorted(ids)


LOSS_FORMATS = ("messages", "prompt_completion")


def loss_format(tokenizer) -> str:
    """``"messages"`` when TRL can mask the loss to assistant turns with this chat template (it has generation
    markers, or TRL ships a patched version of it); else ``"prompt_completion"``."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
        return "messages"
    except ValueError:  # "not training-compatible ... and patching is not supported for this template"
        return "prompt_completion"


def to_prompt_completion(dataset):
    """Conversations as TRL's conversational prompt/completion pairs: every turn but the last is the prompt, the last
    (assistant) turn the completion that the loss is computed on."""
    last = dataset["messages"]
    bad = [i for i, msgs in enumerate(last) if not msgs or msgs[-1]["role"] != "assistant"]
    if bad:
        raise ValueError(f"training row {bad[0]} does not end with an assistant turn: {last[bad[0]]!r}")
    return dataset.map(lambda row: {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]},
                       remove_columns=["messages"])


def training_arguments(output_dir: Path, setup: Setup, *, max_steps: int, batch_size: int, learning_rate: float,
                       seed: int, warmup_steps: int = 10, progress: bool = True, speed: Speed | None = None) -> dict:
    """The Trainer arguments every arm shares, SFT (``sft_config``) or SDFT (``make_sdft_trainer``)."""
    return dict(
        output_dir=str(output_dir), max_steps=max_steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=min(warmup_steps, max_steps // 10),
        logging_steps=max(1, -(-max_steps // 30)),  # about 30 points on the loss curve; LogLastStep adds the last one
        save_strategy="no", report_to=[], seed=seed, data_seed=seed, use_cpu=setup.device == "cpu",
        bf16=setup.compute_dtype == "bfloat16", fp16=setup.compute_dtype == "float16",
        dataloader_num_workers=0, disable_tqdm=not progress,
        activation_checkpointing=bool(speed and speed.checkpointed_layers),
    )


def sft_config(output_dir: Path, setup: Setup, *, max_steps: int, batch_size: int, learning_rate: float,
               max_length: int, seed: int, warmup_steps: int = 10, progress: bool = True,
               assistant_only_loss: bool = True, speed: Speed | None = None):
    from trl import SFTConfig

    return SFTConfig(
        **training_arguments(output_dir, setup, max_steps=max_steps, batch_size=batch_size,
                             learning_rate=learning_rate, seed=seed, warmup_steps=warmup_steps, progress=progress,
                             speed=speed),
        assistant_only_loss=assistant_only_loss, max_length=max_length,
        activation_checkpointing_kwargs={"use_reentrant": False}, use_liger_kernel=bool(speed and speed.liger),
    )


def _log_last_step_callback():
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        """Log at the last step too, so ``final_loss`` is the loss at the end of training (averaged since the
        previous log) whatever ``logging_steps`` is."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


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


def _partial_checkpointing_callback(kept: int):
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


HP_PARAMETERS = {"rank": "lora_rank", "alpha": "lora_alpha", "dropout": "lora_dropout", "max_steps": "max_steps",
                 "batch_size": "train_batch_size", "learning_rate": "learning_rate", "max_length": "max_length",
                 "embedding_rows": "embedding_rows"}


def check_hp(hp: dict) -> None:
    """Refuse settings that would train nothing or nonsense, naming notebook 05's parameter (``max_steps = 0``
    would otherwise train one step and let notebook 06 report the result as a fine-tune)."""
    rules = {"rank": (lambda v: v >= 1, "at least 1"), "alpha": (lambda v: v > 0, "above 0"),
             "dropout": (lambda v: 0 <= v < 1, "in [0, 1)"), "max_steps": (lambda v: v >= 1, "at least 1"),
             "batch_size": (lambda v: v >= 1, "at least 1"), "learning_rate": (lambda v: v > 0, "above 0"),
             "max_length": (lambda v: v >= 16, "at least 16 tokens")}
    for key, (ok, need) in rules.items():
        value = hp.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
            raise ValueError(f"{HP_PARAMETERS[key]} = {value!r}: must be {need} (notebook 05's parameters)")
    if hp.get("embedding_rows", "all") not in EMBEDDING_ROWS:
        raise ValueError(f"embedding_rows = {hp['embedding_rows']!r}: must be one of {EMBEDDING_ROWS} "
                         "(notebook 05's parameters)")
    if hp.get("embedding_rows", "all") == "domain" and not hp.get("train_embeddings"):
        raise ValueError("embedding_rows = 'domain' needs train_embeddings = True: it chooses which embedding rows "
                         "train (notebook 05's parameters)")


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def arm_dir(run_name: str, arm: str, seed: int) -> Path:
    return stage_dir(run_name, STAGE) / "arms" / arm / f"seed{seed}"


def _trainee(base_path: str, setup: Setup, hp: dict, seed: int, dataset=None):
    """What every arm's trainer starts from, SFT or SDFT: the tokenizer (with a pad token), the base model (4-bit or
    not, after seeding), the LoRA config and, with ``embedding_rows = "domain"``, the embedding rows to train
    (``dataset``'s domain tokens; None: all)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = None
    if hp["train_embeddings"] and hp.get("embedding_rows", "all") == "domain":
        rows = domain_token_ids(tokenizer, dataset)
    torch.manual_seed(seed)
    model = load_base(base_path, setup)
    return tokenizer, model, lora_config(model, hp["rank"], hp["alpha"], hp["dropout"], hp["target_modules"],
                                         hp["train_embeddings"]), rows


def make_trainer(dataset, base_path: str, setup: Setup, hp: dict, seed: int, output_dir: Path,
                 progress: bool = True, speed: Speed | None = None):
    """An ``SFTTrainer`` for one arm: base model (4-bit or not), LoRA config, loss on the answers (``loss_format``),
    adapters, Liger and checkpointing as ``speed`` says (default: ``speed_plan``)."""
    from trl import SFTTrainer

    speed = speed or speed_plan(base_path, setup, hp)
    tokenizer, model, peft_config, rows = _trainee(base_path, setup, hp, seed, dataset)
    fmt = loss_format(tokenizer)
    args = sft_config(output_dir, setup, max_steps=hp["max_steps"], batch_size=hp["batch_size"],
                      learning_rate=hp["learning_rate"], max_length=hp["max_length"], seed=seed, progress=progress,
                      assistant_only_loss=fmt == "messages", speed=speed)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c != "messages"])
    if fmt == "prompt_completion":
        dataset = to_prompt_completion(dataset)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    if 0 < speed.checkpointed_layers < speed.layers:
        trainer.add_callback(_partial_checkpointing_callback(speed.layers - speed.checkpointed_layers))
    return _finish_trainer(trainer, progress, speed, rows)


def _finish_trainer(trainer, progress: bool, speed: Speed, rows: list[int] | None = None):
    """What every arm's trainer gets once built, SFT or SDFT: the loss logged at the last step, no per-step log
    printing without progress bars (the losses are kept in log_history.json), the adapters in the plan's dtype and,
    with ``rows``, training limited to those embedding rows (``train_only_rows``)."""
    if rows is not None:
        train_only_rows(trainer.model, rows)
    trainer.add_callback(_log_last_step_callback())
    if not progress:
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    cast_adapters(trainer.model, speed.adapter_dtype)
    return trainer


# SDFT (self-distillation fine-tuning, Shenfeld et al. 2026; TRL's trl.experimental.sdft): on-policy. Each step the
# student answers the prompt itself; the teacher is the same base model (adapters off) shown the reference answer as
# a demonstration, and the loss is a divergence between their next-token distributions on the student's answer.
# Settings that are not shared with SFT; TRL's defaults otherwise (top-100 logits, alpha 0.5, teacher = base).
SDFT = {"num_generations": 1,          # one answer per prompt: a step sees batch_size distinct rows, as in SFT
        "teacher_model_kind": "base"}  # "ema" refuses trained embeddings (train_embeddings) in TRL 1.16


def method_of(arm: str) -> str:
    """How ``arm`` is trained: "sft" or "sdft" (``arms.ARMS``)."""
    return arms.get(arm).method


def sdft_dataset(dataset):
    """``messages`` rows as SDFT reads them: ``prompt`` (the conversation before the last answer) and
    ``privileged_context`` (that answer: the demonstration only the teacher sees)."""
    return dataset.map(lambda r: {"prompt": r["messages"][:-1], "privileged_context": r["messages"][-1]["content"]},
                       remove_columns=dataset.column_names)


def sdft_completion_length(hp: dict) -> int:
    """How long the student's own answers may run: half the training length, at most 128 tokens."""
    return min(128, max(8, hp["max_length"] // 2))


def make_sdft_trainer(dataset, base_path: str, setup: Setup, hp: dict, seed: int, output_dir: Path,
                      progress: bool = True, speed: Speed | None = None):
    """TRL's ``SDFTTrainer`` for one arm, with the SFT arms' base model, LoRA, steps, batch, learning rate,
    schedule, seed and speed plan (``make_trainer``'s), and ``SDFT``'s own settings."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL warns on import that the API may change
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    speed = speed or speed_plan(base_path, setup, hp)
    tokenizer, model, peft_config, rows = _trainee(base_path, setup, hp, seed, dataset)
    args = SDFTConfig(
        **training_arguments(output_dir, setup, max_steps=hp["max_steps"], batch_size=hp["batch_size"],
                             learning_rate=hp["learning_rate"], seed=seed, progress=progress, speed=speed),
        max_prompt_length=hp["max_length"], max_completion_length=sdft_completion_length(hp), **SDFT)
    trainer = SDFTTrainer(model=model, args=args, train_dataset=sdft_dataset(dataset), processing_class=tokenizer,
                          peft_config=peft_config)
    return _finish_trainer(trainer, progress, speed, rows)


def library_versions() -> dict[str, str]:
    """The versions that trained an adapter (recorded for provenance; not part of the resume key)."""
    from importlib.metadata import PackageNotFoundError, version

    def get(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return {name: get(name) for name in ("torch", "transformers", "trl", "peft", "bitsandbytes")}


def count_truncated(tokenizer, dataset, max_length: int) -> int:
    """How many conversations of ``dataset`` are longer than ``max_length`` tokens under the chat template."""
    lengths = (len(tokenizer.apply_chat_template(row, tokenize=True, return_dict=False))
               for row in dataset["messages"])
    return sum(n > max_length for n in lengths)


def _settings(dataset, base_path: str, setup: Setup, hp: dict, seed: int, method: str = "sft") -> dict:
    """Everything an adapter depends on: the base model's content, the setup, the hyperparameters, seed and data,
    and the parts of the speed plan that change the arithmetic (adapter dtype, Liger's fused kernels); checkpointing
    recomputes the same values and is left out. SDFT arms add their method and its own settings."""
    settings = {"base": model_fingerprint(base_path), "setup": {**asdict(setup), "notice": ""}, "hp": hp,
                "seed": seed, "n_rows": len(dataset), "data": fingerprint(dataset),
                "numerics": numerics(_text_config(base_path), setup)}
    if method == "sdft":
        settings["sdft"] = {**SDFT, "max_completion_length": sdft_completion_length(hp)}
    return settings


def finished(run_name: str, arm: str, dataset, base_path: str, setup: Setup, hp: dict, seed: int) -> dict | None:
    """The metrics of an adapter already trained for this arm and seed with exactly these settings, else None."""
    out = arm_dir(run_name, arm, seed)
    done = out / "metrics.json"
    if done.exists() and (out / "adapter_model.safetensors").exists():
        metrics = read_json(done)
        if metrics.get("settings_key") == settings_key(_settings(dataset, base_path, setup, hp, seed, method_of(arm))):
            return metrics
    return None


ARCHIVE = "previous"  # earlier adapters of an arm and seed, one folder per settings key


def _archive_current(out: Path) -> None:
    """Move the adapter now in ``out`` (if any) to ``out/previous/<its settings key>/``: training with other
    settings never overwrites an adapter."""
    if not (out / "metrics.json").exists():
        return
    key = read_json(out / "metrics.json").get("settings_key") or "unknown"
    dest = out / ARCHIVE / key
    dest.mkdir(parents=True, exist_ok=True)
    for item in out.iterdir():
        if item.name not in (ARCHIVE, "trainer"):  # trainer/: the scratch folder of the run about to save
            item.replace(dest / item.name)


def _restore_archived(out: Path, key: str) -> dict | None:
    """Bring back an adapter trained earlier with these settings (``out/previous/<key>/``), archiving the current
    one; its metrics, or None if there is none."""
    src = out / ARCHIVE / key
    if not ((src / "metrics.json").exists() and (src / "adapter_model.safetensors").exists()):
        return None
    _archive_current(out)
    for item in list(src.iterdir()):
        item.replace(out / item.name)
    src.rmdir()
    return read_json(out / "metrics.json")


def earlier_arms(run_name: str, datasets: dict, base_path: str, setup: Setup, hp: dict, seeds: list[int]) -> dict:
    """``{arm: [metrics per seed]}`` for the arms of ``datasets`` already trained, for every seed, with these
    settings (a rerun of notebook 05 on a few arms keeps the others in the stage summary that 06 reads)."""
    out = {}
    for arm, dataset in datasets.items():
        done = [finished(run_name, arm, dataset, base_path, setup, hp, seed) for seed in seeds]
        if all(m is not None for m in done):
            out[arm] = done
    return out


def train_arm(run_name: str, arm: str, dataset, base_path: str, setup: Setup, hp: dict, seed: int,
              progress: bool = True, memory_budget_gib: float = 0) -> dict:
    """Fine-tune the base model on one arm; save the adapter and ``metrics.json``; return the metrics.

    ``hp``: ``rank``, ``alpha``, ``dropout``, ``target_modules``, ``train_embeddings``, ``max_steps``,
    ``batch_size``, ``learning_rate``, ``max_length``. Skips training when this arm, seed and settings are done.
    ``memory_budget_gib``: the memory the step may take (0: the device's free memory), see ``speed_plan``; after an
    out-of-memory error on the GPU the arm is trained again with every layer checkpointed.
    An adapter trained with other settings is moved to ``previous/<its settings key>/`` when the new one is saved,
    and brought back (without training) when those settings are asked for again."""
    check_hp(hp)
    done = finished(run_name, arm, dataset, base_path, setup, hp, seed)
    if done is not None:
        return done
    out = arm_dir(run_name, arm, seed)
    method = method_of(arm)
    settings = _settings(dataset, base_path, setup, hp, seed, method)
    key = settings_key(settings)
    restored = _restore_archived(out, key)  # trained before with these settings, then replaced: no need to retrain
    if restored is not None:
        return restored
    speed = speed_plan(base_path, setup, hp, memory_budget_gib)
    build = make_sdft_trainer if method == "sdft" else make_trainer
    trainer = build(dataset, base_path, setup, hp, seed, out / "trainer", progress, speed)
    n_truncated = count_truncated(trainer.processing_class, dataset, hp["max_length"])
    versions = library_versions()
    if n_truncated:
        warnings.warn(f"arm {arm!r}: {n_truncated} of {len(dataset)} conversations are longer than max_length = "
                      f"{hp['max_length']} tokens and are cut (they lose their end, and the model is not taught to "
                      "stop there); raise max_length if that is many", stacklevel=2)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    start = time.perf_counter()
    try:
        trainer.train()
    except torch.OutOfMemoryError:
        if speed.checkpointed_layers == speed.layers:
            raise
        warnings.warn(f"arm {arm!r}: out of GPU memory with {speed.checkpointed_layers} of {speed.layers} layers "
                      f"checkpointed (estimated peak {speed.estimate_gib} GiB); training again with all of them",
                      stacklevel=2)
        del trainer
        torch.cuda.empty_cache()
        speed = replace(speed, checkpointed_layers=speed.layers)
        trainer = build(dataset, base_path, setup, hp, seed, out / "trainer", progress, speed)
        start = time.perf_counter()
        trainer.train()
    seconds = time.perf_counter() - start
    logs = [h for h in trainer.state.log_history if "loss" in h]
    _archive_current(out)  # only now that a new adapter exists: one trained with other settings is kept, not lost
    trainer.model.save_pretrained(out)
    write_json(out / "log_history.json", trainer.state.log_history)
    metrics = {
        "arm": arm, "seed": seed, "train_seconds": round(seconds, 2),
        "final_loss": logs[-1]["loss"] if logs else None,
        "loss_curve": [[h["step"], h["loss"]] for h in logs],
        "quantization": setup.quantization, "compute_dtype": setup.compute_dtype, "device": setup.device,
        "trainable_params": trainable, "steps": trainer.state.global_step,
        "examples_seen": trainer.state.global_step * hp["batch_size"], "n_rows": len(dataset),
        "n_truncated": n_truncated,
        "loss_format": "sdft" if method == "sdft" else
        "messages" if trainer.args.assistant_only_loss else "prompt_completion",
        "speed": asdict(speed), "versions": versions, "settings_key": key, "settings": settings,
    }
    write_json(out / "metrics.json", metrics)
    del trainer
    return metrics


def load_adapted(run_name: str, arm: str, seed: int, base_path: str, setup: Setup, expected_key: str | None = None):
    """The base model (loaded as it was trained: 4-bit or not) with an arm's adapter, in eval mode.

    ``expected_key``: the settings key stage 05 recorded for this arm and seed; a different adapter is refused."""
    from peft import PeftModel

    path = arm_dir(run_name, arm, seed)
    if not (path / "adapter_config.json").exists():
        raise FileNotFoundError(f"{path} has no adapter: run notebooks/05_qlora_training.ipynb for run "
                                f"{run_name!r} with arm {arm!r} and seed {seed}")
    if expected_key is not None and read_json(path / "metrics.json").get("settings_key") != expected_key:
        raise RuntimeError(f"the adapter in {path} was trained with other settings than notebook 05 last recorded "
                           "(an interrupted rerun?): rerun notebooks/05_qlora_training.ipynb for run "
                           f"{run_name!r} to finish it")
    model = PeftModel.from_pretrained(load_base(base_path, setup), path)
    return model.eval()


def trained(run_name: str) -> dict:
    """What stage 05 wrote: its ``metrics.json`` (arms, seeds, setup, hyperparameters)."""
    return read_json(require(run_name, STAGE))


def plot_loss_curves(results: dict[str, list[dict]], path: Path) -> Path:
    """Training loss (assistant tokens) against step: one colour per arm, one line per seed."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (arm, runs) in enumerate(results.items()):
        for j, m in enumerate(runs):
            steps, losses = zip(*m["loss_curve"]) if m["loss_curve"] else ((), ())
            sdft = method_of(arm) == "sdft"  # its loss is a divergence from the teacher, not cross-entropy
            ax.plot(steps, losses, color=f"C{i}", alpha=0.9 if j == 0 else 0.4, ls="--" if sdft else "-",
                    label=(f"{arm} (SDFT loss)" if sdft else arm) if j == 0 else None)
    ax.set(xlabel="step", ylabel="training loss (assistant tokens)", yscale="log",
           title="QLoRA training loss per arm (same steps, same hyperparameters)")
    ax.legend()
    return save_figure(fig, path)
