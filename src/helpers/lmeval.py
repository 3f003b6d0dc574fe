"""lm-evaluation-harness (``lm-eval``) on this project's held-out sets: each set as two lm-eval tasks, run offline
on a base model or a base plus a LoRA adapter (lm-eval's Hugging Face model with ``peft=``).

For a set of rows with ``instruction``, ``answer``, optional ``aliases``, ``family`` and ``choices`` + ``label``
(the shipped ``data/*_eval.jsonl``, or a user's file of that shape):

* ``<name>_mc``, lm-eval's ``multiple_choice``: the question in the model's chat template (``apply_chat_template``),
  each choice appended right after the generation prompt (``target_delimiter: ""``); ``acc`` and ``acc_norm``
  (log-likelihood per character of the choice). The rows without choices are left out (``with_choices``). This is
  what ``loglik.multiple_choice`` computes, so the two agree item by item (``tests/test_lmeval.py``).
* ``<name>_answers``, ``generate_until``: greedy answers of at most ``max_gen_toks`` tokens, scored by
  ``lenient``: ``scoring.answer_matches`` (the answer or an alias inside the sentence, no other choice named).

``task_configs`` builds the tasks as lm-eval config dicts (with absolute data paths, for ``evaluate``);
``python -m helpers.lmeval write`` writes them for the shipped sets as YAML under ``data/lm_eval/`` (paths relative
to the repository root), so that lm-eval's own command line runs them from there:
``lm_eval --model hf --model_args pretrained=FOLDER --tasks general_eval_mc --include_path data/lm_eval
--apply_chat_template``.

An adapter that also trains tied embeddings in full (the lab's ``train_embeddings = True``) does not load through
lm-eval 0.4.13's hf model: it ties the weights again after peft has wrapped them (``KeyError: attribute 'weight'
already exists``). Adapters of LoRA layers only (the real track's presets) load, and score what notebook 06 scores.

lm-eval averages over questions; notebook 06 averages over families (each family counts the same), so compare
per question (``per_question``), or average lm-eval's per-question results by family.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from .runs import repo_root

SHIPPED = ("general_eval", "clinical_eval", "velish_eval")  # data/<name>.jsonl
TASKS_DIR = "data/lm_eval"  # under the repository root, beside the sets


def with_choices(dataset):
    """The rows that have two or more ``choices`` (lm-eval's ``process_docs`` of a ``_mc`` task)."""
    return dataset.filter(lambda row: len(row.get("choices") or []) >= 2)


def lenient(doc: dict, results: list[str]) -> dict:
    """lm-eval's ``process_results`` of an ``_answers`` task: 1.0 when the answer is given (``answer_matches``)."""
    from .scoring import _distractors, answer_matches

    ok = answer_matches(results[0], str(doc["answer"]), list(doc.get("aliases") or []), _distractors(doc))
    return {"lenient": float(ok)}


def task_configs(name: str, path: str | Path, max_gen_toks: int = 48) -> list[dict]:
    """The two lm-eval task configs (``<name>_mc``, ``<name>_answers``) of the held-out set at ``path``."""
    data = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}}, "test_split": "test",
            "doc_to_text": "{{instruction}}", "metadata": {"version": 1.0}}
    mc = {"task": f"{name}_mc", **data, "process_docs": with_choices, "output_type": "multiple_choice",
          "doc_to_choice": "{{choices}}", "doc_to_target": "label", "target_delimiter": "",
          "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                          {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}]}
    answers = {"task": f"{name}_answers", **data, "output_type": "generate_until", "doc_to_target": "answer",
               "generation_kwargs": {"until": [], "do_sample": False, "max_gen_toks": max_gen_toks},
               "process_results": lenient,
               "metric_list": [{"metric": "lenient", "aggregation": "mean", "higher_is_better": True}]}
    return [mc, answers]


@lru_cache(maxsize=2)
def task_manager(defaults: bool = True):
    """lm-eval's task index with this repository's tasks (``data/lm_eval/``) added to its own (built once: indexing
    lm-eval's thousands of task files took 8.9 s on the 2-core CPU, 17-20 s on 2026-11-30). ``defaults=False``:
    this repository's tasks alone, which needs no index (what a run that scores only the shipped sets uses)."""
    from lm_eval.tasks import TaskManager

    with _lm_eval_logs(logging.ERROR):  # the index's notes on the task files it skips
        return TaskManager(include_path=str(repo_root() / TASKS_DIR), include_defaults=defaults)


@contextmanager
def _lm_eval_logs(level: int):
    """lm-eval's loggers at ``level`` for a while: its ``verbosity`` arguments are deprecated (0.4.13, the pinned
    version) in favour of the logging configuration (and ``simple_evaluate``'s reconfigured the process's logging)."""
    log = logging.getLogger("lm_eval")
    before = log.level
    log.setLevel(level)
    try:
        yield
    finally:
        log.setLevel(before)


def manager_for(resolved: list):
    """The task manager for ``resolved`` tasks (``resolve_tasks``' output): lm-eval's own index only when one of
    them is a name of lm-eval's (the shipped sets' come as configs and need none)."""
    return task_manager(defaults=any(isinstance(t, str) for t in resolved))


def resolve_tasks(tasks: list) -> list:
    """``tasks`` with the shipped sets' task names (``general_eval_mc``, ...) replaced by their configs with absolute
    data paths: the YAMLs' paths are relative to the repository root, and a notebook runs in ``notebooks/``."""
    shipped = {c["task"]: c for name in SHIPPED
               for c in task_configs(name, repo_root() / "data" / f"{name}.jsonl")}
    return [shipped.get(t, t) if isinstance(t, str) else t for t in tasks]


def evaluate(model_path: str, tasks: list, *, adapter: str | Path | None = None, dtype: str = "auto",
             device: str = "cpu", batch_size: int | str = 16, limit: int | None = None) -> dict:
    """lm-eval's ``simple_evaluate`` on ``tasks`` (configs from ``task_configs``, or names of lm-eval tasks and of
    this repository's, ``task_manager``) for the model at ``model_path`` (a local folder), with ``adapter`` (a peft
    LoRA folder) on top, as lm-eval's command line loads them (``peft=``); in the model's chat template;
    per-question results kept (``samples``). Returns lm-eval's results dict."""
    args = {"pretrained": str(model_path), "dtype": dtype}
    if adapter is not None:
        args["peft"] = str(adapter)
    return _simple_evaluate("hf", tasks, limit, model_args=args, device=device, batch_size=batch_size)


# What lm-eval's Hugging Face model warns whenever it is handed a loaded model, as evaluate_loaded always does, in
# one process: a warning about this module's own choice, not about the user's run
HANDED_A_MODEL = ("`pretrained` model kwarg is not of type `str`", "Passed an already-initialized model")


class _HandedAModel(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(HANDED_A_MODEL)


def evaluate_loaded(model, tokenizer, tasks: list, *, batch_size: int = 16, limit: int | None = None,
                    progress: bool = True) -> dict:
    """``evaluate`` for a model already loaded (notebook 06's: the base 4-bit as notebook 05 trained it, its
    adapter on top), handed to lm-eval's Hugging Face model as it is: lm-eval's own loading takes no 4-bit
    settings (``load_in_4bit`` is gone from transformers 5's ``from_pretrained``). lm-eval's two warnings about
    being handed a model (``HANDED_A_MODEL``) are dropped; ``progress=False`` turns off its progress bars over the
    requests, as the notebook's ``progress`` does ours."""
    from lm_eval.models.huggingface import HFLM

    log = logging.getLogger(HFLM.__module__)
    quiet = _HandedAModel()
    log.addFilter(quiet)
    try:
        lm = (HFLM if progress else _quiet(HFLM))(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    finally:
        log.removeFilter(quiet)
    return _simple_evaluate(lm, tasks, limit)


@lru_cache(maxsize=None)
def _quiet(hflm: type) -> type:
    """lm-eval's Hugging Face model with the progress bars of its three request types off (lm-eval's evaluator
    calls them without their ``disable_tqdm``); one class per process."""
    class Quiet(hflm):
        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=True)

    return Quiet


def _simple_evaluate(model, tasks: list, limit: int | None, **kwargs) -> dict:
    """What every evaluation here shares: the shipped sets by absolute path, the chat template, per-question
    samples kept, this repository's tasks indexed."""
    import lm_eval

    resolved = resolve_tasks(tasks)
    manager = manager_for(resolved)
    with _lm_eval_logs(logging.WARNING):
        return lm_eval.simple_evaluate(model=model, tasks=resolved, limit=limit, apply_chat_template=True,
                                       log_samples=True, task_manager=manager, **kwargs)


def embeddings_problem(train_embeddings: bool) -> str | None:
    """Why benchmarks cannot score adapters that also train the (tied) embeddings in full, or None when they can
    (the module's docstring says what fails)."""
    if not train_embeddings:
        return None
    return ("benchmarks need adapters of LoRA layers only, and 05 trains the embeddings too "
            "(train_embeddings = true), which lm-eval's model cannot load: set train_embeddings = false or "
            "benchmarks = []")


def check_benchmarks(names: list[str]) -> list[str]:
    """Problems with notebook 06's ``benchmarks``, found before any notebook runs: lm-eval missing, a name that is
    no lm-eval task (with the closest ones), or a task whose data cannot be read here (no dataset hub reachable and
    not in the local datasets cache), with how to cache it beforehand.

    A name whose task file ``_task_folders`` finds is tried first with an index of that folder alone (a fraction of
    a second); lm-eval's whole index (about 17-20 s on the 2-core CPU) is built only for a name not found that way,
    or when the narrow try fails for another reason than reading the data."""
    import difflib
    from contextlib import ExitStack
    from unittest import mock

    if not names:
        return []
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        return ["benchmarks: lm-eval is not installed: pip install -e '.[eval]'"]
    import datasets
    import huggingface_hub

    from .models import hub_reachable

    problems = []
    offline = hub_reachable()  # the reason the hub cannot be reached, or "" when it can
    with ExitStack() as stack:
        if offline:  # read the local cache only, instead of retrying a hub that does not answer
            stack.enter_context(mock.patch.object(datasets.config, "HF_HUB_OFFLINE", True))
            stack.enter_context(mock.patch.object(huggingface_hub.constants, "HF_HUB_OFFLINE", True))
        for name in names:
            error, decided = None, False
            narrow = _narrow_manager(name)
            if narrow is not None and name in narrow.all_tasks:
                error = _load_error(narrow, name)
                decided = error is None or _reading_data(error)  # else: perhaps a subtask in another folder
            if not decided:
                manager = task_manager(defaults=True)
                if name not in manager.all_tasks:
                    close = difflib.get_close_matches(name, sorted(manager.all_tasks), n=3)
                    problems.append(f"benchmarks: {name!r} is no lm-eval task"
                                    + (f" (closest: {close})" if close else "") + "; `lm_eval ls tasks` lists them")
                    continue
                error = _load_error(manager, name)
            if error is None:
                continue
            problems.append(
                f"benchmarks: {name!r}: its data could not be read here ({type(error).__name__}: {str(error)[:160]})."
                + (" No dataset hub is reachable, so it must be in the local datasets cache: on a machine with a "
                   f"hub run `lm_eval --model hf --model_args pretrained=<a small model> --tasks {name} --limit 1`"
                   " with the same HF_HOME, then bring that cache here" if offline else ""))
    return problems


def _narrow_manager(name: str):
    """A task index that holds ``name`` without lm-eval's whole index, or None: this repository's tasks alone for a
    shipped set's, else the folders of lm-eval's own that ``_task_folders`` finds naming it (with this repository's)."""
    own = task_manager(defaults=False)
    if name in own.all_tasks:
        return own
    folders = _task_folders().get(name)
    if not folders:
        return None
    from lm_eval.tasks import TaskManager

    with _lm_eval_logs(logging.ERROR):
        return TaskManager(include_path=[*map(str, folders), str(repo_root() / TASKS_DIR)], include_defaults=False)


def _load_error(manager, name: str) -> Exception | None:
    """What building task ``name`` (which reads its dataset) raised through ``manager``, or None."""
    try:
        manager.load([name])
    except Exception as err:  # noqa: BLE001 -- the caller tells a data problem from another
        return err
    return None


def _reading_data(error: Exception) -> bool:
    """Whether ``error`` came from reading a dataset (a frame of ``datasets`` or ``huggingface_hub`` in its
    traceback), not from lm-eval's index (a task or subtask it does not know)."""
    import traceback

    import datasets
    import huggingface_hub

    packages = tuple(str(Path(m.__file__).resolve().parent / "_")[:-1] for m in (datasets, huggingface_hub))
    return any(str(Path(frame.filename).resolve()).startswith(packages)
               for frame in traceback.extract_tb(error.__traceback__))


@lru_cache(maxsize=1)
def _task_folders() -> dict[str, list[Path]]:
    """Each name a task file of lm-eval's own names on a top-level ``task:``, ``group:`` or ``tag:`` line, with the
    folders holding those files: a scan of its text (about 0.6 s for 14k files), not lm-eval's index. It misses the
    names a file builds otherwise (about 2,500 of 14,700 in 0.4.13), which ``check_benchmarks`` then looks up in
    the whole index; if lm-eval's files move, it finds nothing and every name goes that way."""
    import os
    import re

    import lm_eval.tasks

    line = re.compile(r"^(?:task|group|tag):\s*['\"]?([\w\-.]+)", re.M)
    found: dict[str, list[Path]] = {}
    for top, _, files in os.walk(Path(lm_eval.tasks.__file__).parent):
        for name in files:
            if name.endswith((".yaml", ".yml")):
                with open(os.path.join(top, name), errors="replace") as fh:
                    for task in line.findall(fh.read()):
                        if Path(top) not in found.setdefault(task, []):
                            found[task].append(Path(top))
    return found


def headline_metrics(results: dict) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of lm-eval's ``results["results"]``: the numbers only, filter names dropped
    ("acc,none" -> "acc"), standard errors left out."""
    out = {}
    for task, metrics in results["results"].items():
        values = {k.split(",")[0]: float(v) for k, v in metrics.items()
                  if "," in k and "_stderr" not in k and isinstance(v, (int, float))}
        if values:
            out[task] = values
    return out


def per_question(results: dict, task: str, metric: str) -> list[float]:
    """``metric`` of each question of ``task``, in the set's order (lm-eval's samples carry ``doc_id``)."""
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [float(s[metric]) for s in samples]


def _yaml(config: dict) -> str:
    import yaml

    out = dict(config)
    functions = {"process_docs": "with_choices", "process_results": "lenient"}
    text = yaml.safe_dump({k: v for k, v in out.items() if k not in functions}, sort_keys=False, width=120)
    for key, fn in functions.items():
        if key in out:
            text += f"{key}: !function utils.{fn}\n"
    return text


UTILS = '''"""The Python functions the task YAMLs here name (written by `python -m helpers.lmeval write`)."""
from helpers.lmeval import lenient, with_choices  # noqa: F401
'''


def write(root: Path | None = None) -> list[Path]:
    """Write the shipped sets' task YAMLs (and the ``utils.py`` they name) under ``data/lm_eval/``."""
    root = root or repo_root()
    folder = root / TASKS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SHIPPED:
        for config in task_configs(name, f"data/{name}.jsonl"):
            path = folder / f"{config['task']}.yaml"
            path.write_text("# written by `python -m helpers.lmeval write`; run lm_eval from the repository root\n"
                            + _yaml(config))
            written.append(path)
    (folder / "utils.py").write_text(UTILS)
    return written + [folder / "utils.py"]


if __name__ == "__main__":
    if sys.argv[1:] != ["write"]:
        sys.exit("usage: python -m helpers.lmeval write")
    for p in write():
        print(p)
