"""Where each stage reads and writes: ``outputs/<run>/<stage>/`` with ``metrics.json``, ``manifest.json``, figures.

The stages, in order, and the notebook that produces each:
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
import uuid
from pathlib import Path
from typing import Any

STAGES = {
    "00_lab": "00_lab_world",
    "01_reconstruct": "01_reconstruct_distribution",
    "02_generation": "02_multi_model_generation",
    "03_filtering": "03_filtering",
    "04_mixing": "04_mixing",
    "05_training": "05_qlora_training",
    "06_evaluation": "06_evaluation",
}
__doc__ += "\n".join(f"* ``{s}`` <- ``notebooks/{nb}.ipynb``" for s, nb in STAGES.items())


def stage_of(notebook: str) -> str | None:
    """The stage notebook ``NN_name`` writes (notebook 03 writes ``03_filtering``), by its number; None if none."""
    return next((stage for stage in STAGES if stage[:2] == notebook[:2]), None)


def repo_root(start: Path | None = None) -> Path:
    """The folder holding ``pyproject.toml`` and ``notebooks/``, searched upwards from ``start`` (default: cwd),
    then from this package's own folder (an editable install run from elsewhere)."""
    here = (start or Path.cwd()).resolve()
    package = Path(__file__).resolve().parent
    for p in [here, *here.parents, *([] if start else package.parents)]:
        if (p / "pyproject.toml").exists() and (p / "notebooks").is_dir():
            return p
    raise FileNotFoundError(
        f"cannot find the repository root (a folder with pyproject.toml and notebooks/) above {here}; "
        "run from inside the repository or set HELPERS_OUTPUTS to the outputs folder"
    )


def find_local(source: str) -> Path | None:
    """The file or folder ``source`` names (``~`` expanded): from the working directory, else from the repository
    root (papermill and JupyterLab run notebooks in notebooks/, so a preset's ``data/x.jsonl`` means the
    repository's data/ folder); None if neither has it."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    in_repo = under_repo_root(path)
    return in_repo if in_repo is not None and in_repo.exists() else None


def under_repo_root(path: Path) -> Path | None:
    """``path`` under the repository root, if it is relative and we are inside a checkout; else None."""
    if path.is_absolute():
        return None
    try:
        return repo_root() / path
    except FileNotFoundError:  # not inside a checkout
        return None


def safe_name(name: str) -> str:
    """A folder name for a model name, a path or a hub id: unchanged when it is a plain name (``base``); otherwise
    its last part, made safe, plus a short hash of the whole (``/models/m`` -> ``m-1a2b3c4d``), so that a model's
    path never decides where outputs go."""
    import hashlib
    import re

    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) and name not in (".", ".."):
        return name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.rstrip("/\\")).name or "model").strip("._") or "model"
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def outputs_root() -> Path:
    env = os.environ.get("HELPERS_OUTPUTS")
    return Path(env).resolve() if env else repo_root() / "outputs"


RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class BadRunName(ValueError):
    pass


def run_dir(run_name: str) -> Path:
    """``outputs/<run_name>``: the one place a run's folder is made from its name, so that no name writes outside
    ``outputs/``. A run name is a plain folder name: letters, digits, ``.``, ``_`` and ``-``, starting with a letter
    or a digit (``lab``, ``smollm2-gpu``, ``my_run.2``)."""
    if not isinstance(run_name, str) or not RUN_NAME.fullmatch(run_name):
        raise BadRunName(f"run_name = {run_name!r}: a run name is a plain folder name under outputs/ (letters, "
                         "digits, '.', '_' and '-', starting with a letter or digit), e.g. run_name = 'my-run'")
    return outputs_root() / run_name


def stage_dir(run_name: str, stage: str, create: bool = True) -> Path:
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    d = run_dir(run_name) / stage
    if create:
        d.mkdir(parents=True, exist_ok=True)
    return d


class MissingArtifact(FileNotFoundError):
    pass


class StaleArtifact(RuntimeError):
    """An earlier stage's output was made from inputs that have changed since (an upstream notebook was rerun)."""


# Lineage: each finished stage gets a random ``stamp`` in its manifest and records the stamps of the stages it read
# (``inputs``); a stage built from an older run of one of its inputs is stale, and so is everything after it.
_consumed: dict[str, dict[str, str | None]] = {}


def stamp(run_name: str, stage: str) -> str | None:
    """The stamp of a stage's last finished run (None: never finished, or finished before stamps existed)."""
    manifest = stage_dir(run_name, stage, create=False) / "manifest.json"
    return read_json(manifest).get("stamp") if manifest.exists() else None


def stale_stages(run_name: str, stage: str) -> list[str]:
    """The stages in ``stage``'s lineage (itself included) built from an input that has been rerun since (an
    input whose folder is absent, as in a partial copy of a run, is not counted)."""
    manifest = stage_dir(run_name, stage, create=False) / "manifest.json"
    inputs = read_json(manifest).get("inputs", {}) if manifest.exists() else {}
    stale = []
    for upstream, used in inputs.items():
        if upstream >= stage or upstream not in STAGES:
            continue
        current = stamp(run_name, upstream)
        if current is None:  # not there (a partial copy of a run): nothing says it was rerun
            continue
        if current != used:
            stale.append(stage)
        stale += stale_stages(run_name, upstream)
    return sorted(set(stale))


