"""The models notebook 06 scores, loaded as notebook 05 trained them: the base (4-bit or not, the NF4 settings of
``models.bnb_config``) and the base with one (arm, seed) adapter. A service: notebook 06 (``evaluation``) and the
benchmarks that score adapters (``bench/retention_sweep.py``, ``bench/equal_exposure.py``) load through it.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path

from .models import Setup, load_adapter, load_base, load_tokenizer
from .runs import read_json


# How notebook 06 holds a 4-bit base's weights on a GPU (its ``eval_weights``); on a CPU the base is always dequantised
# once and the adapter merged, which is exact there (float32)
WEIGHTS = ("4bit", "dequantised", "merged")


def check_weights(weights: str) -> None:
    if weights not in WEIGHTS:
        raise ValueError(f"eval_weights = {weights!r}: choose one of {', '.join(map(repr, WEIGHTS))} (notebook 06's "
                         "parameters; docs/performance.md compares them)")


def load_for_eval(base_path: str, setup: Setup, adapter: Path | None = None, expected_key: str | None = None,
                  weights: str = "4bit"):
    """``(model, tokenizer)``: the base (``adapter`` None) or the base with the adapter saved in ``adapter``, loaded
    as stage 05 trained it (4-bit or not; the NF4 settings of ``models.bnb_config``). ``expected_key``: the settings
    key notebook 05 recorded for it; an adapter trained with other settings (an interrupted rerun) is refused.
    ``weights`` (``WEIGHTS``), on a GPU: "4bit" keeps a 4-bit base in bitsandbytes' layers; "dequantised" and
    "merged" dequantise it once into the compute dtype (a base that is not 4-bit stays as it is), and "merged" also
    merges each adapter for the scoring (``merged_for_scoring``). bitsandbytes multiplies a 4-bit weight through its
    own kernel or by dequantising it and calling ``linear``, chosen by the number of rows (its kernel up to 1,536 on
    CUDA): the real track's training steps (16 x 384 rows) dequantise, the answers' decode steps (one row per
    question) mostly do not, so the dequantised base sums in other orders than the 4-bit one. On one H200 an adapter
    scored 1.5-1.9x faster dequantised, 7 of 578 verdicts differing from the 4-bit model's (docs/bench/
    h200-evaluation/). A dequantised base holds its weights in bfloat16 in each worker (about 16 GB for an 8B model
    against about 5 GB in 4-bit; ``check_worker_memory`` refuses more workers than a GPU holds), and without a
    quantiser ``generate.generation_plan`` may compile a long answer job (from ``COMPILE_MIN_STEPS`` decode steps; 06
    of the GPU preset has 48)."""
    check_weights(weights)
    if adapter is not None and expected_key is not None \
            and read_json(Path(adapter) / "metrics.json").get("settings_key") != expected_key:
        raise RuntimeError(f"the adapter in {adapter} was trained with other settings than notebook 05 last recorded "
                           "(an interrupted rerun?): rerun notebooks/05_qlora_training.ipynb to finish it")
    if setup.device == "cpu":  # a copy of the base this process loaded once (the adapter changes the model it wraps)
        base = copy.deepcopy(_cpu_base(base_path, setup, _folder_stamp(base_path)))
    else:
        base = load_base(base_path, setup)
        if weights != "4bit" and setup.quantization == "nf4":
            base = base.dequantize(dtype=setup.dtype)
    model = base.eval() if adapter is None else load_adapter(base_path, adapter, setup, base=base)
    return model, load_tokenizer(base_path)


def check_worker_memory(weights: str, base_gib: float, workers_per_gpu: dict[str, int], free_gib: dict[str, float],
                        headroom: float = 1.25) -> None:
    """Refuse, before anything loads, ``weights`` "dequantised" or "merged" on GPUs that cannot hold the dequantised
    base (``base_gib``, in the compute dtype) once in each of their workers (``workers_per_gpu``: notebook 06's
    ``eval_workers`` as ``workers.plan`` spread them), with ``headroom`` for the answers' batches, given each GPU's
    ``free_gib``. A 4-bit base takes about a quarter of that and is not checked here. Names the number of workers
    that fits on every GPU and the other way out, instead of a CUDA out-of-memory error in the middle of the stage:
    an 8B base dequantised is about 15 GiB, so ten workers on one 141 GiB H200 would not fit. The headroom is a
    floor, not an estimate: a large ``answer_batch_size`` on a large model needs more for its cache."""
    check_weights(weights)
    if weights == "4bit":
        return
    short = [(gpu, n) for gpu, n in sorted(workers_per_gpu.items()) if n * base_gib * headroom > free_gib[gpu]]
    if not short:
        return
    gpu, n = short[0]
    fits = min(int(free_gib[g] // (base_gib * headroom)) for g in workers_per_gpu)  # on the fullest GPU
    fewer = f"set eval_workers to {fits * len(workers_per_gpu)} or fewer, or" if fits else "not even one worker fits:"
    raise MemoryError(
        f"eval_weights = {weights!r} holds the base dequantised ({base_gib:.1f} GiB) in each worker: {n} on GPU {gpu} "
        f"need about {n * base_gib * headroom:.1f} GiB with room for the answers, and it has {free_gib[gpu]:.1f} GiB "
        f"free; {fewer} set eval_weights = '4bit' (about a quarter of the memory)")


def worker_memory_on_gpus(plan, base_path: str, setup: Setup, weights: str) -> None:
    """``check_worker_memory`` for ``plan``'s GPUs (``workers.plan``'s devices, named as ``CUDA_VISIBLE_DEVICES``
    names them; this process sees them in that order) and the base at ``base_path`` in the compute dtype. Nothing to
    check on a CPU, with "4bit", or for a base that is not 4-bit (then each worker holds it as it is, in every
    setting). The calling process's own copy of the base (the general answers it makes first) is freed before the
    workers start (``evaluation.score_models``)."""
    if setup.device != "cuda" or weights == "4bit" or setup.quantization != "nf4":
        return
    from .placement import free_gib, weights_gib
    from .workers import visible_gpus

    index = {name: i for i, name in enumerate(visible_gpus())}
    counts = {d: plan.devices.count(d) for d in set(plan.devices)}
    check_worker_memory(weights, weights_gib(base_path, setup.dtype), counts, {d: free_gib(index[d]) for d in counts})


def merged_for_scoring(model, setup: Setup, weights: str = "4bit"):
    """``model`` (``load_for_eval``'s) with its LoRA adapter merged into the weights (peft's ``merge_and_unload``)
    on a CPU, where that is exact to float32 rounding (the base is float32: ``_dequantized_on_cpu``), and on a GPU
    when ``weights`` is "merged" (``load_for_eval``), where bfloat16 rounds the adapter into the weights (14 of 578
    verdicts differed from the 4-bit model's for an adapter, at 2.5-3.1x its speed on one H200:
    docs/bench/h200-evaluation/). Its greedy answers and multiple choice then run one linear layer where the
    adapter ran the base's and its own side by side (on a CPU equal to float32 rounding, so a greedy near-tie
    could still flip; the same answers and scores on the lab and on SmolLM2's smoke run: docs/performance.md).
    Otherwise the model is returned as it is; so is a model with no adapter, and one whose LoRA layers adapt the
    embedding that the output head shares (``target_modules`` naming ``embed_tokens`` or ``lm_head`` of a tied
    model: merged, the change would reach both ends). Merging changes ``model`` in place: a KL drift that switches
    the adapter off runs before (``evaluation.score_adapter``); one with the base's side computed before runs after,
    on the merged model."""
    check_weights(weights)
    if (setup.device != "cpu" and weights != "merged") or not hasattr(model, "merge_and_unload"):
        return model
    from peft.tuners.lora import LoraLayer

    shared = model.get_input_embeddings().weight.data_ptr()
    if any(isinstance(m, LoraLayer) and m.get_base_layer().weight.data_ptr() == shared for m in model.modules()):
        return model
    return model.merge_and_unload()


def _folder_stamp(path: str) -> tuple:
    """The files of a model folder with their sizes and modification times: a base converted again is loaded again."""
    folder = Path(path)
    if not folder.is_dir():  # a hub name: its files are the hub cache's, which do not change under one name
        return (path,)
    return tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in folder.iterdir() if f.is_file()))


@lru_cache(maxsize=1)
def _cpu_base(base_path: str, setup: Setup, stamp: tuple):
    """On a CPU, the base as ``load_for_eval`` serves it, loaded once per process and ``stamp`` (``_folder_stamp``):
    notebook 06 scores the base and every adapter on it, and on the 2-core CPU each load of SmolLM2 (4-bit
    quantising, then ``_dequantized_on_cpu``) took about 3 s, a third of a smoke run's 06 (docs/performance.md).
    Callers get copies (``load_for_eval``), never this model. One throwaway pass of a few tokens warms the process
    first: on the 2-core CPU the first forward pass of a process gave other bits than later ones in 2 of 5
    processes (SmolLM2, two threads; the same batch later, and every pass after a warm-up, repeated in every
    process), and the prompt cache keeps that first pass for multiple choice and the drift (docs/performance.md)."""
    import torch

    model = _dequantized_on_cpu(load_base(base_path, setup), setup)
    with torch.no_grad():
        model(input_ids=torch.ones((1, 4), dtype=torch.long))
    return model


def _dequantized_on_cpu(model, setup: Setup):
    """On a CPU, the 4-bit base with every weight dequantised once (transformers' ``dequantize``): bitsandbytes' CPU
    path dequantises each weight to float32 at every matrix product and then multiplies, so the same weights
    dequantised once give the same numbers (tests/test_evaluation.py checks the logits are equal) about a fifth
    faster. On a GPU the 4-bit layers stay unless notebook 06's ``eval_weights`` says otherwise (``load_for_eval``)."""
    if setup.device != "cpu" or setup.quantization != "nf4":
        return model
    import torch

    return model.dequantize(dtype=torch.float32)
