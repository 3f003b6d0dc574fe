"""Issue 26's table: what a user bringing their own data, or a tester, gets wrong, replayed row by row.

Each row is a command (the runner's command line, ``python -m helpers.pipeline run ...``, run in this process from a
folder outside the repository, as a user would) or a call into the code a notebook runs, and what the user must see:
a clear message naming the parameter, file or row and the fix, or the correct behaviour. The issue's tester tried 54
such inputs; their list was not kept, so this table rebuilds them from the issue's account (run names that escape
outputs/, relative paths, stale and unfinished stages, two runs at once, bad rows found late, dropped data, small
ones, trust) and adds the neighbours of each. No row may be silent or wrong, no message may carry a traceback, and
the last check is that nothing was written outside ``outputs/`` during the whole table.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from helpers import chat, committee, evaluation, heldout, mixing, models, pipeline, qlora_configs, report, runs
from helpers import reconstruct_distribution as rd
from tests.conftest import ROOT


@dataclass
class Cmd:
    """Runner arguments built in the table's folder (a row that first writes the user's files)."""
    build: Callable[[Path], list[str]]


@dataclass
class Row:
    id: str
    run: list[str] | Cmd | Callable  # runner arguments after `run`, or a call given the table's folder
    expect: str  # a regex the message must match (stderr for commands; the error, or the returned text, for calls)
    code: int = 1  # the runner's exit status; for calls, 0 = returns its text, 1 = raises
    error: type = Exception


def cli(args: list[str]) -> tuple[int, str, str]:
    """``python -m helpers.pipeline run ARGS`` in this process: exit status, printed lines, error lines."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = pipeline.main(["run", *args])
    return code, out.getvalue(), err.getvalue()


LAB, REAL = ["--preset", "presets/lab.yaml"], ["--preset", "presets/smollm2.yaml"]
HP = dict(lora_rank=16, lora_alpha=32, lora_dropout=0.0, max_steps=10, train_batch_size=4, learning_rate=1e-3,
          max_length=128)


WRITTEN: set[str] = set()  # the user's own files, which the rows write as the user would; nothing else may appear


def jsonl(folder: Path, name: str, rows) -> str:
    (folder / name).write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    WRITTEN.add(str(folder / name))
    return name  # relative: the table runs in `folder`, as a user runs from their own project folder


def domain_rows(n):
    return [{"instruction": f"What is fact {i}?", "output": f"Fact {i} is true."} for i in range(n)]


