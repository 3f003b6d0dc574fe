"""Scoring answers (helpers.scoring): the lenient matcher's rules on an adversarial table, per-family means, and
lenient against exact match on the lab's base model."""

import pytest

from helpers import heldout, scoring, text, writers
from tests.conftest import write_jsonl


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------
# Answer matching
# ----------------------------------------------------------------------------------------------------------------
#  output, answer, aliases, distractors, expected
MATCHER_CASES = [
    ("Paris", "Paris", [], [], True),
    ("The capital of France is Paris.", "Paris", [], ["Lyon", "Nice", "Lille"], True),
    ("  paris  ", "Paris", [], [], True),
    ("PARIS!", "Paris", [], [], True),
    ("Parisian", "Paris", [], [], False),  # whole words only
    ("It is in the Paris region", "Paris", [], [], True),
    ("Paris or Lyon", "Paris", [], ["Lyon", "Nice", "Lille"], False),  # hedging between options
    ("Lyon", "Paris", [], ["Lyon"], False),
    ("14", "4", [], [], False),
    ("The answer is 4.", "4", [], ["14", "5", "6"], True),
    ("4.5", "4", [], [], False),  # a decimal is one number
    ("3,000", "3000", [], [], True),
    ("There are 3000 meters in 3 kilometers.", "3000", [], ["300", "30000", "21"], True),
    ("40 mg", "40 mg", [], [], True),
    ("40mg", "40 mg", [], [], True),
    ("40 MG.", "40 mg", [], [], True),
    ("400 mg", "40 mg", [], [], False),
    ("40 milligrams", "40 mg", [], [], False),  # units are not converted...
    ("40 milligrams", "40 mg", ["40 milligrams", "40"], [], True),  # ...unless listed as aliases
    ("The dose is 40.", "40 mg", ["40 milligrams", "40"], ["60 mg", "400 mg", "22 mg"], True),
    ("40 mg or 60 mg", "40 mg", ["40"], ["60 mg", "400 mg"], False),
    ("twelve", "12", [], [], False),  # number words are not numbers
    ("twelve", "12", ["twelve"], [], True),
    ("Forty-one", "forty-one", ["forty one"], ["forty", "fifty-one"], True),  # "forty" inside the answer: no hedge
    ("forty one", "forty-one", [], [], True),
    ("forty", "forty-one", [], ["forty"], False),
    ("South Sudan", "Sudan", [], ["South Sudan", "Chad", "Niger"], False),  # longest match wins
    ("Sudan", "Sudan", [], ["South Sudan"], True),
    ("The Hague", "The Hague", [], [], True),
    ("hague", "The Hague", [], [], True),  # leading articles dropped from the reference
    ("Bogota", "Bogotá", [], [], True),  # accents dropped
    ("Kiev", "Kyiv", ["Kiev"], [], True),
    ("Kiev", "Kyiv", [], [], False),
    ("The first letter is B.", "b", [], ["n", "e", "j"], True),
    ("b-a-n-a-n-a", "b", [], ["n", "e", "j"], False),  # spelling it out names a distractor too
    ("", "Paris", [], [], False),
    ("Morrow syndrome is the most likely diagnosis.", "Morrow syndrome", [], ["Pike flush"], True),
    ("morrow", "Morrow syndrome", [], [], False),  # the whole answer is needed
    ("It is not Paris.", "Paris", [], [], True),  # negation is not understood (documented limit)
]


@pytest.mark.parametrize("output,answer,aliases,distractors,expected", MATCHER_CASES)
def test_answer_matches_adversarial_table(output, answer, aliases, distractors, expected):
    assert scoring.answer_matches(output, answer, aliases, distractors) is expected


def test_normalise_answer():
    assert text.normalise_answer("  The Capital, Bogotá!  ") == "capital bogota"
    assert text.normalise_answer("3,000,000 km") == "3000000 km" and text.normalise_answer("40mg") == "40 mg"
    assert text.normalise_answer("The") == "the"  # an answer that is only an article keeps it
    assert text.normalise_answer("twenty-one") == text.normalise_answer("Twenty one")


def test_match_outputs_scores_per_family_with_choices_as_distractors():
    items = [{"family": "capital", "answer": "Paris", "aliases": [], "choices": ["Lyon", "Paris", "Nice", "Lille"],
              "label": 1},
             {"family": "capital", "answer": "Kyiv", "aliases": ["Kiev"], "choices": ["Kyiv", "Lviv", "Odesa",
                                                                                       "Minsk"], "label": 0},
             {"family": "dose", "answer": "40 mg", "aliases": ["40"], "choices": ["40 mg", "60 mg", "4 mg", "400 mg"],
              "label": 0}]
    got = scoring.match_outputs(items, ["Paris, or maybe Lyon.", "It is Kiev.", "Give 40mg."])
    assert got["correct"] == [False, True, True]
    assert got["per_family"] == {"capital": 0.5, "dose": 1.0} and got["accuracy"] == 0.75
    # an EvalItem (no choices, answer in ``response``) is matched without distractors
    assert scoring.match_outputs([heldout.EvalItem("f", "q", "Paris")], ["Paris or Lyon"])["correct"] == [True]
    with pytest.raises(ValueError, match="2 prompts for 3 items"):
        scoring.match_outputs(items, ["a", "b"])


