"""``clinical_train.jsonl`` and ``clinical_eval.jsonl``: the lab's fictional clinical knowledge base
(``lab.tasks.CLINICAL``) in English, asked and answered in natural sentences for training, and asked in other
phrasings, with other dosing pairs, for the held-out evaluation. The phrasings are in ``tables/clinical.json``."""

from __future__ import annotations

import random

from ..lab.tasks import CLINICAL
from .common import fill, item, pick, seeded, table, tuples, validate

_T = table("clinical")

# Train phrasings: the instruction and the natural-sentence answers, by family. Slots: {symptom}, {condition},
# {drug}, {rate} (mg per kg), {weight} (kg), {dose} (mg); a capitalised slot ({Drug}) starts a sentence.
TRAIN_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["TRAIN_QUESTIONS"])
TRAIN_ANSWERS: dict[str, tuple[str, ...]] = tuples(_T["TRAIN_ANSWERS"])
# Held-out phrasings: none of their wording occurs in the train questions (``tests/test_shipped_data.py``).
EVAL_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["EVAL_QUESTIONS"])
# Validation phrasings (``clinical_val.jsonl``, for choosing settings): in neither the train nor the held-out wording.
VAL_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["VAL_QUESTIONS"])
DOSING_RATES = range(1, 10)  # mg per kg, as the lab's dosing family
DOSING_WEIGHTS = range(10, 100, 10)  # kg
N_EVAL_DOSING = 30
N_TRAIN_DOSING_PER_PAIR = 2


def dosing_pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Every (rate, weight) pair, split into (train, held-out): the held-out doses are never computed in train. Held-out
    rates are 2 or more (at 1 mg/kg the dose repeats the weight, which the question states)."""
    pairs = [(r, w) for r in DOSING_RATES for w in DOSING_WEIGHTS]
    held = set(seeded("dosing_pairs").sample([(r, w) for r, w in pairs if r > 1], N_EVAL_DOSING))
    return [p for p in pairs if p not in held], [p for p in pairs if p in held]


def _facts() -> list[dict]:
    return [{"condition": c, "symptom": s, "drug": d} for c, (s, d) in CLINICAL.items()]


def clinical_train_rows() -> list[dict]:
    """The domain SFT set: ``instruction``, ``response`` (a full sentence that states the fact) and ``family``."""
    rng = seeded("clinical_train")
    rows = []
    for family in ("diagnosis", "treatment", "overview", "drug"):
        for fact in _facts():
            for k, question in enumerate(TRAIN_QUESTIONS[family]):
                answers = TRAIN_ANSWERS[family]
                answer = answers[(k + rng.randrange(len(answers))) % len(answers)]
                rows.append({"family": f"clinical_{family}", "instruction": fill(question, **fact),
                             "response": fill(answer, **fact)})
    drugs = [f["drug"] for f in _facts()]
    for rate, weight in dosing_pairs()[0]:
        for drug in rng.sample(drugs, N_TRAIN_DOSING_PER_PAIR):
            slots = {"drug": drug, "rate": rate, "weight": weight, "dose": rate * weight}
            question = fill(rng.choice(TRAIN_QUESTIONS["dosing"]), **slots)
            rows.append({"family": "clinical_dosing", "instruction": question,
                         "response": fill(rng.choice(TRAIN_ANSWERS["dosing"]), **slots)})
    return rows


def _dose_distractors(rate: int, weight: int, rng: random.Random) -> list[str]:
    dose = rate * weight
    wrong = [(rate + 1) * weight, (rate - 1) * weight, rate * (weight + 10), rate * (weight - 10), rate + weight,
             dose * 10]
    return [f"{v} mg" for v in pick([v for v in wrong if v > 0], 3, rng, [dose, rate, weight])]


def clinical_val_items() -> list[dict]:
    """The domain validation set: the diagnosis and treatment facts in phrasings of their own (no dosing: its
    held-out pairs are the held-out set's, and its train pairs are answered in the train split)."""
    rng = seeded("clinical_val")
    facts, out = _facts(), []
    for family, answer in (("clinical_diagnosis", "condition"), ("clinical_treatment", "drug")):
        for fact in facts:
            for question in VAL_QUESTIONS[family]:
                others = [f[answer] for f in facts if f is not fact]
                out.append(item(family, fill(question, **fact), fact[answer], pick(others, 3, rng), rng))
    return validate(out)


def clinical_eval_items() -> list[dict]:
    """The held-out domain set: short answers, four choices, phrasings and dosing pairs not in the train split."""
    rng = seeded("clinical_eval")
    out = []
    facts = _facts()
    for fact in facts:
        for question in EVAL_QUESTIONS["clinical_diagnosis"]:
            others = [f["condition"] for f in facts if f is not fact]
            out.append(item("clinical_diagnosis", fill(question, **fact), fact["condition"],
                            pick(others, 3, rng), rng))
    for fact in facts:
        for question in EVAL_QUESTIONS["clinical_treatment"]:
            others = [f["drug"] for f in facts if f is not fact]
            out.append(item("clinical_treatment", fill(question, **fact), fact["drug"], pick(others, 3, rng), rng))
    for k, (rate, weight) in enumerate(dosing_pairs()[1]):
        drug = facts[k % len(facts)]["drug"]
        question = EVAL_QUESTIONS["clinical_dosing"][k % len(EVAL_QUESTIONS["clinical_dosing"])]
        dose = rate * weight
        out.append(item("clinical_dosing", fill(question, drug=drug, rate=rate, weight=weight), f"{dose} mg",
                        _dose_distractors(rate, weight, rng), rng, [f"{dose} milligrams", str(dose)]))
    return validate(out)
