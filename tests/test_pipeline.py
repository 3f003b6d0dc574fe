"""The papermill runner, on toy notebooks in a temporary folder."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import pipeline, runs, sources


def make_nb(path, params_src, body_src):
    nb = new_notebook(cells=[new_code_cell(params_src, metadata={"tags": ["parameters"]}), new_code_cell(body_src)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def nbdir(tmp_path):
    d = tmp_path / "notebooks"
    d.mkdir()
    make_nb(d / "00_first.ipynb", 'run_name = "toy"\nx = 1',
            "from helpers import runs\nruns.write_json(runs.stage_dir(run_name, '00_lab') / 'metrics.json', {'x': x})")
    make_nb(d / "01_second.ipynb", 'run_name = "toy"\ny = 2',
            "from helpers import runs\nm = runs.read_json(runs.require(run_name, '00_lab'))\n"
            "runs.write_json(runs.stage_dir(run_name, '01_reconstruct') / 'metrics.json', {'sum': m['x'] + y})")
    return d


@pytest.mark.slow
def test_runs_in_order_and_passes_only_declared_keys(nbdir, outputs, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("run_name: toy\nx: 5\n")
    timings = pipeline.run(preset, ["y=10"], notebooks_dir=nbdir)
    assert list(timings) == ["00_first", "01_second"]
    assert json.loads((outputs / "toy" / "01_reconstruct" / "metrics.json").read_text()) == {"sum": 15}
    assert (outputs / "toy" / "notebooks" / "01_second.ipynb").exists()
    assert set(json.loads((outputs / "toy" / "timings.json").read_text())) == {"00_first", "01_second"}


@pytest.mark.slow
def test_a_real_run_skips_the_lab_world(tmp_path, outputs, capsys):
    d = tmp_path / "notebooks"
    d.mkdir()
    make_nb(d / "00_lab.ipynb", 'run_name = "toy"', "raise RuntimeError('00 ran')")
    make_nb(d / "01_real.ipynb", 'run_name = "toy"\nlab = True',
            "from helpers import runs\n"
            "runs.write_json(runs.stage_dir(run_name, '01_reconstruct') / 'm.json', {'lab': lab})")
    preset = tmp_path / "p.yaml"
    preset.write_text("run_name: toy\nlab: false\n")
    assert list(pipeline.run(preset, notebooks_dir=d)) == ["01_real"]
    assert "notebook 00 (the lab world) is skipped" in capsys.readouterr().out
    assert json.loads((outputs / "toy" / "01_reconstruct" / "m.json").read_text()) == {"lab": False}
    with pytest.raises(pipeline.PipelineError, match="00 ran"):  # asked for by name, it runs
        pipeline.run(preset, only=["00"], notebooks_dir=d)


def test_unknown_preset_key_lists_valid_ones(nbdir, outputs, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("run_name: toy\nz: 5\n")
    with pytest.raises(pipeline.PipelineError, match=r"unknown preset key\(s\) \['z'\].*\['run_name', 'x', 'y'\]"):
        pipeline.run(preset, notebooks_dir=nbdir)


def test_bad_override_and_missing_preset(nbdir, outputs, tmp_path):
    with pytest.raises(pipeline.PipelineError, match="expected key=value"):
        pipeline.run(None, ["x"], notebooks_dir=nbdir)
    with pytest.raises(pipeline.PipelineError, match="does not exist"):
        pipeline.run(tmp_path / "nope.yaml", notebooks_dir=nbdir)


def test_selection(nbdir):
    nbs = pipeline.discover(nbdir)
    assert [p.stem for p in pipeline.select(nbs, "01", None)] == ["01_second"]
    assert [p.stem for p in pipeline.select(nbs, None, ["0"])] == ["00_first"]
    with pytest.raises(pipeline.PipelineError, match="no notebook numbered '07'"):
        pipeline.select(nbs, "07", None)


@pytest.mark.slow
def test_missing_input_names_the_notebook_to_run_first(nbdir, outputs):
    with pytest.raises(pipeline.PipelineError, match=r"01_second.ipynb reads what 00_first.ipynb writes, and run 'toy' "
                                                     r"has none \(.*00_lab is missing\): run 00_first.ipynb first"):
        pipeline.run(None, only=["01"], notebooks_dir=nbdir)
    assert not (outputs / "toy" / "notebooks" / "01_second.failed.ipynb").exists()  # refused before any kernel
    runs.write_json(runs.stage_dir("toy", "00_lab") / "metrics.json", {"x": 1})  # a stage that began again and
    runs.write_json(runs.stage_dir("toy", "00_lab") / "manifest.json", {"stamp": "s", "unfinished": True})  # failed
    with pytest.raises(pipeline.PipelineError, match=r"00_lab is from a run of it that did not finish"):
        pipeline.run(None, only=["01"], notebooks_dir=nbdir)


@pytest.mark.slow
def test_failure_stops_the_run_and_names_notebook_and_cell(nbdir, outputs):
    make_nb(nbdir / "00_first.ipynb", 'run_name = "toy"\nx = 1', "raise ValueError('boom')")
    with pytest.raises(pipeline.PipelineError, match=r"00_first.ipynb failed in cell \d+ .*ValueError: boom"):
        pipeline.run(None, notebooks_dir=nbdir)
    assert not (outputs / "toy" / "01_reconstruct").exists()  # stopped at the first failure


def test_notebook_needs_exactly_one_parameters_cell(tmp_path):
    nb = new_notebook(cells=[new_code_cell("x = 1")])
    nbformat.write(nb, tmp_path / "00_x.ipynb")
    with pytest.raises(pipeline.PipelineError, match="exactly one cell tagged 'parameters'"):
        pipeline.notebook_parameters(tmp_path / "00_x.ipynb")


def test_require_names_the_notebook(outputs):
    with pytest.raises(runs.MissingArtifact, match="run notebooks/02_multi_model_generation.ipynb first"):
        runs.require("lab", "02_generation", "generations.jsonl")


def test_cli_reports_errors_without_traceback(nbdir, outputs, capsys, tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("bogus: 1\n")
    assert pipeline.main(["run", "--preset", str(preset), "--notebooks", str(nbdir)]) == 1
    assert "pipeline error: unknown preset key(s) ['bogus']" in capsys.readouterr().err


def test_parameters_papermill_cannot_parse_or_not_literal(tmp_path):
    make_nb(tmp_path / "00_x.ipynb", "a = 1  # a = b breaks papermill's parser\nb = 2", "")
    with pytest.raises(pipeline.PipelineError, match=r"cannot parse the parameter line\(s\) for \['a'\]"):
        pipeline.notebook_parameters(tmp_path / "00_x.ipynb")
    make_nb(tmp_path / "00_x.ipynb", "import os\na = os.getcwd()", "")
    with pytest.raises(pipeline.PipelineError, match="is not a plain literal"):
        pipeline.notebook_parameters(tmp_path / "00_x.ipynb")


def test_preflight_checks_every_model_and_data_source_before_anything_runs(tmp_path, outputs, monkeypatch):
    """Failure 3: an offline hub id in 04 failed only after 01-03 had run."""
    from helpers import models

    monkeypatch.setattr(models, "hub_reachable", lambda: "HF_HUB_OFFLINE is set")
    (tmp_path / "d.jsonl").write_text('{"instruction": "q", "response": "a"}\n')
    problems = sources.preflight({
        "01": {"model": "smollm2-135m-instruct"},
        "02": {"generators": ["base", "no-such-model"]},
        "03": {"scorers": ["likelihood"], "committee": ["base"], "judges": ["Some/Judge-7B"]},  # judges unused
        "04": {"domain_data": str(tmp_path / "d.jsonl"), "public_data": "tatsu-lab/alpaca"},
        "06": {"lab": False, "eval_general": "data/missing.jsonl", "eval_domain": ""},
    })
    assert len(problems) == 3, problems
    assert "02: generators: model 'no-such-model' is not a known name" in problems[0]
    assert "04: public_data: 'tatsu-lab/alpaca' is no local file" in problems[1] and "HF_HUB_OFFLINE" in problems[1]
    assert "06: eval_general: data/missing.jsonl: no such file" in problems[2]


def test_a_run_with_a_bad_source_stops_before_the_first_notebook(nbdir, outputs, tmp_path, monkeypatch):
    make_nb(nbdir / "02_third.ipynb", 'run_name = "toy"\npublic_data = ""', "raise SystemExit('must not run')")
    from helpers import models

    monkeypatch.setattr(models, "hub_reachable", lambda: "HF_HUB_OFFLINE is set")
    with pytest.raises(pipeline.PipelineError, match="checked before running anything"):
        pipeline.run(None, ["public_data=tatsu-lab/alpaca"], notebooks_dir=nbdir)
    assert not (outputs / "toy" / "00_lab").exists()


@pytest.mark.slow
def test_a_failed_rerun_keeps_the_last_good_executed_notebook(nbdir, outputs):
    pipeline.run(None, only=["00"], notebooks_dir=nbdir)
    good = outputs / "toy" / "notebooks" / "00_first.ipynb"
    before = good.read_text()
    make_nb(nbdir / "00_first.ipynb", 'run_name = "toy"\nx = 1', "raise ValueError('boom')")
    with pytest.raises(pipeline.PipelineError, match=r"00_first.failed.ipynb\n  the last successful run's copy is kept"):
        pipeline.run(None, only=["00"], notebooks_dir=nbdir)
    assert good.read_text() == before
    assert "boom" in (outputs / "toy" / "notebooks" / "00_first.failed.ipynb").read_text()
    assert not (outputs / "toy" / "notebooks" / "00_first.running.ipynb").exists()


def test_lineage_names_every_notebook_to_rerun_after_an_upstream_rerun(outputs):
    """01 is rerun after 02 was built from it: reading 02 (as 03 does) refuses, naming 02 onwards; reading 01 is
    fine. Rerunning 02 makes 02 readable again."""
    def finish(stage, reads=()):
        for upstream in reads:
            runs.require("toy", upstream)
        runs.finish_stage("toy", stage, {}, {"ok": 1})

    finish("00_lab")
    finish("01_reconstruct", ["00_lab"])
    finish("02_generation", ["01_reconstruct"])
    finish("03_filtering", ["02_generation"])
    runs.require("toy", "03_filtering")  # all consistent
    finish("01_reconstruct", ["00_lab"])  # rerun 01 only
    runs.require("toy", "01_reconstruct")
    with pytest.raises(runs.StaleArtifact) as err:
        runs.require("toy", "03_filtering")  # stale through 02
    msg = str(err.value)
    assert "02_generation was made from an earlier run" in msg and "--from 02" in msg
    assert all(f"notebooks/{nb}.ipynb" in msg for nb in ("02_multi_model_generation", "03_filtering",
                                                          "04_mixing", "05_qlora_training", "06_evaluation"))
    with pytest.raises(runs.StaleArtifact, match="--from 02"):
        runs.require("toy", "02_generation")
    finish("02_generation", ["01_reconstruct"])
    runs.require("toy", "02_generation")
    with pytest.raises(runs.StaleArtifact, match="03_filtering was made from an earlier run.*--from 03"):
        runs.require("toy", "03_filtering")
    manifest = runs.read_json(outputs / "toy" / "02_generation" / "manifest.json")
    assert set(manifest["inputs"]) == {"01_reconstruct"} and manifest["stamp"]


def test_lineage_ignores_an_upstream_stage_that_is_not_there(outputs):
    """A partial copy of a run (say 04 and 05 only, carried to a GPU machine) is not stale for lack of 01-03."""
    import shutil

    runs.finish_stage("toy", "03_filtering", {}, {})
    runs.require("toy", "03_filtering")
    runs.finish_stage("toy", "04_mixing", {}, {})
    shutil.rmtree(outputs / "toy" / "03_filtering")
    runs.require("toy", "04_mixing")


@pytest.mark.slow
def test_two_runs_at_once_start_their_kernels_without_colliding(nbdir, outputs, tmp_path):
    """Two pipelines started together from one folder (two presets, or the test suite's workers): each kernel's IPC
    sockets get their own names, so neither kernel answers the other's runner."""
    import subprocess
    import sys

    for i in range(2, 4):  # four short notebooks per run: eight kernel starts side by side
        make_nb(nbdir / f"0{i}_more.ipynb", 'run_name = "toy"', "print('ok')")
    procs = []
    for name in ("one", "two"):
        preset = tmp_path / f"{name}.yaml"
        preset.write_text(f"run_name: {name}\n")
        code = f"from helpers import pipeline; pipeline.run({str(preset)!r}, notebooks_dir={str(nbdir)!r})"
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))  # HELPERS_OUTPUTS: inherited
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-2000:]
    for name in ("one", "two"):
        assert set(json.loads((outputs / name / "timings.json").read_text())) == {
            "00_first", "01_second", "02_more", "03_more"}


