"""The three config objects every arm of stage 05 trains with, and the hyperparameters they carry.

QLoRA with TRL takes three configs: transformers' ``BitsAndBytesConfig`` (the frozen base in 4-bit NF4), peft's
``LoraConfig`` (the trainable low-rank adapters, and the embedding when it is trained in full) and TRL's
``SFTConfig`` (steps, batch, learning rate and schedule, precision). Notebook 05 builds each in a cell of its own
from its parameters and hands them to ``qlora_training.train_arm`` as a ``Recipe``; ``from_parameters`` builds the same
objects from the same parameters for scripts and tests (tests/test_training.py checks that the two agree).

A recipe's ``hp`` are its hyperparameters under notebook 05's parameter names (``HP``): one name per parameter from
the preset to the stage's ``metrics.json``. Its ``given`` settings (every field the configs set, per arm fields left
out) are part of each adapter's settings key, so a change in a config cell trains the arms again.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path

import torch

from .datafiles import passes_of
from .models import Setup, bnb_config
from .speed import Speed

# TRL 1.16's SFTConfig defaults the old name `gradient_checkpointing` to True, so transformers 5 warns that the name
# is deprecated on every SFTConfig built, whatever it is given; stage 05 sets `activation_checkpointing` itself
warnings.filterwarnings("ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning)

# Notebook 05's parameters that decide an adapter, under their own names (recorded as the stage's ``hp``)
HP = ("lora_rank", "lora_alpha", "lora_dropout", "target_modules", "train_embeddings", "embedding_rows", "max_steps",
      "train_batch_size", "learning_rate", "max_length", "budget", "domain_epochs")
EMBEDDING_ROWS = ("all", "domain")
BUDGETS = ("steps", "domain_epochs")  # every arm max_steps steps, or every arm its domain rows domain_epochs times


def check_hp(hp: dict) -> None:
    """Refuse settings that would train nothing or nonsense, naming notebook 05's parameter (``max_steps = 0``
    would otherwise train one step and let notebook 06 report the result as a fine-tune)."""
    rules = {"lora_rank": (lambda v: v >= 1, "at least 1"), "lora_alpha": (lambda v: v > 0, "above 0"),
             "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"), "max_steps": (lambda v: v >= 1, "at least 1"),
             "train_batch_size": (lambda v: v >= 1, "at least 1"), "learning_rate": (lambda v: v > 0, "above 0"),
             "max_length": (lambda v: v >= 16, "at least 16 tokens")}
    for key, (ok, need) in rules.items():
        value = hp.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not ok(value):
            raise ValueError(f"{key} = {value!r}: must be {need} (notebook 05's parameters)")
    if hp.get("embedding_rows", "all") not in EMBEDDING_ROWS:
        raise ValueError(f"embedding_rows = {hp['embedding_rows']!r}: must be one of {EMBEDDING_ROWS} "
                         "(notebook 05's parameters)")
    if hp.get("budget", "steps") not in BUDGETS:
        raise ValueError(f"budget = {hp['budget']!r}: must be one of {BUDGETS} (notebook 05's parameters)")
    epochs = hp.get("domain_epochs", 0)
    if hp.get("budget") == "domain_epochs" and (not isinstance(epochs, (int, float)) or isinstance(epochs, bool)
                                                 or epochs <= 0):
        raise ValueError(f"domain_epochs = {epochs!r}: with budget = 'domain_epochs' it must be above 0, the times "
                         "each arm sees each of its domain rows (notebook 05's parameters)")
    if hp.get("embedding_rows", "all") == "domain" and not hp.get("train_embeddings"):
        raise ValueError("embedding_rows = 'domain' needs train_embeddings = True: it chooses which embedding rows "
                         "train (notebook 05's parameters)")


def embedding_layer(base_path: str) -> tuple[str, bool]:
    """The name of the model's input embedding module (``embed_tokens`` in Llama, Qwen, Gemma) and whether the output
    layer shares its weight: what the ``LoraConfig`` needs to train the embedding in full (``modules_to_save``,
    ``ensure_weight_tying``). Read from a weightless copy of the model (meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_path))
    embed = model.get_input_embeddings()
    return (next(n for n, m in model.named_modules() if m is embed).rsplit(".", 1)[-1],
            bool(model.config.tie_word_embeddings))


# The SFTConfig fields train_arm sets for each arm and seed (output folder, seed, loss format of the template, speed
# plan, progress bars); the rest of notebook 05's SFTConfig is the same for every arm
PER_ARM = ("output_dir", "seed", "data_seed", "assistant_only_loss", "activation_checkpointing",
           "activation_checkpointing_kwargs", "use_liger_kernel", "disable_tqdm")
