"""lm-evaluation-harness on the shipped held-out sets (helpers.lmeval): the task YAMLs are what the code writes, and
on real SmolLM2 lm-eval's multiple choice and lenient answers give notebook 06's scorers' numbers question by
question (offline, CPU)."""
import json
import logging

import numpy as np
import pytest

from helpers import lmeval, loglik, models
from helpers.chat import render_prompt
from helpers.scoring import exact_match
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_task_yamls_in_the_repository_are_what_the_code_writes(tmp_path):
    written = lmeval.write(tmp_path)
    shipped = sorted(p.name for p in (ROOT / lmeval.TASKS_DIR).iterdir() if p.suffix in (".yaml", ".py"))
    assert sorted(p.name for p in written) == shipped, "run python -m helpers.lmeval write"
    for p in written:
        assert p.read_text() == (ROOT / lmeval.TASKS_DIR / p.name).read_text(), f"{p.name}: python -m helpers.lmeval write"


def test_the_yamls_load_as_lm_eval_tasks_from_the_repository_root(monkeypatch):
    from lm_eval.tasks import TaskManager, get_task_dict

    monkeypatch.chdir(ROOT)  # their data paths are relative to it, as on lm_eval's command line
    tasks = get_task_dict(["general_eval_mc", "clinical_eval_answers"],  # without lm-eval's own index (9 s)
                          TaskManager(include_path=str(ROOT / lmeval.TASKS_DIR), include_defaults=False))
    mc = tasks["general_eval_mc"]
    rows = [json.loads(line) for line in (ROOT / "data" / "general_eval.jsonl").read_text().splitlines()]
    assert len(mc.eval_docs) == sum(len(r.get("choices") or []) >= 2 for r in rows)  # the rows with choices
    assert mc.doc_to_choice(mc.eval_docs[0]) == rows[0]["choices"] and mc.config.target_delimiter == ""
    answers = tasks["clinical_eval_answers"]
    assert len(answers.eval_docs) == len((ROOT / "data" / "clinical_eval.jsonl").read_text().splitlines())


@pytest.mark.xdist_group("bad_inputs_table")  # after its misspelled-benchmark row, on its worker: one lm-eval index
def test_benchmark_names_are_checked_before_anything_runs():
    problems = lmeval.check_benchmarks(["general_eval_mc", "mmlu_prox", "arc_easy"])
    assert len(problems) == 2  # the shipped set's task reads its local file
    assert "'mmlu_prox' is no lm-eval task (closest: ['mmlu_pro'" in problems[0]
    assert "'arc_easy': its data could not be read here" in problems[1]
    if models.hub_reachable():  # offline (here, CI): how to bring the dataset
        assert "local datasets cache" in problems[1] and "--tasks arc_easy --limit 1" in problems[1]


def test_a_known_hub_task_is_checked_without_lm_evals_whole_index(monkeypatch):
    """Issue 25's "a named hub task with no cache fails at preflight within seconds": a name found in lm-eval's task
    files is tried with an index of its own folder; the whole index (about 17-20 s here) is never built for it."""
    built = lmeval.task_manager

    def no_whole_index(defaults=True):
        assert not defaults, "lm-eval's whole task index was built"
        return built(defaults)

    monkeypatch.setattr(lmeval, "task_manager", no_whole_index)
    assert {"gsm8k", "mmlu_pro", "arc_easy"} <= set(lmeval._task_folders())  # lm-eval's task files where expected
    problems = lmeval.check_benchmarks(["gsm8k", "general_eval_mc"])
    if models.hub_reachable():  # offline (here, CI): refused, naming the task and how to cache it
        assert len(problems) == 1 and "'gsm8k': its data could not be read here" in problems[0]
        assert "--tasks gsm8k --limit 1" in problems[0]
    try:  # an error raised outside the datasets libraries (e.g. lm-eval not knowing a subtask) is not the data's
        raise KeyError("leaderboard_bbh")
    except KeyError as err:
        assert not lmeval._reading_data(err)


def test_lenient_is_the_answer_matcher():
    doc = {"answer": "Paris", "aliases": [], "choices": ["Paris", "Lyon"], "label": 0}
    assert lmeval.lenient(doc, ["The capital of France is Paris."]) == {"lenient": 1.0}
    assert lmeval.lenient(doc, ["Paris or Lyon."]) == {"lenient": 0.0}  # naming another choice is no answer


@pytest.fixture(scope="module")
def smollm2():
    path = models.resolve("real", "smollm2-135m-instruct")
    return path, *models.load("real", "smollm2-135m-instruct", device="cpu")