def require(run_name: str, stage: str, filename: str = "metrics.json") -> Path:
    """Path of an artifact an earlier stage wrote; a clear error naming the notebook to run first if it is missing,
    or every notebook to rerun if it was made from inputs that changed since (``StaleArtifact``). The stage's stamp
    is recorded as an input of the stage that finishes next in this process (``finish_stage``)."""
    path = stage_dir(run_name, stage, create=False) / filename
    if not path.exists():
        nb = STAGES[stage]
        raise MissingArtifact(
            f"{path} is missing: run notebooks/{nb}.ipynb first for run {run_name!r} "
            f"(python -m helpers.pipeline run --preset presets/<preset>.yaml --only {stage[:2]})"
        )
    if unfinished(run_name, stage):
        nb = STAGES[stage]
        raise StaleArtifact(
            f"{path.parent} is from a run of notebooks/{nb}.ipynb that began rewriting its files and did not finish "
            f"(it failed or was stopped): rerun it for run {run_name!r} (python -m helpers.pipeline run --preset "
            f"presets/<preset>.yaml --only {stage[:2]})"
        )
    stale = stale_stages(run_name, stage)
    if stale:
        first = min(stale)
        rerun = [f"notebooks/{nb}.ipynb" for s, nb in STAGES.items() if s >= first]
        raise StaleArtifact(
            f"{run_dir(run_name) / first} was made from an earlier run of the notebooks before it, which have been "
            f"rerun since: rerun, in order, {', '.join(rerun)} (python -m helpers.pipeline run --preset "
            f"presets/<preset>.yaml --from {first[:2]})"
        )
    _consumed.setdefault(run_name, {})[stage] = stamp(run_name, stage)
    return path


def unfinished(run_name: str, stage: str) -> bool:
    """Whether the stage's last run began rewriting its files and did not finish (``mark_unfinished``)."""
    manifest = stage_dir(run_name, stage, create=False) / "manifest.json"
    return manifest.exists() and bool(read_json(manifest).get("unfinished"))


def mark_unfinished(run_name: str, stage: str) -> None:
    """Mark a finished stage's manifest ``unfinished`` as its notebook starts again (``pipeline.settle_parameters``
    does, before any cell writes): until ``finish_stage`` writes a new manifest, the later stages refuse its files
    (``require``), so a rerun that fails half-way cannot pass its new files off under the old stamp."""
    manifest = stage_dir(run_name, stage, create=False) / "manifest.json"
    if manifest.exists():
        recorded = read_json(manifest)
        if not recorded.get("unfinished"):
            write_json(manifest, {**recorded, "unfinished": True})


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return obj.item()
    return obj


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=1, sort_keys=False) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: Path, rows) -> Path:
    """One JSON object per line, written to a temporary file and renamed into place."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(_jsonable(row)) + "\n")
    tmp.replace(path)
    return path


def read_jsonl(path: Path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_figure(fig, path: Path) -> Path:
    """Lay out, save (PNG, 110 dpi) and close a figure; notebooks display the saved file, so an open figure would be
    drawn twice."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def trouble(signs: dict[str, bool | None]) -> list[str]:
    """Print each sign of trouble whose condition holds (``{message: condition}``), once, as a visible line in the
    notebook, and return their messages for the stage's ``metrics.json`` (``warnings``). Trouble is not an error:
    the stage's results stand, but the reader should look before going on."""
    found = [message for message, holds in signs.items() if holds]
    for message in found:
        print(f"WARNING: {message}", flush=True)
    return found


def stage_warnings(run_name: str) -> dict[str, list[str]]:
    """The ``WARNING:`` lines of every finished stage of a run (each stage's ``metrics.json``, ``warnings``), by
    stage: what the runner repeats on its terminal and notebook 06 lists in ``report.md``."""
    found = {}
    for stage in STAGES:
        path = stage_dir(run_name, stage, create=False) / "metrics.json"
        if path.exists() and (warnings := read_json(path).get("warnings")):
            found[stage] = list(warnings)
    return found


def finish_stage(run_name: str, stage: str, params: dict, metrics: dict, figures: list[str] = ()) -> Path:
    """Write ``metrics.json`` and a small ``manifest.json`` (parameters, files, versions, a new ``stamp`` and the
    stamps of the earlier stages this process read: ``inputs``) for a stage."""
    import torch
    import transformers

    d = stage_dir(run_name, stage)
    write_json(d / "metrics.json", metrics)
    inputs = {s: v for s, v in _consumed.pop(run_name, {}).items() if s < stage}  # earlier stages only: no cycles
    files = sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() and p.name != "manifest.json")
    write_json(
        d / "manifest.json",
        {
            "stage": stage,
            "notebook": f"notebooks/{STAGES[stage]}.ipynb",
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "stamp": uuid.uuid4().hex,
            "inputs": inputs,
            "params": params,
            "figures": list(figures),
            "files": files,
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "transformers": transformers.__version__},
        },
    )
    return d
