"""The nine files: every set built (:func:`build`), written into a folder (:func:`write`, default ``data/``) and
compared with what is there (:func:`check`)."""

from __future__ import annotations

from pathlib import Path

from . import clinical, general, public, validation, velish
from .common import FILES, to_jsonl


def build() -> dict[str, list[dict]]:
    """Every file's rows, by key of ``FILES``."""
    general_rows, clinical_eval = general.general_items(), clinical.clinical_eval_items()
    velish_eval, public_rows = velish.velish_eval_items(), public.public_standin_rows()
    clinical_train, velish_train = clinical.clinical_train_rows(), velish.velish_train_rows()
    general_val = validation.general_validation_items(general_rows, clinical_train + velish_train + public_rows)
    clinical_val, velish_val = clinical.clinical_val_items(), velish.velish_val_items(velish_eval)
    leaks = public.public_leaks(public_rows, general_rows + general_val + clinical_eval + clinical_val + velish_eval
                                + velish_val)
    if leaks:
        raise ValueError("the public stand-in leaks the evaluation sets:\n" + "\n".join(leaks[:20]))
    return {"general": general_rows, "general_val": general_val, "clinical_train": clinical_train,
            "clinical_eval": clinical_eval, "clinical_val": clinical_val, "velish_train": velish_train,
            "velish_eval": velish_eval, "velish_val": velish_val, "public_standin": public_rows}


def default_folder() -> Path:
    """``data/`` at the repository root (found from the working directory, else from this file)."""
    from ..runs import repo_root

    try:
        return repo_root() / "data"
    except FileNotFoundError:
        return repo_root(Path(__file__).parent) / "data"


def write(folder: Path | str | None = None) -> dict[str, Path]:
    """Write the nine JSONL files into ``folder`` (default ``data/``); returns their paths."""
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, rows in build().items():
        paths[key] = folder / FILES[key]
        paths[key].write_text(to_jsonl(rows), encoding="utf-8")
    return paths


def check(folder: Path | str | None = None) -> list[str]:
    """The files in ``folder`` that differ from what the code builds now (missing ones included); [] if none."""
    folder = Path(folder) if folder is not None else default_folder()
    stale = []
    for key, rows in build().items():
        path = folder / FILES[key]
        if not path.exists() or path.read_text(encoding="utf-8") != to_jsonl(rows):
            stale.append(str(path))
    return stale
