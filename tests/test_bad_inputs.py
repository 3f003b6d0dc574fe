"""Bad inputs inside a notebook (papermill's injected values, the `preset` parameter) and the parameter checks' rules.
The runner's command line and the stages' own checks are replayed row by row in tests/test_bad_inputs_table.py."""
import os
import subprocess
import sys

import pytest

from helpers import pipeline
from helpers.runs import repo_root


@pytest.mark.parametrize("override", ["minhash_threshold=null", "min_score=3", "general_share=1",
                                      "system_prompt=null"])
def test_values_the_parameters_allow_pass_the_type_check(override):
    nbs = pipeline.discover(repo_root() / "notebooks")
    assert pipeline.check_types(pipeline.load_preset(None, [override]), nbs) == []


def test_the_runner_works_from_any_working_directory(tmp_path):
    """`python -m helpers.pipeline` from outside the repository finds presets/ and the notebooks (here it stops at
    a type error, before running anything)."""
    proc = subprocess.run([sys.executable, "-m", "helpers.pipeline", "run", "--preset", "presets/smoke.yaml",
                           "-p", "n_samples=abc"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HELPERS_OUTPUTS": str(tmp_path / "outputs")})
    assert proc.returncode == 1
    assert "n_samples = 'abc'" in proc.stderr and "Traceback" not in proc.stderr


# Inside a notebook: what papermill injected (read from IPython's input history) and the `preset` parameter
NB = "04_mixing"


def notebook_namespace(injected: str = "", **values) -> dict:
    """A notebook's globals right after its parameters cell: its defaults, then papermill's injected cell."""
    ns = dict(pipeline.notebook_parameters(repo_root() / "notebooks" / f"{NB}.ipynb"))
    ns["In"] = ["", "# Parameters (papermill overrides these; keep them plain literals)\n..."]
    if injected:
        ns["In"].append(pipeline.PAPERMILL_HEADER + injected)
        exec(injected, {}, ns)
    ns.update(values)
    return ns


IN_NOTEBOOK = [
    ("n_sampl = 3", r"unknown parameter\(s\) \['n_sampl'\] \(n_sampl: did you mean n_samples\?\)"),
    ("n_clusters = 3", r"n_clusters is a parameter of notebook\(s\) 01.*pass `-p preset presets/NAME.yaml`"),
    ("general_share = 'abc'", r"general_share = 'abc' \(str\): expected a number"),
    ("sweep_shares = 0.5", r"sweep_shares = 0.5 \(float\): expected a list"),
    ("preset = 3", r"preset = 3 \(int\): expected a string"),
    ("preset = 'presets/nope.yaml'", r"preset presets/nope.yaml does not exist"),
]


@pytest.mark.parametrize("injected,message", IN_NOTEBOOK, ids=[i for i, _ in IN_NOTEBOOK])
def test_a_notebook_refuses_what_papermill_would_only_warn_about(injected, message):
    with pytest.raises(pipeline.PipelineError, match=message):
        pipeline.settle_parameters(notebook_namespace(injected), NB)


def test_a_preset_sets_the_notebooks_own_keys_and_explicit_values_win(tmp_path, capsys):
    preset = tmp_path / "mine.yaml"
    preset.write_text("run_name: mine\ngeneral_share: 0.5\nn_samples: 10\nmix_seed: 4\n")
    ns = notebook_namespace(f"preset = {str(preset)!r}\nmix_seed = 9")
    settled = pipeline.settle_parameters(ns, NB)
    assert set(settled) == set(pipeline.notebook_parameters(pipeline.repo_root() / "notebooks" / f"{NB}.ipynb"))
    # n_samples is 01's; mix_seed was passed; what the notebook records is what it runs with
    assert (settled["run_name"], settled["general_share"], settled["mix_seed"]) == ("mine", 0.5, 9)
    assert (ns["run_name"], ns["general_share"], ns["mix_seed"]) == ("mine", 0.5, 9)
    assert "general_share=0.5" in capsys.readouterr().out


def test_a_preset_with_a_bad_key_or_value_is_refused_in_the_notebook(tmp_path):
    preset = tmp_path / "bad.yaml"
    preset.write_text("general_share: high\n")
    with pytest.raises(pipeline.PipelineError, match=r"general_share = 'high' \(str\): expected a number"):
        pipeline.settle_parameters(notebook_namespace(preset=str(preset)), NB)
    preset.write_text("general_shares: 0.5\n")
    with pytest.raises(pipeline.PipelineError, match=r"unknown preset key\(s\) \['general_shares'\]"):
        pipeline.settle_parameters(notebook_namespace(preset=str(preset)), NB)


def test_without_papermill_or_preset_the_cell_values_stand():
    ns = notebook_namespace()
    before = dict(ns)
    settled = pipeline.settle_parameters(ns, NB)
    assert ns == before and settled == {name: ns[name] for name in settled} and "general_share" in settled


def test_every_shipped_preset_loads_inside_a_notebook():
    for preset in sorted((repo_root() / "presets").glob("*.yaml")):
        ns = notebook_namespace(preset=f"presets/{preset.name}")
        pipeline.settle_parameters(ns, NB)


def test_a_preset_extends_its_base(tmp_path):
    (tmp_path / "first.yaml").write_text("run_name: first\ngeneral_share: 0.5\nn_samples: 10\n")
    (tmp_path / "second.yaml").write_text("base: first.yaml\nrun_name: second\n")
    assert pipeline.load_preset(tmp_path / "second.yaml", ["n_samples=3"]) == \
        {"run_name": "second", "general_share": 0.5, "n_samples": 3}
    (tmp_path / "first.yaml").write_text("base: second.yaml\n")
    with pytest.raises(pipeline.PipelineError, match="comes back to itself"):
        pipeline.load_preset(tmp_path / "second.yaml")
    (tmp_path / "third.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(pipeline.PipelineError, match=r"nowhere.yaml \(the base of .*third.yaml\) does not exist"):
        pipeline.load_preset(tmp_path / "third.yaml")


def test_nullable_parameters_are_declared_by_notebooks_that_have_them():
    declared = {k for nb in pipeline.discover(pipeline.repo_root() / "notebooks") for k in pipeline.notebook_parameters(nb)}
    assert set(pipeline.NULLABLE) <= declared


def test_a_misspelled_key_gets_the_closest_name():
    declared = {"04_mixing": {"general_share": 0.83, "run_name": "lab"}}
    with pytest.raises(pipeline.PipelineError, match=r"general_shares: did you mean general_share\?"):
        pipeline.check_keys({"general_shares": 0.5}, declared)


def test_numbers_in_scientific_notation_are_numbers():
    """YAML 1.1 reads 5e-4 as text; a parameter whose default is a number takes it as one."""
    declared = {"05_qlora_training": {"learning_rate": 0.003, "max_steps": 300, "run_name": "lab"}}
    params = pipeline.load_preset(None, ["learning_rate=5e-4", "max_steps=1e2", "run_name=5e-4"])
    assert params["learning_rate"] == "5e-4"  # what YAML gives
    pipeline.numbers_from_text(params, declared)
    assert params["learning_rate"] == 5e-4 and params["run_name"] == "5e-4"  # a text parameter stays text
    assert params["max_steps"] == "1e2"  # not a whole number: check_types names it
    assert pipeline.check_types(params, [repo_root() / "notebooks" / "05_qlora_training.ipynb"], declared) == [
        "max_steps = '1e2' (str): expected a whole number, like the default 300"]


def test_a_parameter_no_selected_notebook_reads_is_refused():
    nbs = {"02_multi_model_generation": {"samples_per_model": 3}, "06_evaluation": {"answer_max_new_tokens": 16}}
    chosen = [repo_root() / "notebooks" / "02_multi_model_generation.ipynb"]
    with pytest.raises(pipeline.PipelineError, match=r"-p answer_max_new_tokens: no selected notebook reads it "
                                                     r"\(it is a parameter of notebook\(s\) 06\)"):
        pipeline.check_selected(["answer_max_new_tokens=200"], nbs, chosen)
    pipeline.check_selected(["samples_per_model=1"], nbs, chosen)