# The Trainer settings an SDFT arm takes from notebook 05's SFTConfig (SDFTConfig is not an SFTConfig)
SHARED_WITH_SDFT = ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate",
                    "lr_scheduler_type", "warmup_steps", "logging_steps", "save_strategy", "report_to", "use_cpu", "bf16",
                    "fp16", "dataloader_num_workers", "torch_compile")


@dataclass(frozen=True)
class Recipe:
    """What every arm trains with: notebook 05's three config objects, ``embedding_rows`` (which rows of a
    trained embedding change) and the training budget (``budget``, ``domain_epochs``: ``arm_steps``). ``bnb`` is None
    for plain LoRA on the unquantised base."""

    bnb: object  # transformers.BitsAndBytesConfig or None
    lora: object  # peft.LoraConfig
    sft: object  # trl.SFTConfig
    embedding_rows: str = "all"
    budget: str = "steps"
    domain_epochs: float = 0

    @property
    def hp(self) -> dict:
        """The configs' hyperparameters under notebook 05's parameter names (``HP``; ``budget`` and
        ``domain_epochs`` only with the ``domain_epochs`` budget)."""
        lora, sft, targets = self.lora, self.sft, self.lora.target_modules
        return {"lora_rank": lora.r, "lora_alpha": lora.lora_alpha, "lora_dropout": lora.lora_dropout,
                "target_modules": targets if isinstance(targets, str) else sorted(targets),
                "train_embeddings": bool(lora.modules_to_save), "embedding_rows": self.embedding_rows,
                "max_steps": sft.max_steps, "train_batch_size": sft.per_device_train_batch_size,
                "learning_rate": sft.learning_rate, "max_length": sft.max_length,
                # only when they change the training: adapters trained before the budget existed keep their keys
                **({"budget": self.budget, "domain_epochs": self.domain_epochs} if self.budget != "steps" else {})}

    def given(self) -> dict:
        """Every setting of the three configs that differs from the library's defaults (what the cells set, and
        what the library derived from it), per arm fields left out: part of each adapter's settings key."""
        return {"bnb": given(self.bnb) if self.bnb is not None else None, "lora": given(self.lora),
                "sft": {k: v for k, v in given(self.sft).items() if k not in PER_ARM}}


def given(config) -> dict:
    """The fields of a config object whose values differ from its class's defaults, JSON-ready (the library's own
    version and its masked ``<..._TOKEN>`` placeholders left out)."""
    if hasattr(config, "to_diff_dict"):  # BitsAndBytesConfig: its settings are no dataclass fields
        values = config.to_diff_dict()
    else:
        values, defaults = config.to_dict(), {}
        for f in fields(config):
            defaults[f.name] = f.default if f.default is not MISSING else \
                f.default_factory() if f.default_factory is not MISSING else MISSING
        values = {k: v for k, v in values.items() if k in defaults and v != defaults[k] and k != "peft_version"
                  and v != f"<{k.upper()}>"}
    return json.loads(json.dumps(values, sort_keys=True,
                                 default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o)))