@pytest.mark.slow
def test_lm_eval_multiple_choice_equals_ours_question_by_question(smollm2):
    path, model, tok = smollm2
    n = 12
    rows = [json.loads(line) for line in (ROOT / "data" / "general_eval.jsonl").read_text().splitlines()]
    items = [r for r in rows if len(r.get("choices") or []) >= 2][:n]
    got = lmeval.evaluate(path, lmeval.task_configs("general_eval", ROOT / "data" / "general_eval.jsonl")[:1],
                          dtype="float32", batch_size=8, limit=n)
    ours = loglik.multiple_choice(model, tok, [render_prompt(tok, r["instruction"]) for r in items], items,
                                  delimiter="")
    theirs = [[lp for lp, _ in s["filtered_resps"]] for s in sorted(got["samples"]["general_eval_mc"],
                                                                    key=lambda s: s["doc_id"])]
    assert np.max(np.abs(np.array(ours["logprobs"]) - np.array(theirs))) < 1e-3
    assert lmeval.per_question(got, "general_eval_mc", "acc_norm") == [float(c) for c in ours["correct_norm"]]
    assert lmeval.per_question(got, "general_eval_mc", "acc") == [float(c) for c in ours["correct"]]


@pytest.mark.slow
def test_lm_eval_lenient_answers_equal_ours_question_by_question(smollm2):
    from helpers.heldout import load_eval_set

    path, model, tok = smollm2
    n, tokens = 12, 32
    got = lmeval.evaluate(path, lmeval.task_configs("general_eval", ROOT / "data" / "general_eval.jsonl",
                                                    max_gen_toks=tokens)[1:], dtype="float32", batch_size=4, limit=n)
    items = load_eval_set(str(ROOT / "data" / "general_eval.jsonl"), "general")[:n]
    ours = exact_match(model, tok, items, max_new_tokens=tokens, match="lenient")
    theirs = lmeval.per_question(got, "general_eval_answers", "lenient")
    assert theirs == [float(c) for c in ours["correct"]] and 0 < sum(theirs) < n  # some right, some wrong


def test_an_adapter_is_scored_through_peft_as_notebook_06_loads_it(tmp_path, outputs, capsys, caplog):
    """A LoRA adapter trained on the lab's base (plain LoRA, adapters only, CPU): lm-eval's hf model with ``peft=`` gives the
    option log-probabilities our scorer gives the base with that adapter loaded, and they differ from the base's."""
    from test_training import BASE, CPU_PLAIN, HP, recipe, rows

    from helpers import qlora_training as qt

    hp = {**HP, "train_embeddings": False}  # adapters only, as the real track trains (see helpers.lmeval)
    m = qt.train_arm("t", "domain_only", rows(), BASE, CPU_PLAIN, recipe(hp, CPU_PLAIN), seed=0, progress=False)
    adapter = outputs / "t" / qt.STAGE / m["adapter"]
    items = [{"family": "f", "instruction": q, "answer": a, "choices": c, "label": 0}
             for q, a, c in [("What is 2 plus 3?", "5", ["5", "6", "c a t"]),
                             ("Which drug treats Osk disease?", "calvexa", ["calvexa", "5", "aspirin"]),
                             ("Spell the word cat.", "c a t", ["c a t", "dog", "5"])]]
    data = tmp_path / "set.jsonl"
    data.write_text("".join(json.dumps(it) + "\n" for it in items))
    task = lmeval.task_configs("lab_set", data)[:1]
    tuned = lmeval.evaluate(BASE, task, adapter=adapter, dtype="float32")
    base = lmeval.evaluate(BASE, task, dtype="float32")

    def logprobs(result):
        return [[lp for lp, _ in s["filtered_resps"]] for s in sorted(result["samples"]["lab_set_mc"],
                                                                      key=lambda s: s["doc_id"])]

    model = models.load_adapter(BASE, adapter, CPU_PLAIN)
    tok = models.load_tokenizer(BASE)
    ours = loglik.multiple_choice(model, tok, [render_prompt(tok, it["instruction"]) for it in items], items,
                                  delimiter="")["logprobs"]
    assert np.max(np.abs(np.array(ours) - np.array(logprobs(tuned)))) < 1e-3
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        loaded = lmeval.evaluate_loaded(model, tok, task)  # notebook 06's path: its own loaded model handed over
    assert np.max(np.abs(np.array(ours) - np.array(logprobs(loaded)))) < 1e-4
    assert "Running loglikelihood requests" in capsys.readouterr().err  # lm-eval's bar, as progress=True asks
    quiet = lmeval.evaluate_loaded(model, tok, task, progress=False)  # notebook 06 with progress = False
    assert logprobs(quiet) == logprobs(loaded) and "Running loglikelihood requests" not in capsys.readouterr().err
    assert not [r for r in caplog.records if str(r.msg).startswith(lmeval.HANDED_A_MODEL)]  # dropped: ours to make
    assert np.max(np.abs(np.array(logprobs(base)) - np.array(logprobs(tuned)))) > 1e-2  # the adapter counts
