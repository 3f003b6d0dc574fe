"""Where runs write (helpers.runs): a run name is a plain folder name, so nothing is written outside outputs/."""
import pytest

from helpers import pipeline, runs
from tests.conftest import ROOT

GOOD = ["lab", "smollm2-gpu", "my_run.2", "Run7"]
BAD = ["", ".", "..", "../probe-escape", "/tmp/x", "a/b", "a\\b", "-x", ".hidden", " lab", "lab ", "_models", None, 3]


@pytest.mark.parametrize("name", GOOD)
def test_plain_names_are_folders_under_outputs(name, outputs):
    assert runs.run_dir(name) == runs.outputs_root() / name


@pytest.mark.parametrize("name", BAD, ids=repr)
def test_any_other_name_is_refused_naming_the_rule(name, outputs):
    with pytest.raises(runs.BadRunName, match=r"run_name = .*: a run name is a plain folder name under outputs/"):
        runs.run_dir(name)
    with pytest.raises(runs.BadRunName):
        runs.stage_dir(name, "04_mixing")


@pytest.mark.parametrize("name", ["../probe-escape", "..", ""], ids=repr)
def test_the_runner_refuses_before_writing_anything(name, outputs, tmp_path):
    def tree():
        return sorted(p for p in ROOT.rglob("*")
                      if not {".venv", ".git", "__pycache__", ".pytest_cache"} & set(p.parts))

    before = tree()
    with pytest.raises(pipeline.PipelineError, match="run_name"):
        pipeline.run(ROOT / "presets" / "smoke.yaml", overrides=[f"run_name={name!r}"], only=["04"])
    assert tree() == before
    assert not outputs.exists() or not any(outputs.iterdir())
