"""Where a model for generation goes on the GPUs (``models.load``): one GPU when it fits, else its layers over all
the visible GPUs through accelerate's big-model loading (``device_map="auto"`` with a ``max_memory`` per GPU), chosen
from the model's size and the GPUs' free memory, not by the user; a model larger than all of them is refused."""

from __future__ import annotations

HEADROOM = 1.25  # a model is placed on one GPU when its weights times this fit its free memory (activations, cache)


def placement(weights_gib: float, free_gib: list[float], name: str = "the model") -> dict[int, str] | None:
    """Where a model of ``weights_gib`` goes, given each visible GPU's free memory: None for the first GPU alone
    (it fits with ``HEADROOM``), else accelerate's ``max_memory`` for ``device_map="auto"``, which splits its layers
    over the GPUs (each up to 85% of its free memory, the rest for activations and the cache). A model larger than
    all of them together is refused, naming the sizes and the ways out."""
    if not free_gib or weights_gib * HEADROOM <= free_gib[0]:
        return None
    usable = [0.85 * f for f in free_gib]
    if weights_gib * HEADROOM > sum(usable):
        raise MemoryError(
            f"{name} needs about {weights_gib:.1f} GiB of weights (with room to run, {weights_gib * HEADROOM:.1f}); "
            f"the {len(free_gib)} visible GPU(s) have {sum(free_gib):.1f} GiB free. Use a smaller model or a "
            "quantised one (a 4-bit GGUF file or checkpoint), or a machine with more GPU memory")
    return {i: f"{u:.2f}GiB" for i, u in enumerate(usable)}


def weights_gib(path: str, dtype, config=None) -> float:
    """A model's weights in ``dtype``, from its config alone (accelerate's empty-weights model: nothing is loaded);
    ``config``: the one read from ``path`` already, if the caller has it."""
    from accelerate import init_empty_weights
    from accelerate.utils import compute_module_sizes
    from transformers import AutoConfig, AutoModelForCausalLM

    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config or AutoConfig.from_pretrained(path, trust_remote_code=False))
    return compute_module_sizes(empty, dtype=dtype)[""] / 2**30


def free_gib(index: int) -> float:
    """GiB free on the GPU this process sees as ``index``: from NVML (``torch.cuda.device_memory_used``, which needs
    the nvidia-ml-py package, not among this project's pins), which opens no CUDA context there (about 0.5 GiB held
    for the kernel's life on a GPU its workers use, not it), else from ``torch.cuda.mem_get_info``."""
    import torch

    try:
        return (torch.cuda.get_device_properties(index).total_memory - torch.cuda.device_memory_used(index)) / 2**30
    except Exception:  # no nvidia-ml-py, or NVML not reachable (a container): the CUDA runtime's count instead
        return torch.cuda.mem_get_info(index)[0] / 2**30


def gpu_placement(name: str, path: str, dtype) -> dict[int, str] | None:
    """``placement`` for the GPUs this process sees (their free memory now); None when one GPU holds the model, and
    for a checkpoint quantised already (its size is not the config's: it loads as before, on one GPU)."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    if getattr(config, "quantization_config", None):
        return None
    size = weights_gib(path, dtype, config)
    free = [free_gib(0)]
    if size * HEADROOM > free[0]:  # only then ask the other GPUs (without NVML, each answer opens a CUDA context)
        free += [free_gib(i) for i in range(1, torch.cuda.device_count())]
    try:
        spread = placement(size, free, repr(name))
    except MemoryError as err:
        if len(free) == 1:  # a worker process (gen_workers, score_workers) is pinned to one GPU
            raise MemoryError(f"{err}. This process sees one GPU: on a machine with several, set gen_workers = 1 "
                              "(and score_workers = 1) so that one process places the model over all of them") from None
        raise
    if spread:
        print(f"{name}: larger than GPU 0's free memory; its layers go over {len(spread)} GPUs "
              f"(accelerate's device_map='auto', max_memory {spread})", flush=True)
    return spread


def release_gpu_memory() -> None:
    """Hand the GPU memory of the models dropped just before back to the device, for the next model or process:
    Python's collector first (a model often sits in reference cycles), then torch's cache. Nothing without CUDA."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