@pytest.mark.slow
def test_executed_copies_get_no_progress_bars_unless_the_preset_asks(nbdir, outputs, monkeypatch, capfd):
    for name in pipeline.QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    make_nb(nbdir / "00_first.ipynb", 'run_name = "toy"\nprogress = True',
            "from helpers.lab import zoo\nprint('progress', progress)\nmodel, tok = zoo.load('base')")
    pipeline.run(None, only=["00"], notebooks_dir=nbdir)
    text = (outputs / "toy" / "notebooks" / "00_first.ipynb").read_text()
    assert "progress False" in text and "Loading weights" not in text  # ours and transformers' bars
    assert not set(pipeline.QUIET_ENV) & set(__import__("os").environ)  # restored for the caller
    assert "without encryption" not in capfd.readouterr().err  # ipykernel's TCP warning: the kernel runs on IPC
    pipeline.run(None, ["progress=true"], only=["00"], notebooks_dir=nbdir)
    text = (outputs / "toy" / "notebooks" / "00_first.ipynb").read_text()
    assert "progress True" in text and "Loading weights" in text


def test_relative_paths_become_absolute_by_the_runners_one_rule(tmp_path, monkeypatch):
    """Notebooks run in notebooks/: a relative name is made absolute in the runner's working directory first, then
    from the repository root (runs.find_local), so preflight and the notebooks read the same file."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "clinical_train.jsonl").write_text('{"instruction": "q", "response": "a"}\n')
    (tmp_path / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    params = {"domain_data": "data/clinical_train.jsonl", "eval_general": "data/general_eval.jsonl",
              "public_data": "tatsu-lab/alpaca", "model": "models/m", "generators": ["base", "models/m"],
              "committee": ["smollm2-135m-instruct"]}
    changed = sources.absolute_paths(params)
    assert params["domain_data"] == str(tmp_path / "data" / "clinical_train.jsonl")  # the user's, not the repo's
    assert params["eval_general"] == str(pipeline.repo_root() / "data" / "general_eval.jsonl")  # only the repo has it
    assert params["public_data"] == "tatsu-lab/alpaca"  # a hub id stays
    assert params["model"] == str(tmp_path / "models" / "m")
    assert params["generators"] == ["base", str(tmp_path / "models" / "m")]  # a lab zoo name stays a name
    assert params["committee"] == ["smollm2-135m-instruct"]
    assert changed["domain_data: data/clinical_train.jsonl"] == params["domain_data"]


def test_a_second_pipeline_on_the_same_run_refuses_naming_the_first(nbdir, outputs):
    import subprocess
    import sys

    run = runs.run_dir("toy")
    run.mkdir(parents=True)
    code = (f"import time; from pathlib import Path; from helpers import pipeline\n"
            f"with pipeline.run_lock(Path({str(run)!r})):\n    print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(pipeline.PipelineError, match=rf"run 'toy' is in use by another pipeline \(pid {holder.pid}, "
                                                         r"started .*\); wait for it to finish, or give this one"):
            pipeline.run(None, notebooks_dir=nbdir)
    finally:
        holder.kill()
        holder.wait()
    with pipeline.run_lock(run):  # the system released the lock of the killed holder
        assert json.loads((run / ".pipeline.holder.json").read_text())["pid"] > 0
    assert not (run / ".pipeline.holder.json").exists()


def test_preflight_reads_every_row_and_reports_every_bad_one_at_once(tmp_path, outputs):
    """Issue 26: an evaluation row without `answer` failed after 01-05 had run; now preflight reads every row of every
    data file with the notebooks' own row readers."""
    (tmp_path / "d.jsonl").write_text('{"instruction": "q", "response": "a"}\n{"instruction": "q2"}\n{not json\n')
    rows = [{"instruction": f"q{i}", "answer": "a"} for i in range(3)]
    rows[1] = {"instruction": "q1"}
    rows[2] = {"instruction": "q2", "answer": "a", "choices": ["a", "b"]}
    (tmp_path / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "many.jsonl").write_text('{"instruction": "q"}\n' * 30)
    problems = sources.preflight({
        "04": {"domain_data": str(tmp_path / "d.jsonl"), "public_data": str(tmp_path / "many.jsonl")},
        "06": {"lab": False, "eval_general": str(tmp_path / "e.jsonl"), "eval_domain": str(tmp_path / "d.jsonl")},
    })
    assert any("04: domain_data: " in p and "line 3: not valid JSON" in p for p in problems), problems
    many = [p for p in problems if p.startswith("04: public_data: ")]  # 30 bad rows: the first 20, then a count
    assert len(many) == 21 and many[-1] == f"04: public_data: {tmp_path / 'many.jsonl'}: 10 more bad rows"
    assert any("06: eval_general: " in p and "e.jsonl, line 2: missing field 'answer'" in p for p in problems)
    assert any("06: eval_general: " in p and "e.jsonl, line 3: 'choices' needs 'label'" in p for p in problems)


