"""Where a run's data and models come from, settled before its first notebook: relative paths made absolute by one
rule (``absolute_paths``), and every model name, data file and row checked (``preflight``), so that a typo or a bad
row fails in seconds, not after hours of the notebooks before it."""

from __future__ import annotations

from pathlib import Path

from .committee import MODEL_KEYS as SCORER_MODEL_KEYS  # 03's scorers' model parameters (committee.SCORERS)


MODEL_KEYS = {"model": None, "generators": None,
              **SCORER_MODEL_KEYS}  # parameter -> the scorer that uses it (None: always used)
DATA_KEYS = ("domain_data", "public_data", "eval_general", "eval_domain")


def absolute_paths(params: dict) -> dict[str, str]:
    """Relative file and folder names of data and models, made absolute by the one rule every reader uses
    (``runs.find_local``: the working directory, then the repository root), here in the runner's working directory:
    the notebooks run in notebooks/, where the same relative name could mean another file. Changes ``params`` in
    place; returns ``{"key: given": absolute}`` for what it changed."""
    from .lab.recipes import ZOO
    from .models import PACKAGED
    from .runs import find_local

    def absolute(name, model: bool):
        if not isinstance(name, str) or not name or Path(name).is_absolute() or (model and name in {*ZOO, *PACKAGED}):
            return name  # not a path, or a model name that models.resolve finds before any folder
        found = find_local(name)
        return str(found.resolve()) if found is not None else name  # else a hub id, or missing: preflight says

    changed = {}
    for key in (*DATA_KEYS, *MODEL_KEYS):
        value = params.get(key)
        model = key in MODEL_KEYS
        new = [absolute(v, model) for v in value] if isinstance(value, list) else absolute(value, model)
        if new != value:
            changed[f"{key}: {value}"] = new
            params[key] = new
    return changed


def preflight(values: dict[str, dict]) -> list[str]:
    """Every model name and data source the selected notebooks will read, checked before the first one runs
    (a missing file or an unreachable hub id would otherwise fail after the earlier notebooks' work):
    ``values`` maps notebook to its effective parameters (defaults + preset). Returns the problems found."""
    from . import models
    from .datafiles import looks_like_path, no_such_file, row_problems
    from .runs import find_local

    problems, seen = [], set()
    for nb, params in values.items():
        scorers = params.get("scorers") or []
        for key, scorer in MODEL_KEYS.items():
            value = params.get(key)
            if value in (None, "") or (scorer and scorer not in scorers):
                continue
            for name in [value] if isinstance(value, str) else value:
                if (key, name) in seen:
                    continue
                seen.add((key, name))
                try:
                    models.check_name(str(name))
                except (models.UnknownModel, FileNotFoundError) as err:
                    problems.append(f"{nb}: {key}: {err}")
        given = [key for key in DATA_KEYS if key.startswith("eval_") and params.get(key)]
        if params.get("lab") and given:
            problems.append(f"{nb}: {' and '.join(given)} set while lab = true, which scores the lab's own held-out "
                            "sets: set lab = false to score your files (or leave them empty)")
        for key in DATA_KEYS:
            source = params.get(key)
            if not source or (key.startswith("eval_") and params.get("lab")) or (key, source) in seen:
                continue
            seen.add((key, source))
            found = find_local(source)
            if found is not None:  # every row, read as the notebook will read it
                kind = "eval" if key.startswith("eval_") else "conversations"
                problems += [f"{nb}: {key}: {p}" for p in row_problems(str(found), kind)]
                continue
            if looks_like_path(source):
                problems.append(f"{nb}: {key}: {no_such_file(source)}")
            elif models.hub_reachable():
                problems.append(f"{nb}: {key}: {source!r} is no local file and would come from the dataset hub, "
                                f"which is not available ({models.hub_reachable()}); export it to a local file "
                                "(JSONL, CSV or Parquet) and name that file")
        if "gpus_per_arm" in params:  # notebook 05: checked here, so that a bad value does not wait for 05
            from . import workers
            from .qlora_configs import check_ranks

            try:
                n = check_ranks(params["gpus_per_arm"], params.get("train_batch_size", 1))
                workers.gpu_groups(n, workers.device())  # more GPUs than this machine shows is refused
            except ValueError as err:
                problems.append(f"{nb}: {err}")
        if params.get("benchmarks"):
            from .lmeval import check_benchmarks, embeddings_problem

            problems += [f"{nb}: {p}" for p in check_benchmarks(list(params["benchmarks"]))]
            problem = embeddings_problem(values.get("05_qlora_training", {}).get("train_embeddings", False))
            if problem:
                problems.append(f"{nb}: {problem}")
    return problems