def test_lenient_match_is_more_lenient_than_exact_match(base, lab_questions):
    """The lab's own questions: every exact answer also matches inside-a-sentence, so the matcher's accuracy is at
    least exact match's; a wrong answer stays wrong."""
    model, tok = base
    examples, prompts, greedy = lab_questions
    items = [{"family": e.family, "instruction": e.instruction, "answer": e.response, "aliases": [],
              "choices": [], "label": None} for e in examples]
    got = scoring.exact_match(model, tok, examples, max_new_tokens=24, match="lenient")
    exact = scoring.exact_match(model, tok, examples, max_new_tokens=24)
    assert got["correct"] == scoring.match_outputs(items, greedy)["correct"]  # the same greedy answers, matched leniently
    assert all(m for m, x in zip(got["correct"], exact["correct"]) if x)
    assert got["accuracy"] >= exact["accuracy"] > 0.5
    wrong = [{**it, "answer": it["answer"] + " 99"} for it in items]
    assert scoring.match_outputs(wrong, greedy)["accuracy"] == 0.0


def test_a_reference_longer_than_max_new_tokens_is_an_error(tmp_path):
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    path = write_jsonl(tmp_path / "g.jsonl", [{"instruction": "q", "answer": "a"},
                                              {"instruction": "q", "answer": "the answer is far too long here"}])
    with pytest.raises(ValueError, match=r"g.jsonl, line 2: the reference answer has \d+ tokens and max_new_tokens = 3 leaves no room"):
        scoring.exact_match(None, tok, heldout.load_eval_set(path, "general"), max_new_tokens=3)


def test_eval_renders_a_real_template(tmp_path):
    """Scoring a stand-in of a real family: prompts go through its own chat template and answers are decoded."""
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    model = standins.model("qwen2_5", tok)
    from helpers.generate import generate

    items = [heldout.EvalItem("f", "Capital of France?", "Paris")]
    got = scoring.exact_match(model, tok, items, max_new_tokens=4)
    assert got["n"] == 1 and got["per_family"] == {"f": 0.0}  # a random model is wrong, but it ran
    prompt = tok.apply_chat_template([{"role": "user", "content": "Capital of France?"}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt.startswith("<|im_start|>system\nYou are Qwen")  # Qwen2.5's own template, default system turn
    assert got["samples"][0]["output"] == generate(model, tok, [prompt], max_new_tokens=4)[0]["text"]


def test_only_an_answer_that_ends_its_turn_counts(monkeypatch):
    """A cut-off answer is not a right one, even when its text (stripped) equals the reference."""
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    items = [heldout.EvalItem("f", "q1", "Paris"), heldout.EvalItem("f", "q2", "Paris")]
    monkeypatch.setattr(writers, "generate", lambda *a, **k: [{"text": "Paris", "finished": True},
                                                                 {"text": "Paris ", "finished": False}])
    assert scoring.exact_match(None, tok, items, max_new_tokens=8)["correct"] == [True, False]


def test_lenient_match_scores_answers_in_sentences_and_exact_does_not(monkeypatch):
    """Failure 5: strict exact match scored base SmolLM2 0.000 because it answers in sentences."""
    from helpers.lab import standins

    tok = standins.tokenizer("qwen2_5")
    items = [heldout.EvalItem("capital", "Capital of France?", "Paris", choices=("Paris", "Lyon", "Rome", "Nice"),
                                 label=0),
             heldout.EvalItem("capital", "Capital of Italy?", "Rome", choices=("Paris", "Lyon", "Rome", "Nice"),
                                 label=2)]
    outs = [{"text": "The capital of France is Paris.", "finished": True},
            {"text": "It is Rome or maybe Nice.", "finished": True}]  # a hedge between options is wrong
    monkeypatch.setattr(writers, "generate", lambda *a, **k: outs)
    assert scoring.exact_match(None, tok, items, max_new_tokens=8)["correct"] == [False, False]
    assert scoring.exact_match(None, tok, items, max_new_tokens=8, match="lenient")["correct"] == [True, False]
    with pytest.raises(ValueError, match="answer_match must be one of"):
        scoring.exact_match(None, tok, items, match="fuzzy")


def test_families_at_chance_are_left_out_of_the_headline():
    items = [heldout.EvalItem(f, "q", "a", choices=("a", "b", "c", "d"), label=0) for f in ("easy", "hard")]
    base = {"per_family": {"easy": 0.8, "hard": 0.05, "dom": 0.0}, "per_family_mc": {"easy": 0.9, "hard": 0.3},
            "general_accuracy": 0.425, "mc_general_accuracy": 0.6}
    fams = scoring.informative_families(base, {"general": items, "domain": []})
    assert fams == {"match": ["easy"], "mc": ["easy"]}  # 0.3 is within 10 points of chance (0.25)
    arm = {"per_family": {"easy": 0.5, "hard": 0.0, "dom": 0.9}, "per_family_mc": {"easy": 0.7, "hard": 0.2},
           "general_accuracy": 0.25, "mc_general_accuracy": 0.45}
    h = scoring.headline(arm, fams)
    assert h["general_accuracy"] == 0.5 and h["general_accuracy_all_families"] == 0.25
    assert h["mc_general_accuracy"] == 0.7