def test_ctrl_c_outside_a_running_cell_is_one_line_and_exit_130(monkeypatch, capsys):
    """Issue 26: a Ctrl-C while the runner loads or checks printed a wall of tracebacks."""
    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", stopped)
    assert pipeline.main(["run", "--preset", "presets/lab.yaml"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pipeline stopped (Ctrl-C)"), err


@pytest.mark.slow
def test_a_notebooks_warnings_reach_the_terminal(tmp_path, outputs, capsys):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_nb(nbs / "00_warn.ipynb", 'run_name = "toy"', "from helpers import runs\nruns.write_json(runs.stage_dir("
            "run_name, '00_lab') / 'metrics.json', {'warnings': runs.trouble({'only 4 of 322 domain rows': True})})")
    pipeline.run(None, notebooks_dir=nbs)
    assert "[pipeline] WARNING (00): only 4 of 322 domain rows" in capsys.readouterr().out


@pytest.mark.slow
def test_ctrl_c_during_a_running_cell_stops_it_with_one_line_and_exit_130(tmp_path, outputs):
    """Issue 26: Ctrl-C during a cell printed 62 lines of tracebacks, or (papermill/nbclient's own handler) was
    swallowed while the notebook ran on to the end, exit 0. The terminal's Ctrl-C reaches the runner's process group
    only (the kernel has a session of its own), as here."""
    import os
    import signal
    import subprocess
    import sys
    import time

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    started, finished = tmp_path / "started", tmp_path / "finished"
    make_nb(nbs / "00_slow.ipynb", 'run_name = "toy"',
            f"import time\nopen({str(started)!r}, 'w').close()\nfor _ in range(600):\n    time.sleep(0.1)\n"
            f"open({str(finished)!r}, 'w').close()")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "helpers.pipeline", "run", "--notebooks", str(nbs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "HELPERS_OUTPUTS": str(outputs)})
    while not started.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 120, proc.communicate()
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert not finished.exists() and time.monotonic() - t0 < 60  # the cell was stopped, not run to its end
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    failed = outputs / "toy" / "notebooks" / "00_slow.failed.ipynb"
    assert lines[0].startswith("pipeline stopped (Ctrl-C): 00_slow.ipynb stopped by Ctrl-C; what ran is in ")
    assert failed.exists() and not (outputs / "toy" / "notebooks" / "00_slow.running.ipynb").exists()


def test_the_kernel_log_drops_the_interrupt_every_shutdown_sends(tmp_path, capsys):
    from helpers import execute

    class Manager:
        kernel_log = None

    log = tmp_path / "nb.kernel.log"
    with execute.kernel_log(Manager, log):  # only the shutdown's own line: nothing worth keeping
        Manager.kernel_log.write(execute.SHUTDOWN_NOISE + "\n")
    assert not log.exists() and capsys.readouterr().out == ""
    with execute.kernel_log(Manager, log):
        Manager.kernel_log.write("a C library speaks\n" + execute.SHUTDOWN_NOISE + "\n")
    assert log.read_text() == "a C library speaks\n" and f"kept in {log}" in capsys.readouterr().out


@pytest.mark.slow
def test_what_the_kernel_process_prints_below_python_goes_to_a_log(tmp_path, outputs, capfd):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    make_nb(nbs / "00_noisy.ipynb", 'run_name = "toy"', "import os\nos.write(2, b'a C library speaks\\n')")
    pipeline.run(None, notebooks_dir=nbs)
    log = outputs / "toy" / "notebooks" / "00_noisy.kernel.log"
    assert log.read_text() == "a C library speaks\n"
    out, err = capfd.readouterr()
    assert "a C library speaks" not in err and f"kept in {log}" in out
    make_nb(nbs / "00_noisy.ipynb", 'run_name = "toy"', "print('quiet')")
    pipeline.run(None, notebooks_dir=nbs)
    assert not log.exists(), log.read_text()  # an empty log is not kept