def from_parameters(setup: Setup, base_path: str, hp: dict) -> Recipe:
    """The configs notebook 05's cells build, from its parameters (``hp``, under notebook 05's names, ``HP``):
    for scripts and tests (tests/test_training.py checks that the notebook's cells build the same)."""
    from peft import LoraConfig
    from trl import SFTConfig

    check_hp(hp)
    embedding, tied = embedding_layer(base_path)
    lora = LoraConfig(r=hp["lora_rank"], lora_alpha=hp["lora_alpha"], lora_dropout=hp["lora_dropout"],
                      target_modules=hp["target_modules"], task_type="CAUSAL_LM",
                      modules_to_save=[embedding] if hp["train_embeddings"] else None,
                      ensure_weight_tying=hp["train_embeddings"] and tied)
    steps = hp["max_steps"]
    sft = SFTConfig(max_steps=steps, per_device_train_batch_size=hp["train_batch_size"],
                    learning_rate=hp["learning_rate"], lr_scheduler_type="cosine", warmup_steps=min(10, steps // 10),
                    logging_steps=math.ceil(steps / 30), max_length=hp["max_length"],
                    bf16=setup.compute_dtype == "bfloat16", fp16=setup.compute_dtype == "float16",
                    use_cpu=setup.device == "cpu", save_strategy="no", report_to=[])
    return Recipe(bnb_config(setup), lora, sft, hp.get("embedding_rows", "all"), hp.get("budget", "steps"),
                  hp.get("domain_epochs", 0))


def row_key(messages) -> str:
    """One training row's identity, for counting distinct rows: its conversation as canonical JSON."""
    return json.dumps(messages, sort_keys=True, default=str)


def arm_steps(recipe: Recipe, sources: list[str], rows: list) -> dict:
    """An arm's training budget from its rows (``sources``: each row's ``source``, "domain" or "general"; ``rows``:
    the rows, to count the distinct domain ones): its ``steps``, its ``domain_rows`` (distinct) and how many times
    training shows it each of them (``domain_exposures``), and the same for its general rows (``general_rows``,
    ``general_exposures``; 0 for ``domain_only``): a mixed arm at ``domain_epochs = 16`` sees each general row 16
    times too, which a paper-sized general set would not repeat.

    ``budget = "steps"``: every arm trains the SFTConfig's ``max_steps``, so ``domain_only`` (all domain rows) sees
    each domain row about six times as often as an arm that is 83% general rows. ``"domain_epochs"``: every arm
    trains until it has seen each of its domain rows ``domain_epochs`` times, as an epoch-based SFT run does: a mixed
    arm trains on all its rows that many times (more steps), ``domain_only`` on its distinct domain rows."""
    batch = recipe.sft.per_device_train_batch_size
    keys = {kind: [row_key(r) for r, s in zip(rows, sources) if (s == "domain") == (kind == "domain")]
            for kind in ("domain", "general")}
    distinct = {kind: len(set(k)) for kind, k in keys.items()}
    if recipe.budget == "steps" or not keys["domain"]:
        steps = recipe.sft.max_steps
    else:
        steps = max(1, math.ceil(recipe.domain_epochs * distinct["domain"] * len(rows) / (len(keys["domain"]) * batch)))

    def exposures(kind: str) -> float:  # how often training shows each distinct row of a kind
        n = distinct[kind]
        return round(steps * batch * len(keys[kind]) / len(rows) / n, 2) if n else 0.0

    return {"steps": steps, "domain_rows": distinct["domain"], "domain_exposures": exposures("domain"),
            "general_rows": distinct["general"], "general_exposures": exposures("general")}


def pass_warnings(recipe: Recipe, datasets: dict) -> list[str]:
    """Notebook 04's arms of several passes (a ``pass`` column; ``general_passes``) train in order, pass after pass:
    a warning for each that the budget would cut short or run past unevenly (the ``steps`` budget, or
    ``domain_epochs`` no multiple of its passes), where its domain rows would not be seen ``domain_epochs`` times
    each and notebook 06 would count the untrained passes' general questions as seen."""
    from .runs import trouble

    signs = {}
    for name, data in datasets.items():
        if (passes := passes_of(data)) > 1:
            budget = (f"budget = {recipe.budget!r}" if recipe.budget != "domain_epochs" else
                      f"domain_epochs = {recipe.domain_epochs}")
            signs[f"arm {name!r} holds {passes} passes of notebook 04 (general_passes = {passes}), trained in order, "
                  f"but {budget} does not train whole passes of it: set budget = 'domain_epochs' and domain_epochs "
                  f"= {passes} (or a multiple), or rerun 04 with general_passes = domain_epochs"] = (
                recipe.budget != "domain_epochs" or recipe.domain_epochs % passes != 0)
    return trouble(signs)


# more than this many showings of each general row is a warning (repeat_warnings). A heuristic, not a measured limit:
# on SmolLM2 `ours` shown its rows 4 times kept general skill on both domains and 16 times lost 17.4-26.0 points on
# Velish, but 10.4 (the clinical sweep's 0.95 share, one draw) kept it (docs/bench/smollm2-gpu-sweep/), and other
# data lost skill at 4 (public_mix 7-8 points, ours_weak 23.9); the lab's 300 steps show its rows 4.9-5.7 times
MAX_GENERAL_REPEATS = 6


def repeat_warnings(recipe: Recipe, datasets: dict) -> list[str]:
    """A warning for each mixed arm trained by SFT whose budget shows each of its general rows more than
    ``MAX_GENERAL_REPEATS`` times (``arm_steps``' ``general_exposures``), naming the fix: new general rows for each
    pass (04's ``general_passes`` = ``domain_epochs``) where one pass's draw does not already repeat rows, else a
    larger pool (01's ``n_samples`` for ``ours``, a larger ``public_data`` for ``public_mix``). On SmolLM2 at 16
    Velish passes, on the same 01-03, ``ours`` forgot 26.0 points with each general row shown 16 times and 5.9 with
    each shown 2.3 times (docs/bench/smollm2-gpu-pool/). SDFT arms are left out: they train on generated answers."""
    from . import arms
    from .runs import trouble

    signs = {}
    for name, data in datasets.items():
        if arms.get(name).method != "sft":  # as notebook 05 trains it (qlora_training.method_of)
            continue
        budget = arm_steps(recipe, data["source"], data["messages"])
        times, passes = budget["general_exposures"], passes_of(data)
        per_pass = sum(s == "general" for s in data["source"]) / passes
        if recipe.budget == "domain_epochs" and passes < recipe.domain_epochs and budget["general_rows"] >= per_pass:
            fix = (f"rerun 04 with general_passes = {recipe.domain_epochs} (new general rows for each pass), and give "
                   "it a larger pool if 04 then says its rows are reused")
        else:
            fix = "give it a larger general pool (01's n_samples for ours, a larger public_data for public_mix)"
        signs[f"arm {name!r} shows each of its {budget['general_rows']} general rows about {times:g} times (more than "
              f"{MAX_GENERAL_REPEATS}): a model may learn them by heart and forget more; {fix} "
              "(docs/qlora.md, 'New general rows for each pass')"] = times > MAX_GENERAL_REPEATS
    return trouble(signs)


def check(recipe: Recipe, setup: Setup) -> None:
    """Refuse a recipe whose hyperparameters make no sense (``check_hp``) or whose quantisation is not the setup's."""
    check_hp(recipe.hp)
    if (recipe.bnb is not None) != (setup.quantization == "nf4"):
        raise ValueError(f"the BitsAndBytesConfig is {'set' if recipe.bnb is not None else 'None'} but the setup's "
                         f"quantization is {setup.quantization!r}: build bnb_config as notebook 05 does (None "
                         "exactly when setup.quantization is 'none')")


def check_ranks(gpus_per_arm, batch: int) -> int:
    """Notebook 05's ``gpus_per_arm``, checked against its ``train_batch_size`` (``batch``): a whole number of GPUs
    (ranks) that divides the batch, since each rank takes an equal share of every batch. The runner's preflight
    calls it too, so a bad value stops a run before notebook 01."""
    if not isinstance(gpus_per_arm, int) or isinstance(gpus_per_arm, bool) or gpus_per_arm < 1:
        raise ValueError(f"gpus_per_arm = {gpus_per_arm!r}: give 1 (each training on one GPU) or the number of GPUs "
                         "one training spreads over (data parallel)")
    if batch % gpus_per_arm:
        raise ValueError(f"gpus_per_arm = {gpus_per_arm} does not divide train_batch_size = {batch}: each GPU takes "
                         f"an equal share of a batch; make train_batch_size a multiple of {gpus_per_arm}")
    return gpus_per_arm


def arm_sft_config(sft, output_dir: Path, seed: int, speed: Speed, assistant_only_loss: bool, progress: bool = True,
                   steps: int | None = None, in_order: bool = False):
    """Notebook 05's ``SFTConfig`` for one arm and seed (``PER_ARM``): its output folder and seed, the loss on the
    assistant's tokens where the template allows (``loss_format``), checkpointing and Liger as the speed plan says,
    and its ``steps`` (``arm_steps``): where they differ from the config's ``max_steps``, the warm-up and the logging
    interval, when given in steps, stretch with them. Under DDP each of the ``WORLD_SIZE`` ranks takes an equal share
    of the config's batch, in ``speed.accumulation`` micro-batches, so the effective batch (and ``arm_steps``' count)
    stays the one the notebook set. ``in_order``: the rows are trained in the dataset's order (a sequential sampler:
    notebook 04's arms of several ``general_passes``, already shuffled within each pass)."""
    schedule = {"train_sampling_strategy": "sequential"} if in_order else {}
    # under DDP (train_arm's ranks) each rank takes a share of a batch, and the speed plan may split that share into
    # micro-batches (gradient accumulation) to fit the memory budget: the effective batch stays the notebook's
    from .workers import world

    parts = world()[2] * speed.accumulation
    if parts > 1:
        schedule["per_device_train_batch_size"] = max(1, sft.per_device_train_batch_size // parts)
        schedule["gradient_accumulation_steps"] = speed.accumulation
    if speed.compiled or speed.graphed:  # one padded shape: compiled or recorded once, not once per batch length
        schedule["pad_to_multiple_of"] = sft.max_length
    if steps is not None and steps != sft.max_steps:
        def stretch(value):
            return value if 0 < value < 1 else max(1 if value else 0, round(value * steps / sft.max_steps))
        schedule.update(max_steps=steps, warmup_steps=stretch(sft.warmup_steps),
                        logging_steps=stretch(sft.logging_steps))
    return replace(sft, output_dir=str(output_dir), seed=seed, data_seed=seed, disable_tqdm=not progress,
                   assistant_only_loss=assistant_only_loss, activation_checkpointing=bool(speed.checkpointed_layers),
                   activation_checkpointing_kwargs={"use_reentrant": False}, use_liger_kernel=speed.liger,
                   torch_compile=bool(speed.compiled), **schedule)