def held_lock(folder: Path):
    """A pipeline holding run 'busy', in another process, while the table's row runs."""
    run = runs.run_dir("busy")
    run.mkdir(parents=True, exist_ok=True)
    code = (f"import time; from pathlib import Path; from helpers import pipeline\n"
            f"with pipeline.run_lock(Path({str(run)!r})):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        code, _, err = cli([*LAB, "-p", "run_name=busy", "--only", "00"])
        return f"exit {code}: {err}"
    finally:
        holder.kill()
        holder.wait()


def unfinished_then_require(folder):
    runs.finish_stage("half", "03_filtering", {}, {})
    runs.mark_unfinished("half", "03_filtering")  # 03 began again and failed in a late cell
    runs.require("half", "03_filtering")


def stale_then_require(folder):
    runs.finish_stage("stale", "01_reconstruct", {}, {})
    runs.require("stale", "01_reconstruct")
    runs.finish_stage("stale", "02_generation", {}, {})
    runs.finish_stage("stale", "01_reconstruct", {}, {})  # 01 rerun after 02 was built on it
    runs.require("stale", "02_generation")


def ctrl_c(folder):
    from unittest import mock

    with mock.patch.object(pipeline, "run", side_effect=KeyboardInterrupt):
        code, _, err = cli(LAB)
    return f"exit {code}: {err}"


def numbers(overrides: list[str]) -> dict:
    """The preset values after the runner's reading of numbers written as text (YAML 1.1 reads 5e-4 as text)."""
    params = pipeline.load_preset(None, overrides)
    pipeline.numbers_from_text(params, {p.stem: pipeline.notebook_parameters(p)
                                        for p in pipeline.discover(ROOT / "notebooks")})
    return params


def warned(call) -> str:
    return "\n".join(call())


def earlier_arm_flagged(folder) -> str:
    base = {"general_accuracy": 0.9, "domain_accuracy": 0.0, "per_family": {"g": 0.9, "d": 0.0}}
    arm = {"general_accuracy": 0.5, "domain_accuracy": 0.8, "per_family": {"g": 0.5, "d": 0.8}, "n_seeds": 1}
    results = {"n_general": 20, "n_domain": 20, "seeds": [0], "base": base,
               "arms": {"ours": dict(arm), "domain_only": {**arm, "from_earlier_evaluation": True}}}
    results = evaluation.add_forgetting(results)
    results["checks"] = evaluation.checks(results)
    training = {"model": "m", "seeds": [0], "setup": {"quantization": "nf4", "compute_dtype": "float32",
                                                      "device": "cpu"},
                "hp": {"lora_rank": 16, "max_steps": 1, "train_batch_size": 1, "learning_rate": 1e-3,
                       "train_embeddings": False}}
    return report.report("flagged", results, training, []).read_text()


def pickled_model(folder):
    import torch
    from safetensors.torch import load_file

    from tests.test_models import _lab_model_saved

    saved = _lab_model_saved(folder / "outputs" / "pickled")
    torch.save(load_file(saved / "model.safetensors"), saved / "pytorch_model.bin")
    (saved / "model.safetensors").unlink()
    models.load("r", str(saved))


def template_escape(folder):
    from helpers.lab import zoo

    _, tok = zoo.load("base")
    tok.chat_template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    chat.render_prompt(tok, "hello")


ROWS = [
    # --- a run's name decides where it writes: only a plain folder name under outputs/
    Row("run_name escapes upwards", [*LAB, "-p", "run_name=../probe-escape"], r"run_name = '../probe-escape': a run "
        r"name is a plain folder name under outputs/"),
    Row("run_name absolute", [*LAB, "-p", "run_name=/tmp/x"], r"run_name = '/tmp/x': a run name is a plain folder"),
    Row("run_name ..", [*LAB, "-p", "run_name=.."], r"run_name = '\.\.': a run name is a plain folder name"),
    Row("run_name .", [*LAB, "-p", "run_name=."], r"run_name = '\.': a run name is a plain folder name"),
    Row("run_name empty", [*LAB, "-p", "run_name=''"], r"run_name = '': a run name is a plain folder name"),
    Row("run_name null", [*LAB, "-p", "run_name="], r"run_name = None \(NoneType\): expected a string"),
    Row("run_name with a space", [*LAB, "-p", "run_name=my run"], r"run_name = 'my run': a run name is a plain"),
    # --- parameter values, checked against each default's type before anything runs
    Row("text for a count", [*LAB, "-p", "n_samples=abc"], r"n_samples = 'abc' \(str\): expected a whole number"),
    Row("text for a share", [*LAB, "-p", "general_share=abc"], r"general_share = 'abc' \(str\): expected a number"),
    Row("one name for a list", [*LAB, "-p", "generators=base"], r"generators = 'base' \(str\): expected a list.*"
        r"for one item write \[base\]"),
    Row("fraction for steps", [*LAB, "-p", "max_steps=2.5"], r"max_steps = 2.5 \(float\): expected a whole number"),
    Row("1 for a switch", [*LAB, "-p", "lab=1"], r"lab = 1 \(int\): expected true/false"),
    Row("text for a mapping", [*LAB, "-p", "sampling=hot"], r"sampling = 'hot' \(str\): expected a mapping"),
    Row("a number for a list", [*LAB, "-p", "seeds=0"], r"seeds = 0 \(int\): expected a list"),
    Row("1e2 steps", [*LAB, "-p", "max_steps=1e2"], r"max_steps = '1e2' \(str\): expected a whole number"),
    Row("5e-4 is a number", lambda f: repr(numbers(["learning_rate=5e-4"])["learning_rate"]), r"^0\.0005$", 0),
    # --- keys
    Row("misspelled key", [*LAB, "-p", "n_sample=5"], r"unknown preset key\(s\) \['n_sample'\].*n_sample: did you "
        r"mean n_samples\?"),
    Row("a key without a value", [*LAB, "-p", "n_samples"], r"expected key=value"),
    Row("broken YAML value", [*LAB, "-p", "generators=[base"], r"-p 'generators=\[base': the value is not valid YAML"),
    Row("preset as a parameter", [*LAB, "-p", "preset=presets/lab.yaml"], r"`preset` is a notebook parameter.*here "
        r"pass --preset"),
    Row("an old name", [*LAB, "-p", "max_new_tokens=200"], r"unknown preset key\(s\) \['max_new_tokens'\]"),
    Row("a parameter the selected notebook ignores", [*LAB, "-p", "answer_max_new_tokens=200", "--only", "02"],
        r"-p answer_max_new_tokens: no selected notebook reads it \(it is a parameter of notebook\(s\) 06\)"),
    # --- presets and selection
    Row("missing preset", ["--preset", "presets/nope.yaml"], r"presets/nope.yaml does not exist"),
    Row("preset with a YAML error", lambda f: pipeline.load_preset(Path(jsonl(f, "broken.yaml", [
        "run_name: x", "n_samples: [1, 2", "lab: true"]))), r"broken.yaml, line \d+, column \d+ is not valid YAML"),
    Row("preset extending itself", lambda f: pipeline.load_preset(Path(jsonl(f, "loop.yaml", ["base: loop.yaml"]))),
        r"comes back to itself"),
    Row("preset extending a missing one", lambda f: pipeline.load_preset(Path(jsonl(f, "orphan.yaml", [
        "base: nowhere.yaml"]))), r"nowhere.yaml \(the base of .*orphan.yaml\) does not exist"),
    Row("no such notebook", [*LAB, "--only", "99"], r"no notebook numbered '99'; available: \['00', "),
    Row("start past the end", [*LAB, "--from", "07"], r"no notebook numbered '07'"),
    # --- what a notebook reads must be there before it starts
    Row("evaluation of a run never trained", [*LAB, "-p", "run_name=empty", "--only", "06"], r"06_evaluation.ipynb "
        r"reads what 05_qlora_training.ipynb writes, and run 'empty' has none .*run 05_qlora_training.ipynb first"),
    Row("no rows per answer batch", lambda f: evaluation.score_models("x", {"arms": {}}, {}, "", None, lab=True,
        max_new_tokens=16, match="exact", mc=False, kl=False, batch_size=0),
        r"answer_batch_size = 0: give the rows answered per batch, a whole number >= 1", error=ValueError),
    Row("a stage that failed half-way", lambda f: unfinished_then_require(f), r"03_filtering is from a run of "
        r"notebooks/03_filtering.ipynb that began rewriting its files and did not finish .*--only 03", 1,
        runs.StaleArtifact),
    Row("a stage built on an older upstream", lambda f: stale_then_require(f), r"rerun, in order, "
        r"notebooks/02_multi_model_generation.ipynb, .*--from 02", 1, runs.StaleArtifact),
    Row("two pipelines on one run", held_lock, r"^exit 1: pipeline error: run 'busy' is in use by another pipeline "
        r"\(pid \d+, started .*\); wait for it to finish, or give this one another run_name\n$", 0),
    Row("Ctrl-C outside a cell", ctrl_c, r"^exit 130: pipeline stopped \(Ctrl-C\)[^\n]*\n$", 0),
    # --- data files: every row read before the first notebook, with the notebooks' own readers
    Row("missing domain file", [*REAL, "-p", "domain_data=mine/train.jsonl", "--only", "04"], r"04_mixing: "
        r"domain_data: mine/train.jsonl: no such file"),
    Row("domain file with a broken line", Cmd(lambda f: [*REAL, "-p", "domain_data=" + jsonl(
        f, "d1.jsonl", [*domain_rows(3), "{not json"]), "--only", "04"]), r"d1.jsonl, line 4: not valid JSON"),
    Row("domain row without an answer", Cmd(lambda f: [*REAL, "-p", "domain_data=" + jsonl(
        f, "d2.jsonl", [*domain_rows(3), {"instruction": "q"}]), "--only", "04"]), r"d2.jsonl, line 4: .*response"),
    Row("30 bad public rows", Cmd(lambda f: [*REAL, "-p", "public_data=" + jsonl(
        f, "p.jsonl", [{"instruction": "q"}] * 30), "--only", "04"]), r"p.jsonl: 10 more bad rows"),
    Row("evaluation row without answer", Cmd(lambda f: [*REAL, "-p", "eval_general=" + jsonl(
        f, "e1.jsonl", [{"instruction": "q", "answer": "a"}, {"instruction": "q2"}]), "--only", "06"]),
        r"e1.jsonl, line 2: missing field 'answer'"),
    Row("choices without label", Cmd(lambda f: [*REAL, "-p", "eval_domain=" + jsonl(
        f, "e2.jsonl", [{"instruction": "q", "answer": "a", "choices": ["a", "b"]}]), "--only", "06"]),
        r"e2.jsonl, line 1: 'choices' needs 'label'"),
    Row("empty evaluation file", Cmd(lambda f: [*REAL, "-p", "eval_domain=" + jsonl(f, "e3.jsonl", []), "--only",
                                                "06"]), r"e3.jsonl: no rows"),
    Row("CSV without the answer column", Cmd(lambda f: [*REAL, "-p", "eval_general=" + jsonl(
        f, "e4.csv", ["instruction,family", "q,g"]), "--only", "06"]),
        r"e4.csv, line 2: missing field 'answer'"),
    Row("a hub id as evaluation set", [*REAL, "-p", "eval_general=someorg/somebench", "--only", "06"],
        r"eval_general: 'someorg/somebench' is no local file and would come from the dataset hub"),
    Row("a misspelled lm-eval benchmark", [*REAL, "-p", "benchmarks=[mmlu_prox]", "--only", "06"],
        r"benchmarks: 'mmlu_prox' is no lm-eval task \(closest: \['mmlu_pro'"),
    Row("benchmarks with trained embeddings", [*LAB, "-p", "benchmarks=[general_eval_mc]", "--from", "05"],
        r"benchmarks need adapters of LoRA layers only, and 05 trains the embeddings too"),
    Row("evaluation files while lab = true", [*LAB, "-p", "eval_general=x.jsonl", "--only", "06"],
        r"eval_general set while lab = true.*set lab = false to score your files"),
    # --- paths: one rule (the working directory, then the repository), the absolute path printed
    Row("relative path from the user's folder", lambda f: cli([*REAL, "-p", "domain_data=" + jsonl(
        f, "data.jsonl", domain_rows(12)), "-p", "run_name=none", "--only", "04"])[1],
        r"domain_data: data.jsonl -> /\S*/my-project/data.jsonl\n", 0),
    Row("a repository path from elsewhere", lambda f: cli([*REAL, "-p", "run_name=none", "--only", "04"])[1],
        rf"domain_data: data/clinical_train.jsonl -> {ROOT}/data/clinical_train.jsonl\n", 0),
    # --- models
    Row("an unknown generator", [*REAL, "-p", "generators=[nonexistent-model]", "--only", "02"], r"generators: "
        r"model 'nonexistent-model' is not a known name.*use lab zoo names"),
    Row("a model folder that is not there", [*REAL, "-p", "model=./my-model", "--only", "01"], r"model: .*my-model"),
    # --- values only a stage can judge (the notebooks call these first)
    Row("no scorer", lambda f: committee.check_scorers([], lab=True), r"scorers = \[\]: name at least one scorer"),
    Row("scorer not in a list", lambda f: committee.check_scorers("likelihood", lab=True), r"expected a list"),
    Row("misspelled scorer", lambda f: committee.check_scorers(["likelyhood"], lab=True), r"unknown \['likelyhood'\]"),
    Row("lab scorer on a real run", lambda f: committee.check_scorers(["lab_verifier"], lab=False),
        r"exists only with lab = True"),
    Row("GPUs per arm not dividing the batch", [*LAB, "-p", "gpus_per_arm=3", "--only", "05"],
        r"05_qlora_training: gpus_per_arm = 3 does not divide train_batch_size = 32: .*multiple of 3"),
    Row("no GPUs per arm", [*LAB, "-p", "gpus_per_arm=0", "--only", "05"], r"gpus_per_arm = 0: give 1"),
    Row("zero steps", lambda f: qlora_configs.check_hp({**HP, "max_steps": 0}), r"max_steps = 0: must be at least 1"),
    Row("zero batch", lambda f: qlora_configs.check_hp({**HP, "train_batch_size": 0}), r"train_batch_size = 0"),
    Row("negative learning rate", lambda f: qlora_configs.check_hp({**HP, "learning_rate": -1.0}), r"must be above 0"),
    Row("dropout of 1", lambda f: qlora_configs.check_hp({**HP, "lora_dropout": 1.0}), r"must be in \[0, 1\)"),
    Row("k_min above k_max", lambda f: rd.categorise(["a b", "c d", "e f", "g h"], np.eye(4), k_min=8, k_max=4),
        r"k_min = 8 is above k_max = 4"),
    # --- what a run drops is said, on the terminal and in report.md
    Row("a one-row domain", lambda f: warned(lambda: mixing.build_arms(
        [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
        {"ours": [{"messages": [{"role": "user", "content": f"o{i}"}, {"role": "assistant", "content": "y"}]}
                  for i in range(40)]}, 0.8, 0)[1]["warnings"]), r"the arms hold only 1 domain row", 0),
    Row("domain rows left unused", lambda f: warned(lambda: mixing.build_arms(
        [{"messages": [{"role": "user", "content": f"d{i}"}, {"role": "assistant", "content": "a"}]} for i in range(50)],
        {"ours": [{"messages": [{"role": "user", "content": f"o{i}"}, {"role": "assistant", "content": "y"}]}
                  for i in range(40)]}, 0.8, 0)[1]["warnings"]), r"only 10 of the 50 domain rows are used", 0),
    Row("too few general rows for one domain row", lambda f: mixing.build_arms(
        [{"messages": [{"role": "user", "content": "d"}, {"role": "assistant", "content": "a"}]}],
        {"ours": [{"messages": [{"role": "user", "content": "o"}, {"role": "assistant", "content": "y"}]}]}, 0.83, 0),
        r"1 general row\(s\) at general_share=0.83 leave room for no domain row .*generate more general rows"),
    Row("no passes of general rows", lambda f: mixing.build_arms(
        [{"messages": [{"role": "user", "content": "d"}, {"role": "assistant", "content": "a"}]}],
        {"ours": [{"messages": [{"role": "user", "content": f"o{i}"}, {"role": "assistant", "content": "y"}]}
                  for i in range(40)]}, 0.8, 0, general_passes=0),
        r"general_passes = 0: give a whole number of at least 1 .*notebook 05's domain_epochs"),
    Row("evaluation sets cut", lambda f: warned(lambda: heldout.held_out(
        False, 2, 0, "data/general_eval.jsonl", "data/clinical_eval.jsonl")[1]), r"general set \(data/general_eval"
        r".jsonl\): 20 of its 488 questions scored \(n_eval_per_family = 2", 0),
    Row("arms from an earlier evaluation", earlier_arm_flagged, r"\| domain_only \(earlier\) \|.*\[uses domain_only "
        r"from an earlier evaluation\]", 0),
    # --- trust
    Row("a pickle-only checkpoint", pickled_model, r"only safetensors weights are loaded \(a pickled .bin or .pt "
        r"file can run code"),
    Row("a chat template escaping its sandbox", template_escape, r"SecurityError: access to attribute '__class__'"),
]


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folders`` with its modification time and size, but for caches, the virtual environment
    and each folder's own ``outputs/`` (the repository's holds the converted models every test shares)."""
    import os

    ignored = {".venv", ".git", "__pycache__", ".pytest_cache"}
    found = {}
    for folder in folders:
        for top, dirs, files in os.walk(folder):  # the ignored folders pruned, not walked (.venv: 77k files)
            dirs[:] = [d for d in dirs if d not in ignored and not (Path(top) == folder and d == "outputs")]
            for name in files:
                try:
                    stat = os.stat(path := os.path.join(top, name))
                except FileNotFoundError:  # a broken link, or a file gone since the walk listed it
                    continue
                found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


ESCAPES = [Path("/tmp/x"), ROOT.parent / "probe-escape", ROOT / "notebooks" / "notebooks"]  # the strays


def replay(row: Row, folder: Path) -> list[str]:
    """What is wrong with one row's outcome (nothing: an empty list)."""
    run = row.run.build(folder) if isinstance(row.run, Cmd) else row.run
    if isinstance(run, list):  # a command
        code, out, message = cli(run)
        problems = [f"exit {code}, expected {row.code}"] if code != row.code else []
    else:  # a call
        problems, out = [], ""
        try:
            message = str(run(folder))
            if row.code:
                problems.append("returned instead of raising")
        except row.error as err:
            message = f"{type(err).__name__}: {err}"
            if not row.code:
                problems.append("raised")
    if not re.search(row.expect, message, re.S):
        problems.append(f"expected {row.expect!r}\n    got: {message.strip()[:500]}")
    if "Traceback" in message + out:
        problems.append("a traceback")
    return problems


@pytest.mark.slow
@pytest.mark.xdist_group("bad_inputs_table")
def test_every_bad_input_is_clear_or_correct_and_nothing_is_written_outside_outputs(tmp_path, monkeypatch):
    user = tmp_path / "my-project"  # the user's own folder, outside the repository
    user.mkdir()
    monkeypatch.chdir(user)
    monkeypatch.setenv("HELPERS_OUTPUTS", str(user / "outputs"))
    strays = {p for p in ESCAPES if p.exists()}
    before = snapshot(ROOT, user)
    wrong = {row.id: problems for row in ROWS if (problems := replay(row, user))}
    assert not wrong, f"{len(wrong)} of {len(ROWS)} rows:\n" + "\n".join(f"{k}: {'; '.join(v)}" for k, v in wrong.items())
    after = snapshot(ROOT, user)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p) and p not in WRITTEN)
    assert not changed, f"written outside outputs/: {changed}"
    assert {p for p in ESCAPES if p.exists()} == strays
    assert len(ROWS) >= 54
