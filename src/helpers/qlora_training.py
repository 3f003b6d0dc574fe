"""Stage 05: QLoRA fine-tuning of the base model on every arm from stage 04 (TRL ``SFTTrainer`` + peft + bitsandbytes).

Every arm is trained with the same three config objects -- the ``BitsAndBytesConfig`` of the 4-bit base, the peft
``LoraConfig`` and the TRL ``SFTConfig``, which notebook 05 builds in cells of their own (a ``Recipe``,
``helpers.qlora_configs``) -- the same seed and the loss on assistant tokens only, so differences in stage 06 come
from the data alone. ``train_arm`` adds to the ``SFTConfig`` only what differs per arm and machine: the
output folder, the seed, ``assistant_only_loss`` (below) and the speed plan (``helpers.speed``). Per arm and seed
this writes ``outputs/<run>/05_training/arms/<arm>/seed<k>/``: the LoRA adapter (``adapter_model.safetensors``), the
trainer's log history and a ``metrics.json`` with ``train_seconds``, ``final_loss``, ``quantization``,
``trainable_params`` and ``adapter`` (that folder, relative to the stage's). A finished arm is skipped when it is run
again with the same settings, so an interrupted notebook resumes; an arm trained again with other settings first
moves its adapter to ``previous/<settings key>/``, from where it comes back if those settings are asked for again.

Loss on the answer only, for any chat template (``loss_format``): TRL masks the loss to assistant tokens through the
template's ``{% generation %}`` markers, and patches the templates it knows (Qwen, Llama 3, Gemma, ...). For any
other template (SmolLM2's ChatML, for one) the conversations are handed to TRL as prompt/completion pairs instead,
and TRL trains on the completion: the answer and the tokens that end its turn. Which one ran is recorded.

Where and how it runs (``models.choose_setup``): bf16 on GPUs that support it, fp16 on older ones (T4), fp32 on CPU;
the 4-bit NF4 base wherever bitsandbytes can quantise on the device, plain LoRA otherwise, with a notice."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import torch

from . import arms, placement
from .datafiles import fingerprint
from .models import Setup, load_base, model_fingerprint
from .qlora_configs import SHARED_WITH_SDFT, Recipe, arm_sft_config, arm_steps, check, check_ranks, row_key
from .runs import read_json, require, save_figure, stage_dir, write_json
from .layer_graphs import graph_layers
from .speed import (Speed, cast_adapters, numerics, one_shape, partial_checkpointing_callback, regional_compilation,
                    side_by_side, speed_plan, text_config)
from . import workers as workers_service

STAGE = "05_training"


def choose_arms(all_arms: dict, names: list[str], seeds: list[int]) -> dict:
    """The arms of notebook 04 to train: those ``names`` (notebook 05's ``arms``; empty: every arm), in the order
    given; an unknown name or an empty ``seeds`` is an error naming the parameter."""
    unknown = sorted(set(names) - set(all_arms))
    if unknown:
        raise ValueError(f"arms {unknown} are not among notebook 04's arms {sorted(all_arms)}")
    if not seeds:
        raise ValueError("seeds is empty: give at least one training seed, e.g. seeds = [0]")
    return {name: all_arms[name] for name in (names or all_arms)}


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


def _log_last_step_callback():
    from transformers import TrainerCallback
    class LogLastStep(TrainerCallback):
        """Log at the last step too: ``final_loss`` is the loss at the end (averaged since the last log)."""

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def settings_key(settings: dict) -> str:
    """The key of one adapter's settings (``_settings``). It stays beside the manifest stamps because it is per arm
    and seed: a rerun with other arms or seeds reuses the adapters whose settings did not change."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def arm_dir(run_name: str, arm: str, seed: int) -> Path:
    return stage_dir(run_name, STAGE) / "arms" / arm / f"seed{seed}"


def _trainee(base_path: str, setup: Setup, recipe: Recipe, seed: int, dataset=None, dequantised: bool = False):
    """What every arm's trainer starts from, SFT or SDFT: the tokenizer (with a pad token), the base model (4-bit or
    not, after seeding; ``dequantised``: a 4-bit base's weights dequantised once into the compute dtype, as the speed
    plan says) and, with ``embedding_rows = "domain"``, the embedding rows to train (``dataset``'s domain tokens;
    None: all)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = None
    if recipe.lora.modules_to_save and recipe.embedding_rows == "domain":
        rows = domain_token_ids(tokenizer, dataset)
    torch.manual_seed(seed)
    model = load_base(base_path, setup, copy.deepcopy(recipe.bnb))  # copies: the recipe stays as the notebook built it
    if dequantised:  # transformers' dequantize: the values bitsandbytes' layers would dequantise at every step
        model = model.dequantize(dtype=setup.dtype)
    return tokenizer, model, rows


def make_trainer(dataset, base_path: str, setup: Setup, recipe: Recipe, seed: int, output_dir: Path,
                 progress: bool = True, speed: Speed | None = None, steps: int | None = None):
    """An ``SFTTrainer`` for one arm: the recipe's base model (4-bit or not), LoRA and SFT configs, loss on the
    answers (``loss_format``), adapters, Liger, checkpointing and compiling as ``speed`` says (``speed_plan``),
    ``steps`` (the arm's budget, ``arm_steps``; default ``max_steps``), rows in order where 04 made passes."""
    from trl import SFTTrainer

    speed = speed or speed_plan(base_path, setup, recipe.hp)
    tokenizer, model, rows = _trainee(base_path, setup, recipe, seed, dataset, speed.dequantised)
    fmt = loss_format(tokenizer)
    args = arm_sft_config(recipe.sft, output_dir, seed, speed, fmt == "messages", progress, steps,
                          in_order="pass" in dataset.column_names)
    dataset = dataset.remove_columns([c for c in dataset.column_names if c != "messages"])
    dataset = to_prompt_completion(dataset) if fmt == "prompt_completion" else dataset
    with regional_compilation(speed.compiled):
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             peft_config=copy.deepcopy(recipe.lora))
    if 0 < speed.checkpointed_layers < speed.layers:
        trainer.add_callback(partial_checkpointing_callback(speed.layers - speed.checkpointed_layers))
    one_shape(trainer, speed)
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
    trainer.layer_graphs = graph_layers(trainer.model) if speed.graphed else None  # recorded at the first step
    return trainer


# SDFT (self-distillation fine-tuning, Shenfeld et al. 2026; TRL's trl.experimental.sdft): on-policy. Each step the
# student answers the prompt itself; the teacher is the same base model (adapters off) shown the reference answer as
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


def sdft_completion_length(max_length: int) -> int:
    """How long the student's own answers may run: half the training length, at most 128 tokens."""
    return min(128, max(8, max_length // 2))


def make_sdft_trainer(dataset, base_path: str, setup: Setup, recipe: Recipe, seed: int, output_dir: Path,
                      progress: bool = True, speed: Speed | None = None, steps: int | None = None):
    """TRL's ``SDFTTrainer`` for one arm, with the SFT arms' base model, LoRA, seed and speed plan and the Trainer
    settings of their ``SFTConfig`` (``SHARED_WITH_SDFT``: steps, batch, learning rate, schedule, precision), and
    ``SDFT``'s own settings. Its speed plan is train_arm's, never graphed: it generates with the model it trains."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # TRL warns on import that the API may change
    from trl.experimental.sdft import SDFTConfig, SDFTTrainer

    speed = replace(speed or speed_plan(base_path, setup, recipe.hp, dequantise=False), graphed=False)
    tokenizer, model, rows = _trainee(base_path, setup, recipe, seed, dataset, speed.dequantised)
    sft = arm_sft_config(recipe.sft, output_dir, seed, speed, False, progress, steps)  # its steps and schedule
    args = SDFTConfig(**{k: getattr(sft, k) for k in SHARED_WITH_SDFT}, output_dir=str(output_dir), seed=seed,
                      data_seed=seed, disable_tqdm=not progress, activation_checkpointing=bool(speed.checkpointed_layers),
                      max_prompt_length=sft.max_length, max_completion_length=sdft_completion_length(sft.max_length),
                      shuffle_dataset="pass" not in dataset.column_names, **SDFT)  # 04's passes stay in order
    data, batch = sdft_dataset(dataset), args.generation_batch_size // args.num_generations
    if len(data) < batch:  # TRL's RepeatSampler drops an incomplete batch: no step would run
        raise ValueError(f"SDFT has {len(data)} distinct row(s), fewer than one batch of {batch} (train_batch_size), "
                         "so it would train 0 steps: give notebook 04 more domain rows, or 05 a smaller batch")
    with regional_compilation(speed.compiled):  # arm_sft_config's torch_compile reaches SDFT too
        trainer = SDFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                              peft_config=copy.deepcopy(recipe.lora))
    return _finish_trainer(trainer, progress, speed, rows)


def library_versions() -> dict[str, str]:
    """The versions that trained an adapter (recorded for provenance; not part of the resume key)."""
    from importlib.metadata import distributions

    found = {d.metadata["Name"].lower(): d.version for d in distributions() if d.metadata["Name"]}
    return {name: found.get(name, "not installed") for name in ("torch", "transformers", "trl", "peft", "bitsandbytes")}


def token_lengths(tokenizer, dataset) -> list[int]:
    """Each conversation's length in tokens under the chat template."""
    return [len(tokenizer.apply_chat_template(row, tokenize=True, return_dict=False)) for row in dataset["messages"]]


def _settings(dataset, base_path: str, setup: Setup, recipe: Recipe, seed: int, method: str = "sft") -> dict:
    """Everything an adapter depends on: the base model's content, the setup, the recipe (its hyperparameters under
    notebook 05's names, and every setting its configs hold), seed and data, and the parts of the speed plan that
    change the arithmetic (adapter dtype, Liger's fused kernels); checkpointing and a dequantised base (the same
    weights, other kernels: float precision) are left out. SDFT arms add their method and its own settings."""
    settings = {"base": model_fingerprint(base_path), "setup": {**asdict(setup), "notice": ""}, "hp": recipe.hp,
                "configs": recipe.given(), "seed": seed, "n_rows": len(dataset), "data": fingerprint(dataset),
                "numerics": numerics(text_config(base_path), setup)}
    if method == "sdft":
        settings["sdft"] = {**SDFT, "max_completion_length": sdft_completion_length(recipe.sft.max_length)}
    return settings


def finished(run_name: str, arm: str, dataset, base_path: str, setup: Setup, recipe: Recipe, seed: int) -> dict | None:
    """The metrics of an adapter already trained for this arm and seed with exactly these settings, else None."""
    out = arm_dir(run_name, arm, seed)
    done = out / "metrics.json"
    if done.exists() and (out / "adapter_model.safetensors").exists():
        metrics = read_json(done)
        key = settings_key(_settings(dataset, base_path, setup, recipe, seed, method_of(arm)))
        if metrics.get("settings_key") == key:
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


def earlier_arms(run_name: str, datasets: dict, base_path: str, setup: Setup, recipe: Recipe, seeds: list[int]) -> dict:
    """``{arm: [metrics per seed]}`` for the arms of ``datasets`` already trained, for every seed, with these
    settings (a rerun of notebook 05 on a few arms keeps the others in the stage summary that 06 reads)."""
    out = {}
    for arm, dataset in datasets.items():
        done = [finished(run_name, arm, dataset, base_path, setup, recipe, seed) for seed in seeds]
        if all(m is not None for m in done):
            out[arm] = done
    return out


def with_earlier(run_name: str, results: dict, all_arms: dict, base_path: str, setup: Setup, recipe: Recipe,
                 seeds: list[int]) -> dict:
    """``results`` (``{arm: [metrics per seed]}``) and the other arms of ``all_arms`` trained before with these
    settings (``earlier_arms``), in notebook 04's order; prints which were not trained now and which are kept."""
    others = {name: data for name, data in all_arms.items() if name not in results}
    earlier = earlier_arms(run_name, others, base_path, setup, recipe, seeds)
    if others:
        print(f"not trained in this run: {sorted(others)}; kept from an earlier run with the same settings: "
              f"{sorted(earlier) or 'none'}")
    merged = results | earlier
    return {name: merged[name] for name in all_arms if name in merged}


def training_rows(dataset, recipe: Recipe):
    """The rows an arm trains on: notebook 04's, except that with the ``domain_epochs`` budget an arm of domain rows
    only (``domain_only``, ``sdft``, which notebook 04 pads to the mixed arms' size by repeating its rows, unevenly
    when the size is no multiple) trains on each distinct row once per epoch, so that every row is seen exactly
    ``domain_epochs`` times (the last, partial epoch aside), as in a mixed arm."""
    if recipe.budget != "domain_epochs" or any(s != "domain" for s in dataset["source"]):
        return dataset
    seen, keep = set(), []
    for i, messages in enumerate(dataset["messages"]):
        key = row_key(messages)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return dataset.select(keep)


def train_arm(run_name: str, arm: str, dataset, base_path: str, setup: Setup, recipe: Recipe, seed: int,
              progress: bool = True, memory_budget_gib: float = 0, ranks: int = 1, speed: Speed | None = None) -> dict:
    """Fine-tune the base model on one arm with ``recipe`` (notebook 05's configs); save the adapter and
    ``metrics.json``; return the metrics. Skips training when this arm, seed and settings are done.

    ``ranks`` > 1: data parallel (DDP) over that many processes (``workers.run_ranked``), one per visible GPU, or gloo
    processes on a CPU. The batch of ``train_batch_size`` rows is split among them, so the steps and the effective
    batch stay the same; rank 0 saves the adapter and metrics. The settings key does not change: DDP trains the
    same recipe, to float precision when the batch divides the arm's rows (``tests/test_workers.py``); otherwise the
    last batch of each pass over the rows is filled up from its first rows (accelerate's ``even_batches``). The
    speed plan is made once, here, for the rank's share of a batch, and every rank trains by it (``speed``).

    ``memory_budget_gib``: the memory the step may take (0: the device's free memory), see ``speed_plan``; after an
    out-of-memory error on the GPU the arm is trained again with every layer checkpointed.
    An adapter trained with other settings is moved to ``previous/<its settings key>/`` when the new one is saved,
    and brought back (without training) when those settings are asked for again."""
    check(recipe, setup)
    done = finished(run_name, arm, dataset, base_path, setup, recipe, seed)
    if done is not None:
        return done
    out = arm_dir(run_name, arm, seed)
    method = method_of(arm)
    sft = method == "sft"  # SDFT samples its own answers: a 4-bit base as bitsandbytes computes it, no graphs
    settings = _settings(dataset, base_path, setup, recipe, seed, method)
    key = settings_key(settings)
    restored = _restore_archived(out, key)  # trained before with these settings, then replaced: no need to retrain
    if restored is not None:
        return restored
    if ranks > 1 and workers_service.world()[2] == 1:  # launch the ranks; each comes back here, inside the job
        batch = recipe.sft.per_device_train_batch_size
        plan = speed_plan(base_path, setup, recipe.hp, memory_budget_gib, check_ranks(ranks, batch), sft, sft)
        return workers_service.run_ranked(train_arm, (run_name, arm, dataset, base_path, setup, recipe, seed),
                                          {"progress": False, "speed": plan}, ranks,
                                          stage_dir(run_name, STAGE) / "ranked" / f"{arm}-seed{seed}",
                                          f"arm {arm!r} seed {seed}")
    rank, _, world_size = workers_service.world()
    hp, max_length = recipe.hp, recipe.sft.max_length
    speed = speed or speed_plan(base_path, setup, hp, memory_budget_gib, dequantise=sft, graphs=sft)
    rows = training_rows(dataset, recipe)
    budget = arm_steps(recipe, rows["source"], rows["messages"])
    build = make_sdft_trainer if method == "sdft" else make_trainer
    trainer = build(rows, base_path, setup, recipe, seed, out / "trainer", progress, speed, budget["steps"])
    lengths = token_lengths(trainer.processing_class, rows)
    n_truncated = sum(n > max_length for n in lengths)
    versions = library_versions()
    if n_truncated:
        warnings.warn(f"arm {arm!r}: {n_truncated} of {len(dataset)} conversations are longer than max_length = "
                      f"{max_length} tokens and are cut (they lose their end, and the model is not taught to stop "
                      "there); raise max_length if that is many", stacklevel=2)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    start, retry = time.perf_counter(), False
    try:
        trainer.train()
    except torch.OutOfMemoryError:
        if (speed.checkpointed_layers == speed.layers and not speed.dequantised) or world_size > 1:  # a rank alone
            raise                                            # cannot start again: the others wait in their collectives
        retry = True  # below: until this block ends, its traceback holds the failed step's frames (the trainer)
    if retry:
        warnings.warn(f"arm {arm!r}: out of GPU memory with {speed.checkpointed_layers} of {speed.layers} layers "
                      f"checkpointed{', the base dequantised' * speed.dequantised} (estimated peak "
                      f"{speed.estimate_gib} GiB); training again with all of them"
                      f"{', the base in 4 bits' * speed.dequantised}", stacklevel=2)
        del trainer
        placement.release_gpu_memory()
        speed = replace(speed, checkpointed_layers=speed.layers, dequantised=False, graphed=False)
        trainer = build(rows, base_path, setup, recipe, seed, out / "trainer", progress, speed, budget["steps"])
        start = time.perf_counter()
        trainer.train()
    seconds = time.perf_counter() - start
    if trainer.state.global_step == 0:  # an adapter that never trained would be scored as if it had
        raise RuntimeError(f"arm {arm!r} seed {seed} trained 0 steps: nothing saved (check its rows, train_batch_size)")
    logs = [h for h in trainer.state.log_history if "loss" in h]
    if rank == 0:  # under DDP the ranks hold the same adapter: one saves it
        _archive_current(out)  # only now that a new adapter exists: one trained with other settings is kept, not lost
        trainer.model.save_pretrained(out)
        write_json(out / "log_history.json", trainer.state.log_history)
    metrics = {
        "arm": arm, "seed": seed, "adapter": out.relative_to(stage_dir(run_name, STAGE)).as_posix(),
        "train_seconds": round(seconds, 2), "final_loss": logs[-1]["loss"] if logs else None,
        "loss_curve": [[h["step"], h["loss"]] for h in logs], "quantization": setup.quantization,
        "compute_dtype": setup.compute_dtype, "device": setup.device, "trainable_params": trainable,
        "steps": trainer.state.global_step, "examples_seen": trainer.state.global_step * hp["train_batch_size"],
        "n_rows": len(dataset), "n_rows_trained": len(rows), "budget": recipe.budget,
        **{k: budget[k] for k in ("domain_rows", "domain_exposures", "general_rows", "general_exposures")},
        "tokens_seen": round(trainer.state.global_step * hp["train_batch_size"]
                             * sum(min(n, max_length) for n in lengths) / len(lengths)),
        "n_truncated": n_truncated, "loss_format": "sdft" if method == "sdft" else
        "messages" if trainer.args.assistant_only_loss else "prompt_completion",
        "speed": asdict(speed), "versions": versions, "settings_key": key, "settings": settings, "ranks": world_size,
        "layer_graphs": trainer.layer_graphs and trainer.layer_graphs.report(),
        "batch_per_rank": trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps,
    }
    if rank == 0:
        write_json(out / "metrics.json", metrics)
    if trainer.layer_graphs:  # the graphs' memory goes now, not at some later collection (a worker trains on)
        trainer.layer_graphs.remove()
    del trainer
    placement.release_gpu_memory()
    return metrics


def train_all(run_name: str, chosen: dict, seeds: list[int], base_path: str, setup: Setup, recipe: Recipe,
              progress: bool = True, memory_budget_gib: float = 0, workers: int = 0, gpus_per_arm: int = 1):
    """``train_arm`` for every arm of ``chosen`` and every seed; ``({arm: [metrics per seed]}, plan)``.

    The trainings are independent, so they can run side by side (``helpers.workers``): ``workers`` processes (0:
    chosen from the devices, one on a CPU, on GPUs as many as fit beside each other, from the speed plan's memory
    estimate). With one, they run here, one after another, with the trainer's progress bars; with several, each
    finished training prints a line. The plan is returned for the stage's metrics (what ran where).

    ``gpus_per_arm`` > 1 trains each arm data parallel on that many GPUs (``train_arm``'s ``ranks``); the workers
    then take groups of GPUs ("0,1", "2,3", ...) instead of single ones. On a CPU it starts that many gloo processes
    per training, which tests the same path."""
    check(recipe, setup)
    ranks = check_ranks(gpus_per_arm, recipe.sft.per_device_train_batch_size)
    jobs = [(f"{arm} seed {seed}", (run_name, arm, dataset, base_path, setup, recipe, seed), {"ranks": ranks})
            for arm, dataset in chosen.items() for seed in seeds]
    plan, budget = side_by_side(len(jobs), workers, base_path, setup, recipe.hp, memory_budget_gib, ranks)
    several = plan.workers > 1
    for _, _, kwargs in jobs:
        kwargs.update(progress=progress and not several, memory_budget_gib=budget)
    if several:
        print(f"{plan.workers} trainings side by side on {', '.join(sorted(set(plan.devices)))} ({plan.reason})")

    def done(name, m, where):
        print(f"{name:20s} on {where}: {m['train_seconds']:6.1f} s, {m['steps']} steps, final loss "
              f"{m['final_loss']:.3f}, {m['trainable_params']:,} trainable parameters ({m['quantization']}, "
              f"{m['compute_dtype']})", flush=True)

    results: dict[str, list[dict]] = {}
    for (_, args, _), m in zip(jobs, workers_service.run(train_arm, jobs, plan, done)):
        results.setdefault(args[1], []).append(m)
    return results, plan


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
    same = len({m["steps"] for runs in results.values() for m in runs}) == 1  # not so under equal domain exposure
    ax.set(xlabel="step", ylabel="training loss (assistant tokens)", yscale="log", title="QLoRA training loss per arm "
           f"({'same steps' if same else 'each arm its own steps'}, same hyperparameters)")
    ax.legend()
    return save_figure(fig, path)
