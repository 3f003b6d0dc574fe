"""Stage 02 (helpers.multi_model_generation): resumable multi-model generation, through the generation
seam."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import multi_model_generation as mmg
from helpers import runs, writers
from helpers.generate import compile_choice
from helpers.lab import tasks, zoo


def prepare(run_name, n=200):
    """What stages 00 and 01 would leave: the zoo's paths and some instructions."""
    runs.write_json(runs.stage_dir(run_name, "00_lab") / "models.json",
                    {name: str(zoo.ZOO_DIR / name) for name in zoo.ZOO})
    examples = tasks.sample_examples(tasks.uniform(tasks.GENERAL_FAMILIES), n, seed=5)
    return [{"id": i, "instruction": e.instruction} for i, e in enumerate(examples)]


ARGS = dict(generators=["base", "gen_small"], samples_per_model=2, batch_size=20, shard_size=40, seed=1, progress=False)


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result(outputs, tmp_path):
    instructions = prepare("killed")
    (tmp_path / "instr.json").write_text(json.dumps(instructions))
    child = (f"import json; from helpers import multi_model_generation as m; "
             f"m.generate_all('killed', json.load(open({str(tmp_path / 'instr.json')!r})), **{ARGS!r})")
    proc = subprocess.Popen([sys.executable, "-c", child], env={**os.environ, "HELPERS_OUTPUTS": str(outputs)})
    shard_dir = outputs / "killed" / "02_generation" / "shards" / "base"
    deadline = time.time() + 120
    while len(list(shard_dir.glob("[0-9]*.json"))) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_chunks = -(-len(instructions) * 2 // 40)
    done_before = len(list(shard_dir.glob("[0-9]*.json")))
    assert 3 <= done_before < n_chunks, "the run must be killed mid-way for this test to mean anything"

    stats, _ = mmg.generate_all("killed", instructions, **ARGS)
    assert stats["base"]["generated_chunks"] == n_chunks - done_before  # finished shards were skipped
    resumed = mmg.collect("killed", ARGS["generators"])

    prepare("reference")
    mmg.generate_all("reference", instructions, **ARGS)
    reference = mmg.collect("reference", ARGS["generators"])

    assert len(resumed) == len(instructions) * 2 * 2
    assert len({(r["model"], r["instruction_id"], r["sample"]) for r in resumed}) == len(resumed)
    assert resumed == reference


@pytest.mark.slow
def test_shards_split_among_workers_are_the_shards_written_by_one(outputs):
    """Two worker processes (on a CPU; on GPUs one per GPU) write each generator's missing shards between them:
    every shard comes out as one process writes it (resuming from the shards that exist is the same code for any
    number of workers: test_kill_9_mid_run_then_resume_gives_the_uninterrupted_result)."""
    instructions = prepare("one", n=12)
    args = {**ARGS, "shard_size": 6, "batch_size": 6}
    stats, plan = mmg.generate_all("one", instructions, **args)
    assert plan.workers == 1 and stats["base"]["generated_chunks"] == 4
    prepare("two")
    stats, plan = mmg.generate_all("two", instructions, **args, workers=2)
    assert plan.workers == 2 and plan.devices == ("cpu", "cpu")
    assert {name: s["generated_chunks"] for name, s in stats.items()} == {"base": 4, "gen_small": 4}
    assert mmg.collect("two", args["generators"]) == mmg.collect("one", args["generators"])


def test_a_worker_keeps_one_generator_loaded_across_its_shards(monkeypatch):
    """With several workers each shard is its own task; a worker loads a generator once for all the shards it
    takes, and lets it go for the next generator (one model on its GPU at a time)."""
    loads = []
    monkeypatch.setattr(writers, "load", lambda run, name, backend="hf": loads.append(name) or object())
    monkeypatch.setattr(mmg, "_LOADED", {})
    first = mmg._writer("r", "a", "hf", keep_loaded=True)
    assert mmg._writer("r", "a", "hf", keep_loaded=True) is first
    mmg._writer("r", "b", "hf", keep_loaded=True)
    assert list(mmg._LOADED) == [("r", "b", "hf")]
    mmg._writer("r", "b", "hf", keep_loaded=False)  # one process, one call per generator: nothing kept
    assert loads == ["a", "b", "b"] and list(mmg._LOADED) == [("r", "b", "hf")]


def test_several_generations_on_one_gpu_need_a_batch_size(outputs, monkeypatch):
    from helpers import workers

    monkeypatch.setattr(workers, "visible_gpus", lambda: ["0"])
    instructions = prepare("gpu", n=40)  # two shards per generator: two workers on the one GPU
    with pytest.raises(ValueError, match="give batch_size"):
        mmg.generate_all("gpu", instructions, **{**ARGS, "batch_size": 0}, workers=2)


def test_rows_carry_what_the_issue_asks(outputs):
    instructions = prepare("rows", n=10)
    mmg.generate_all("rows", instructions, ["gen_small"], 3, {"gen_small": {"temperature": 0.5}}, batch_size=8,
                     shard_size=16, progress=False)
    rows = mmg.collect("rows", ["gen_small"])
    assert len(rows) == 30
    assert set(rows[0]) >= {"instruction_id", "model", "sample", "temperature", "top_p", "max_new_tokens",
                            "prompt_tokens", "new_tokens", "response"}
    assert {r["temperature"] for r in rows} == {0.5}
    assert sorted({r["sample"] for r in rows}) == [0, 1, 2]
    m = mmg.metrics(rows, instructions, ["gen_small"], 3, mmg.shard_timings("rows", ["gen_small"]))
    assert m["tokens_per_second"]["gen_small"] > 0 and m["new_tokens"]["gen_small"] > 0


def test_changed_parameters_do_not_mix_with_old_shards(outputs):
    instructions = prepare("mixed", n=6)
    mmg.generate_all("mixed", instructions, ["gen_small", "base"], 1, shard_size=4, progress=False)
    first = mmg.collect("mixed", ["gen_small", "base"])
    mmg.generate_all("mixed", instructions, ["gen_small", "base"], 2, shard_size=4, progress=False)
    assert len(mmg.collect("mixed", ["gen_small", "base"])) == 2 * len(first)  # all new: no old shard reused
    kept = sorted((runs.stage_dir("mixed", mmg.STAGE) / "replaced").iterdir())  # the old ones set aside, not lost
    assert [k.name.rsplit("-", 2)[0] for k in kept] == ["base", "gen_small"]
    assert sum(len(list(k.glob("[0-9]*.json"))) for k in kept) == 2 * 2  # 6 jobs in shards of 4, per model


def test_bad_sampling_parameters(outputs):
    instructions = prepare("bad", n=2)
    with pytest.raises(ValueError, match="unknown key"):
        mmg.generate_all("bad", instructions, ["gen_small"], 1, {"default": {"temprature": 0.5}}, progress=False)
    with pytest.raises(ValueError, match="not generators"):
        mmg.generate_all("bad", instructions, ["gen_small"], 1, {"gen_big": {"temperature": 0.5}}, progress=False)


def test_missing_stage_00_names_the_notebook(outputs):
    with pytest.raises(FileNotFoundError, match="run notebooks/00_lab_world.ipynb first"):
        mmg.generate_all("nothing", [{"id": 0, "instruction": "x"}], ["base"], 1, progress=False)


def test_a_generator_given_as_a_path_never_writes_into_its_model_folder(outputs, tmp_path):
    """Failure 1 of the real-model trial: with an absolute path as generator name, the shard folder was the model
    folder itself (it read the model's config.json as its own)."""
    import shutil

    instructions = prepare("paths", n=4)
    model_dir = tmp_path / "models" / "gen_small"
    shutil.copytree(zoo.ZOO_DIR / "gen_small", model_dir)
    before = sorted(p.name for p in model_dir.iterdir())
    mmg.generate_all("paths", instructions, [str(model_dir)], 1, shard_size=4, progress=False)
    assert sorted(p.name for p in model_dir.iterdir()) == before
    shard_dir = mmg.shard_dir("paths", str(model_dir))
    assert shard_dir.parent == runs.stage_dir("paths", mmg.STAGE) / "shards" and shard_dir.name.startswith("gen_small-")
    rows = mmg.collect("paths", [str(model_dir)])
    assert len(rows) == 4 and {r["model"] for r in rows} == {str(model_dir)} and {r["frame"] for r in rows} == {"chat"}


def test_few_shot_frame_cuts_answers_at_the_next_question(lab_tokenizer):
    from helpers.chat import FEWSHOT_STOP, frame_for

    frame = frame_for(lab_tokenizer, "fewshot")
    prompt = frame.render(lab_tokenizer, "What is 2 plus 2?")
    assert prompt.endswith("Question: What is 2 plus 2?\nAnswer:") and prompt.count("Question:") == 4
    assert frame.stop_strings == [FEWSHOT_STOP] and frame_for(lab_tokenizer).kind == "chat"
    with pytest.raises(ValueError, match="frame must be one of"):
        frame_for(lab_tokenizer, "urial")


class CountingWriter(writers.HFWriter):
    """A backend of its own: the transformers writer, counting the models it loads and the prompts it answers."""

    loaded: list[str] = []
    prompts = 0

    @classmethod
    def load(cls, run_name, name, **kwargs):
        cls.loaded.append(name)
        return super().load(run_name, name, **kwargs)

    def write(self, prompts, **options):
        type(self).prompts += len(prompts)
        return super().write(prompts, **options)


def test_generation_goes_through_the_writer_of_the_backend_asked_for(outputs, monkeypatch):
    """The stage runs no model itself: a backend registered in writers.BACKENDS answers every job, and gives the
    rows the default (hf) writer gives. Its shards are not the hf ones: the backend enters the config hash."""
    monkeypatch.setitem(writers.BACKENDS, "counting", CountingWriter)
    monkeypatch.setattr(CountingWriter, "loaded", [])
    instructions = prepare("seam", n=6)
    args = dict(generators=["gen_small", "base"], samples_per_model=2, batch_size=8, shard_size=5, seed=2,
                progress=False)
    mmg.generate_all("seam", instructions, **args, backend="counting")
    assert CountingWriter.loaded == ["gen_small", "base"] and CountingWriter.prompts == 6 * 2 * 2
    prepare("seam-hf")
    mmg.generate_all("seam-hf", instructions, **args)
    assert mmg.collect("seam", args["generators"]) == mmg.collect("seam-hf", args["generators"])
    counting = runs.read_json(mmg.shard_dir("seam", "base") / "config.json")
    hf = runs.read_json(mmg.shard_dir("seam-hf", "base") / "config.json")
    assert counting["backend"] == "counting" and "backend" not in hf and counting["hash"] != hf["hash"]
    mmg.generate_all("seam", instructions, **args)  # the hf writer does not reuse the other backend's shards
    assert "backend" not in runs.read_json(mmg.shard_dir("seam", "base") / "config.json")


def test_the_hf_config_hash_is_the_one_before_the_seam():
    """Shard folders written before the backend existed stay valid: the default backend leaves the hash alone."""
    params = mmg.sampling_for("base", {})
    instructions = [{"id": 0, "instruction": "Sort 3 1 2"}, {"id": 1, "instruction": "Spell cat"}]
    assert mmg._config_hash(instructions, "base", params, 3, 1024, 0) == "9f03ff92652507fe"  # computed before the seam


def test_unfinished_answers_are_a_sign_of_trouble(capsys):
    """Failure 6: 73% unfinished answers passed without a word."""
    rows = [{"model": "g", "finished": i < 27} for i in range(100)]
    m = mmg.metrics(rows, [{}] * 100, ["g"], 1, {"g": {"new_tokens": 1, "tokens_per_second": 1.0}})
    assert m["warnings"] == ["73% of g's answers hit max_new_tokens before they ended, and notebook 03 drops "
                             "unfinished answers: raise max_new_tokens for g in sampling"]
    assert capsys.readouterr().out.count("WARNING: ") == 1


def test_an_explicit_decode_compile_choice_reaches_the_writer_and_keeps_its_own_shards(outputs, monkeypatch):
    """``compile_decode`` (notebooks 01 and 02): a GPU's compiled decode samples rows that do not repeat
    (docs/bench/h200x2-determinism/), so a user asks for it uncompiled. The choice reaches every write; an explicit
    one enters the shards' config and hash (shards asked for uncompiled are never reused compiled ones), None leaves
    the hash as it was; a value that is not None/"auto"/true/false is refused, naming the parameter."""
    seen = []
    monkeypatch.setitem(writers.BACKENDS, "hf", type("Seeing", (writers.HFWriter,), {
        "write": lambda self, prompts, **options: seen.append(options["compile"]) or
        writers.HFWriter.write(self, prompts, **options)}))
    instructions = prepare("compiled", n=4)
    args = dict(generators=["base"], samples_per_model=1, batch_size=8, shard_size=2, seed=0, progress=False)
    mmg.generate_all("compiled", instructions, **args)
    auto = runs.read_json(mmg.shard_dir("compiled", "base") / "config.json")
    mmg.generate_all("compiled", instructions, **args, compile=False)
    never = runs.read_json(mmg.shard_dir("compiled", "base") / "config.json")
    assert seen == [None, None, False, False]  # two shards a call: the second found the first's stale, wrote anew
    assert "compile" not in auto and never["compile"] is False and never["hash"] != auto["hash"]
    assert len(list((mmg.stage_dir("compiled", mmg.STAGE) / "replaced").iterdir())) == 1
    assert compile_choice("auto") is None and compile_choice(None) is None and compile_choice(True) is True
    assert compile_choice("graphs") == "graphs"  # CUDA graphs without inductor: its own shards too
    monkeypatch.setattr(mmg.time, "strftime", lambda fmt: "20261129-000000")  # set-asides within one second
    mmg.generate_all("compiled", instructions, **args, compile=True)
    mmg.generate_all("compiled", instructions, **args)
    kept = {p.name for p in (mmg.stage_dir("compiled", mmg.STAGE) / "replaced").iterdir()}
    assert len(kept) == 3 and {"base-20261129-000000", "base-20261129-000000-2"} <= kept  # no crash, nothing lost
    with pytest.raises(ValueError, match="compile_decode = 'no'"):
        mmg.generate_all("compiled", instructions, **args, compile="no")
