"""Where runs write (helpers.runs): a run name is a plain folder name, so nothing is written outside outputs/."""
import pytest

from helpers import models, pipeline, runs
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
    # the converted-model cache (HELPERS_MODELS, outputs/_models here) is left out: on a fresh clone another pytest
    # worker may be converting a GGUF into it meanwhile (CI saw gemma-3-270m's lock file appear), and the refused
    # runner loads no model
    cache = models.models_dir()

    def tree():
        return sorted(p for p in ROOT.rglob("*")
                      if not {".venv", ".git", "__pycache__", ".pytest_cache"} & set(p.parts)
                      and p != cache and cache not in p.parents)

    before = tree()
    with pytest.raises(pipeline.PipelineError, match="run_name"):
        pipeline.run(ROOT / "presets" / "smoke.yaml", overrides=[f"run_name={name!r}"], only=["04"])
    assert tree() == before
    assert not outputs.exists() or not any(outputs.iterdir())


def test_a_rerun_that_does_not_finish_leaves_its_stage_refused(outputs):
    """A notebook that starts again marks its stage unfinished before any cell writes; later stages refuse its files
    until it finishes, so a failed rerun cannot pass new files off under the old stamp."""
    runs.finish_stage("r", "03_filtering", {}, {"n": 1})
    first = runs.stamp("r", "03_filtering")
    assert runs.require("r", "03_filtering").name == "metrics.json"
    ns = {**pipeline.notebook_parameters(ROOT / "notebooks" / "03_filtering.ipynb"), "run_name": "r"}
    pipeline.settle_parameters(ns, "03_filtering")  # what the notebook's second cell does
    with pytest.raises(runs.StaleArtifact, match=r"notebooks/03_filtering.ipynb that began rewriting its files and "
                                                 r"did not finish .* --only 03"):
        runs.require("r", "03_filtering")
    runs.finish_stage("r", "03_filtering", {}, {"n": 2})
    assert runs.require("r", "03_filtering") and runs.stamp("r", "03_filtering") != first


def test_a_stage_never_finished_is_not_marked(outputs):
    runs.mark_unfinished("r", "02_generation")
    assert not runs.stage_dir("r", "02_generation", create=False).exists()
