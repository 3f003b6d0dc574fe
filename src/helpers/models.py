"""Loading the models a preset names: a lab zoo name (from stage 00), a local path, or a hub id."""

from __future__ import annotations

from pathlib import Path

from .runs import find_local, read_json, stage_dir


def resolve(run_name: str, name: str) -> str:
    """Lab zoo names resolve through ``outputs/<run>/00_lab/models.json``; anything else is a path (relative ones
    are also looked up from the repository root) or a hub id."""
    models_json = stage_dir(run_name, "00_lab", create=False) / "models.json"
    if models_json.exists():
        paths = read_json(models_json)
        if name in paths:
            return _moved(Path(paths[name]), models_json.parent)
    from .lab.zoo import ZOO

    if name in ZOO:
        raise FileNotFoundError(f"{models_json} is missing: run notebooks/00_lab_world.ipynb first for run "
                                f"{run_name!r} (it prepares the lab model {name!r})")
    found = find_local(name)  # notebooks run in notebooks/; a preset's models/x means the repository's
    return str(found) if found is not None else name


def _moved(path: Path, stage: Path) -> str:
    """A recorded zoo path, or where it is now if the outputs folder or the checkout moved (another machine)."""
    from .lab.zoo import ZOO_DIR

    if path.exists():
        return str(path)
    moved = {("00_lab", "zoo"): stage / "zoo" / path.name, ("lab", "zoo"): ZOO_DIR / path.name}.get(path.parts[-3:-1])
    if moved is None or not moved.exists():
        raise FileNotFoundError(f"{stage / 'models.json'} names {path}, which does not exist; rerun "
                                "notebooks/00_lab_world.ipynb for this run")
    return str(moved)


def load(run_name: str, name: str, device: str | None = None, dtype=None):
    """``(model, tokenizer)`` in eval mode, with a pad token and left padding for batched generation."""
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve(run_name, name)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    local = Path(path).exists()
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto").to(device).eval()
    except OSError as err:
        hint = "" if local else " (no such local folder; hub ids need a reachable model hub or a local copy)"
        raise OSError(f"cannot load model {name!r} from {path!r}{hint}: {err}") from err
    return model, tokenizer


def load_tokenizer(path: str):
    """A tokenizer for batched generation: a pad token (the eos token if it has none) and left padding."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer
