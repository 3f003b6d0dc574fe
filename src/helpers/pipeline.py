"""Run the notebooks in order with papermill, from a YAML preset.

    python -m helpers.pipeline run --preset presets/lab.yaml [--from NN] [--only NN] [-p key=value ...]
    python -m helpers.pipeline params            # every notebook's parameters and defaults

A preset is a flat YAML mapping of notebook parameters. Each notebook receives the preset keys its ``parameters``
cell declares; a key no notebook declares is an error that lists the valid ones, and a value whose type differs from
the default's is an error that names it. A notebook can also read a preset itself (its ``preset`` parameter, set in
JupyterLab or with ``papermill -p preset presets/lab.yaml``): ``settle_parameters``, called right after each
notebook's parameters cell, applies it and checks what papermill injected.
Executed copies go to ``outputs/<run_name>/notebooks/``, wall times to ``outputs/<run_name>/timings.json``; the run
stops at the first failing notebook, naming it and the cell. A failed run's copy is saved as ``NN_name.failed.ipynb``
beside the last successful one, which it never replaces.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import yaml

from .runs import BadRunName, mark_unfinished, repo_root, run_dir, stage_of, stage_warnings, write_json
from .sources import absolute_paths, preflight

# progress bars of tqdm's console class, transformers (through huggingface_hub's switch) and datasets
QUIET_ENV = ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")
NOTEBOOK_NAME = re.compile(r"^(\d\d)_\w+\.ipynb$")


class PipelineError(RuntimeError):
    pass


def discover(notebooks_dir: Path) -> list[Path]:
    found = sorted(p for p in Path(notebooks_dir).glob("*.ipynb") if NOTEBOOK_NAME.match(p.name))
    if not found:
        raise PipelineError(f"no numbered notebooks (NN_name.ipynb) in {notebooks_dir}")
    return found


def _inspected(path: Path) -> dict:
    """papermill's reading of a notebook's parameters cell, read once per version of the file (the runner asks for
    the same notebooks several times)."""
    stat = Path(path).stat()
    return _inspect_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _inspect_cached(path: str, mtime_ns: int, size: int) -> dict:
    import papermill  # here, not at the top: papermill imports nbformat and jsonschema, about 2 s that every
    # notebook's kernel would pay for its settle_parameters, which does not need them
    return papermill.inspect_notebook(path)


def notebook_parameters(path: Path, papermill_check: bool = True) -> dict[str, object]:
    """The names and default values of a notebook's single ``parameters`` cell (plain literals only). With
    ``papermill_check`` (the runner's reading), also that papermill parses every line of it; a notebook's own
    ``settle_parameters`` skips that check, and with it papermill's import."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))  # nbformat 4's JSON, read without nbformat's import
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"
             and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise PipelineError(f"{path.name}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = cells[0]["source"] if isinstance(cells[0]["source"], str) else "".join(cells[0]["source"])
    try:
        assigned = [(t.id, stmt.value) for stmt in ast.parse(source).body if isinstance(stmt, ast.Assign)
                    for t in stmt.targets if isinstance(t, ast.Name)]
    except SyntaxError as err:
        raise PipelineError(f"{path.name}: the parameters cell is not valid Python: {err}") from None
    if papermill_check:
        inspected = _inspected(path)
        unparsed = [name for name, _ in assigned if name not in inspected]
        if unparsed:
            raise PipelineError(f"{path.name}: papermill cannot parse the parameter line(s) for {unparsed}; keep "
                                "one `name = literal  # comment` per line, with no '=' or quotes in the comment")
    params = {}
    for name, value in assigned:
        try:
            params[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise PipelineError(f"{path.name}: parameter {name} = {ast.get_source_segment(source, value)} is not a "
                                "plain literal (papermill and YAML presets can only set literals)") from None
    return params


def _read_preset(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """A preset's values, with those of the preset its ``base:`` key names (a path relative to this preset's folder)
    underneath: ``base: lab.yaml`` plus the keys that differ."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_absolute() and (repo_root() / path).exists():
        path = repo_root() / path  # run from another working directory
    if not path.exists():
        where = f" (the base of {chain[-1]})" if chain else ""
        raise PipelineError(f"preset {path}{where} does not exist (presets live in {repo_root() / 'presets'})")
    if path.resolve() in [p.resolve() for p in chain]:
        raise PipelineError(f"preset {path}: its `base:` chain comes back to itself ({' -> '.join(map(str, chain))})")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineError(f"preset {path}{where} is not valid YAML: {getattr(err, 'problem', None) or err}; "
                            "a preset is lines of `name: value`") from None
    if not isinstance(loaded, dict):
        raise PipelineError(f"preset {path} must be a mapping of parameter: value, got {type(loaded).__name__}")
    base = loaded.pop(BASE_KEY, None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise PipelineError(f"preset {path}: `{BASE_KEY}:` names another preset file, e.g. `{BASE_KEY}: lab.yaml`; "
                            f"got {base!r}")
    return _read_preset(path.parent / base, (*chain, path)) | loaded


def load_preset(path: Path | None, overrides: list[str] = ()) -> dict:
    """A preset's values (``base:`` presets underneath), then the ``key=value`` overrides."""
    params: dict = dict(_read_preset(path)) if path is not None else {}
    for item in overrides:
        if "=" not in item:
            raise PipelineError(f"-p {item!r}: expected key=value, e.g. -p seed=1")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise PipelineError(f"-p {item!r}: the value is not valid YAML ({getattr(err, 'problem', err)}); "
                                "quote strings, write lists as [a, b]") from None
    return params


def select(notebooks: list[Path], start: str | None, only: list[str] | None) -> list[Path]:
    codes = [NOTEBOOK_NAME.match(p.name).group(1) for p in notebooks]
    for code in [start] + list(only or []):
        if code is not None and code.zfill(2) not in codes:
            raise PipelineError(f"no notebook numbered {code!r}; available: {codes}")
    if only:
        wanted = {c.zfill(2) for c in only}
        return [p for p, c in zip(notebooks, codes) if c in wanted]
    if start is not None:
        return [p for p, c in zip(notebooks, codes) if c >= start.zfill(2)]
    return notebooks


def check_upstream(run_name: str, notebooks: list[Path], chosen: list[Path], lab) -> None:
    """Each selected notebook's predecessor either runs before it in this pipeline or has finished in this run
    (its ``metrics.json``, not marked unfinished): else the notebook would start only to fail on a missing input.
    Notebook 01 of a real run (``lab`` false) needs no notebook 00. Staleness is the notebooks' own check."""
    from .runs import stage_dir, unfinished

    by_code = {p.stem[:2]: p for p in notebooks}
    for nb in chosen:
        code = int(nb.stem[:2])
        prev = by_code.get(f"{code - 1:02d}")
        if code == 0 or (code == 1 and lab is False) or prev is None or prev in chosen or stage_of(prev.stem) is None:
            continue
        folder = stage_dir(run_name, stage_of(prev.stem), create=False)
        how = f"python -m helpers.pipeline run --preset <preset> --from {prev.stem[:2]}"
        if not (folder / "metrics.json").exists():
            raise PipelineError(f"{nb.name} reads what {prev.name} writes, and run {run_name!r} has none ({folder} "
                                f"is missing): run {prev.name} first ({how})")
        if unfinished(run_name, stage_of(prev.stem)):
            raise PipelineError(f"{nb.name} reads what {prev.name} writes, and {folder} is from a run of it that did "
                                f"not finish (it failed or was stopped): rerun it first ({how})")


def check_keys(params: dict, declared: dict[str, dict]) -> None:
    import difflib

    valid = sorted({k for d in declared.values() for k in d})
    unknown = sorted(set(params) - set(valid))
    if unknown:
        hints = [f"{k}: did you mean {close[0]}?" if (close := difflib.get_close_matches(k, valid, n=1))
                 else f"{k}: no notebook has it" for k in unknown]
        raise PipelineError(f"unknown preset key(s) {unknown} ({'; '.join(hints)}); valid keys (declared by the "
                            f"notebooks' parameters cells): {valid}")


def numbers_from_text(params: dict, declared: dict[str, dict]) -> None:
    """YAML reads ``5e-4`` as text (it wants ``5.0e-4``): where a notebook's default is a number and the value is
    text that reads as one, take the number."""
    for key, value in params.items():
        defaults = [d[key] for d in declared.values() if key in d]
        if isinstance(value, str) and defaults and all(type(d) in (int, float) for d in defaults):
            try:
                params[key] = float(value) if type(defaults[0]) is float else int(value)
            except ValueError:
                pass  # not a number: check_types names the parameter and the expected type


def check_selected(overrides: list[str], declared: dict[str, dict], chosen: list[Path]) -> None:
    """A ``-p key=value`` that none of the selected notebooks declares would be silently ignored: refuse it, naming
    the notebooks that do declare it."""
    selected = {nb.stem for nb in chosen}
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        owners = {stem for stem, d in declared.items() if key in d}
        if owners and not owners & selected:
            raise PipelineError(f"-p {key}: no selected notebook reads it (it is a parameter of notebook(s) "
                                f"{', '.join(sorted(s[:2] for s in owners))}); add them to the run (--only, --from) "
                                "or drop it")


# Parameters whose value may be None although their default is not (a default of None always allows it).
NULLABLE = {"minhash_threshold": "None switches MinHash dedup off (03)",
            "embedding_threshold": "None switches embedding dedup off (03)"}
BASE_KEY = "base"  # a preset's key naming the preset it extends


def nullable(path: Path) -> set[str]:
    """The parameters of the notebook at ``path`` that may be None (``NULLABLE``)."""
    return set(NULLABLE) & set(notebook_parameters(path, papermill_check=False))


TYPE_NAMES = {bool: "true/false", int: "a whole number", float: "a number", str: "a string (text)",
              list: "a list, e.g. [a, b]", dict: "a mapping, e.g. {key: value}"}


def expected_type(default) -> type | None:
    for kind in (bool, int, float, str, list, dict):  # bool first: True is an int too
        if isinstance(default, kind):
            return kind
    return list if isinstance(default, tuple) else None


def type_problem(name: str, value, default, allow_none: bool = False) -> str | None:
    """Why ``value`` cannot stand for a parameter whose default is ``default``, or None when it can: the same
    type as the default (an int where a float is expected is fine; None only where the default is None or the
    parameter's comment allows it)."""
    kind = expected_type(default)
    if kind is None or (value is None and allow_none):
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        return None
    hint = ""
    if kind is list and isinstance(value, str):
        hint = f"; for one item write [{value}]"
    return (f"{name} = {value!r} ({type(value).__name__}): expected {TYPE_NAMES[kind]}, like the default "
            f"{default!r}{hint}")


def check_types(params: dict, notebooks: list[Path], declared: dict[str, dict] | None = None) -> list[str]:
    """Every preset or ``-p`` value checked against the type of its default in the notebooks that declare it
    (``declared``: ``notebook_parameters`` per notebook stem, when the caller has them already)."""
    problems = []
    for nb in notebooks:
        defaults = declared[nb.stem] if declared else notebook_parameters(nb)
        allow = nullable(nb)
        for key, value in params.items():
            if key in defaults:
                problem = type_problem(key, value, defaults[key], key in allow)
                if problem and problem not in problems:
                    problems.append(problem)
    return problems


PAPERMILL_HEADER = "# Parameters\n"  # first line of the cell papermill's Python translator injects


def injected_names(history: list[str]) -> list[str]:
    """The names papermill assigned in the parameters cell it injected, read from the kernel's input history
    (IPython's ``In``); empty when the notebook was not run by papermill."""
    for source in reversed(history or []):
        if source.startswith(PAPERMILL_HEADER):
            return [t.id for stmt in ast.parse(source).body if isinstance(stmt, ast.Assign)
                    for t in stmt.targets if isinstance(t, ast.Name)]
    return []


def settle_parameters(ns: dict, notebook: str) -> dict:
    """Called by every notebook right after its parameters cell, with ``globals()`` and its own name.

    - Under papermill, a parameter the notebook does not declare is an error, naming the notebook that does declare
      it or the closest valid name (papermill itself only warns and runs with the default), and every injected
      value is checked against the type of its default.
    - When ``preset`` names a YAML preset, its keys that this notebook declares replace the parameters cell's
      values (the one line a JupyterLab or Colab user changes); values passed to papermill explicitly win over it.

    Returns every parameter of the notebook with its settled value: what the notebook records in its manifest."""
    import difflib

    path = repo_root() / "notebooks" / f"{notebook}.ipynb"
    declared = notebook_parameters(path, papermill_check=False)  # the runner checked papermill's reading
    injected = injected_names(ns.get("In", []))
    allow_none = nullable(path)
    unknown = [name for name in injected if name not in declared]
    if unknown:
        owners: dict[str, list[str]] = {}
        for nb in discover(path.parent):
            for key in notebook_parameters(nb, papermill_check=False):
                owners.setdefault(key, []).append(nb.stem[:2])
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, list(declared), n=1) or difflib.get_close_matches(name, owners, n=1)
            if name in owners:
                hints.append(f"{name} is a parameter of notebook(s) {', '.join(owners[name])}")
            else:
                hints.append(f"{name}: did you mean {close[0]}?" if close else f"{name}: no notebook has it")
        raise PipelineError(
            f"{notebook}: unknown parameter(s) {unknown} ({'; '.join(hints)}). This notebook's parameters: "
            f"{sorted(declared)}. To give a notebook a preset file, pass `-p preset presets/NAME.yaml` (papermill's "
            "-f hands every key to every notebook), or run the chain with `python -m helpers.pipeline run`.")
    wrong = [problem for name in injected
             if (problem := type_problem(name, ns.get(name), declared[name], name in allow_none))]
    preset = ns.get("preset")
    applied = {}
    if preset:
        if not isinstance(preset, str):
            wrong.append(type_problem("preset", preset, "presets/NAME.yaml"))
        else:
            params = load_preset(Path(preset))
            if "preset" in params:
                raise PipelineError(f"preset {preset}: a preset cannot name another preset (key `preset`)")
            every = {nb.stem: notebook_parameters(nb, papermill_check=False) for nb in discover(path.parent)}
            check_keys(params, every)
            numbers_from_text(params, every)
            wrong += check_types(params, [path], {path.stem: declared})
            applied = {k: v for k, v in params.items() if k in declared and k not in injected}
    if wrong:
        raise PipelineError(f"{notebook}: parameter values of the wrong type:\n  " + "\n  ".join(wrong))
    ns.update(applied)
    stage = stage_of(notebook)
    if stage and isinstance(ns.get("run_name"), str):
        mark_unfinished(ns["run_name"], stage)  # until this notebook finishes, later ones refuse its files
    changed = {k: v for k, v in applied.items() if v != declared[k]}
    if preset:
        print(f"preset {preset}: " + (", ".join(f"{k}={v!r}" for k, v in changed.items()) or "nothing to change"))
    return {name: ns[name] for name in declared}


@contextmanager
def run_lock(run_path: Path):
    """Hold ``outputs/<run>/.pipeline.lock`` while a pipeline runs, so that a second pipeline on the same run refuses
    at once, naming the holder, instead of both writing the same files (the last writer would win). The operating
    system releases the lock when the holder exits, however it exits."""
    from filelock import FileLock, Timeout

    lock, holder = FileLock(run_path / ".pipeline.lock"), run_path / ".pipeline.holder.json"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = json.loads(holder.read_text()) if holder.exists() else {}
        raise PipelineError(
            f"run {run_path.name!r} is in use by another pipeline (pid {who.get('pid', '?')}, started "
            f"{who.get('started', '?')}: {who.get('command', '?')}); wait for it to finish, or give this one another "
            "run_name") from None
    try:
        holder.write_text(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv),
                                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def run(preset: Path | None = None, overrides: list[str] = (), start: str | None = None,
        only: list[str] | None = None, notebooks_dir: Path | None = None, log_output: bool = False) -> dict:
    """Execute the selected notebooks in order; return ``{notebook: seconds}``."""
    notebooks_dir = Path(notebooks_dir) if notebooks_dir else repo_root() / "notebooks"
    notebooks = discover(notebooks_dir)
    params = load_preset(preset, overrides)
    declared = {p.stem: notebook_parameters(p) for p in notebooks}
    check_keys(params, declared)
    numbers_from_text(params, declared)
    if "preset" in params:
        raise PipelineError("`preset` is a notebook parameter for JupyterLab and papermill; here pass --preset")
    wrong = check_types(params, notebooks, declared)
    if wrong:
        raise PipelineError("parameter values of the wrong type:\n  " + "\n  ".join(wrong))
    run_name = params["run_name"] if "run_name" in params else next(
        (d["run_name"] for d in declared.values() if "run_name" in d), None)  # "" is refused, not replaced
    if run_name is None:
        raise PipelineError("no run_name: set it in the preset or in the notebooks' parameters cells")
    try:
        run_path = run_dir(run_name)
    except BadRunName as err:
        raise PipelineError(str(err)) from None
    (run_path / "notebooks").mkdir(parents=True, exist_ok=True)
    with run_lock(run_path):  # one pipeline per run at a time
        timings_path = run_path / "timings.json"
        timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
        if start is None and not only and params.get("lab") is False:
            start = "01"  # notebook 00 builds the lab world, which a real run (lab: false) does not read
            print("[pipeline] lab: false, so notebook 00 (the lab world) is skipped: starting at 01", flush=True)
        chosen = select(notebooks, start, only)
        check_selected(list(overrides), declared, chosen)
        for given, path in absolute_paths(params).items():
            print(f"[pipeline] {given} -> {path}", flush=True)
        problems = preflight({nb.stem: {**declared[nb.stem], **{k: v for k, v in params.items() if k in declared[nb.stem]}}
                              for nb in chosen})
        if problems:
            raise PipelineError("checked before running anything:\n  " + "\n  ".join(problems))
        check_upstream(run_name, notebooks, chosen, params.get("lab", declared[chosen[0].stem].get("lab")))
        # Executed copies are read later, where a progress bar is only its first frame ("0%| 0/600"): bars are off in
        # them (our `progress` parameters, and the libraries' bars through their environment switches) unless the
        # preset asks for them.
        quiet = not params.get("progress", False)
        from .execute import NotebookFailed, execute  # here: papermill's import is the runner's alone (2 s)
        with mock.patch.dict(os.environ, {name: "1" for name in QUIET_ENV} if quiet else {}):  # restored on exit
            for nb in chosen:
                nb_params = {k: v for k, v in params.items() if k in declared[nb.stem]}
                if quiet and "progress" in declared[nb.stem]:
                    nb_params["progress"] = False
                out = run_path / "notebooks" / nb.name
                print(f"[pipeline] {nb.name} -> {out}  params={nb_params}", flush=True)
                t0 = time.perf_counter()
                try:
                    execute(nb, out, nb_params, log_output)
                except NotebookFailed as err:
                    raise PipelineError(str(err)) from None
                timings[nb.stem] = round(time.perf_counter() - t0, 1)
                write_json(timings_path, timings)
                print(f"[pipeline] {nb.name} done in {timings[nb.stem]} s", flush=True)
                for message in stage_warnings(run_name).get(stage_of(nb.stem), []):  # the notebook's own, on the terminal too
                    print(f"[pipeline] WARNING ({nb.stem[:2]}): {message}", flush=True)
        return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.pipeline", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="execute the notebooks in order")
    r.add_argument("--preset", type=Path, help="YAML file of parameters, e.g. presets/lab.yaml")
    r.add_argument("--from", dest="start", metavar="NN", help="start at notebook NN")
    r.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks")
    r.add_argument("-p", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter (YAML value), repeatable")
    r.add_argument("--notebooks", type=Path, help="notebooks folder (default: <repo>/notebooks)")
    r.add_argument("--log-output", action="store_true", help="stream cell output to the terminal")
    p = sub.add_parser("params", help="list every notebook's parameters and defaults")
    p.add_argument("--notebooks", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "params":
            for nb in discover(args.notebooks or repo_root() / "notebooks"):
                print(nb.name)
                for k, v in notebook_parameters(nb).items():
                    print(f"  {k} = {v}")
            return 0
        timings = run(args.preset, args.overrides, args.start, args.only, args.notebooks, args.log_output)
        print(json.dumps(timings, indent=1))
        return 0
    except KeyboardInterrupt as stop:  # one line, not a traceback (execute names the stopped notebook's copy)
        print(f"pipeline stopped (Ctrl-C){': ' + str(stop) if str(stop) else ''}; the notebooks that finished kept what "
              "they wrote, a stopped one is marked unfinished", file=sys.stderr)
        return 130  # the shell's code for a program ended by Ctrl-C (SIGINT)
    except PipelineError as err:
        print(f"pipeline error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
