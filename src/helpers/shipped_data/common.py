"""What the shipped data sets share: the seed and file names, the loader of the tables in ``tables/*.json``, one
evaluation row (:func:`item`) and the check that makes it fair to the scorers (:func:`validate`), and the JSONL
format the files are written in."""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from pathlib import Path

from ..text import answer_tokens

SEED = 2506_09428
PER_FAMILY = 50
FILES = {"general": "general_eval.jsonl", "general_val": "general_val.jsonl",
         "clinical_train": "clinical_train.jsonl", "clinical_eval": "clinical_eval.jsonl",
         "clinical_val": "clinical_val.jsonl", "velish_train": "velish_train.jsonl", "velish_eval": "velish_eval.jsonl",
         "velish_val": "velish_val.jsonl", "public_standin": "public_standin.jsonl"}
FIELDS = ("family", "instruction", "answer", "aliases", "choices", "label")
TABLES = Path(__file__).parent / "tables"


def table(name: str) -> dict:
    """The tables of ``tables/<name>.json`` by name, as JSON has them (lists; see :func:`tuples`)."""
    return json.loads((TABLES / f"{name}.json").read_text(encoding="utf-8"))


def tuples(value):
    """``value`` with every list made a tuple, inside dict values too: a table as it was written in Python."""
    if isinstance(value, dict):
        return {k: tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(tuples(v) for v in value)
    return value


_DRAW = [""]  # "": the committed draw; ``redrawn`` sets another (the validation split's)


def seeded(name: str) -> random.Random:
    """A family's own generator (string seeds are hashed deterministically by ``random``)."""
    return random.Random(f"{SEED}:{_DRAW[0]}{name}")


@contextmanager
def redrawn(label: str):
    """Inside, every family draws again under ``label`` (other random choices from the same tables)."""
    _DRAW[0] = f"{label}:"
    try:
        yield
    finally:
        _DRAW[0] = ""


def cap(text: str) -> str:
    """``text`` with its first character upper-cased (the rest as it is)."""
    return text[:1].upper() + text[1:]


def fill(template: str, **slots) -> str:
    """``template`` with its slots filled; ``{Slot}`` (capitalised) puts the value at the start of a sentence."""
    values = {**slots, **{k[:1].upper() + k[1:]: cap(str(v)) for k, v in slots.items()}}
    return template.format(**values)


# ================================================================================================================
# Evaluation rows
# ================================================================================================================
def item(family: str, instruction: str, answer: str, distractors: list[str], rng: random.Random,
         aliases: tuple[str, ...] | list[str] = ()) -> dict:
    """One evaluation row: the answer shuffled in among three distractors (``label`` = its index)."""
    if len(distractors) != 3:
        raise ValueError(f"{family}: {instruction!r} needs three distractors, got {distractors}")
    choices = [answer, *distractors]
    rng.shuffle(choices)
    return {"family": family, "instruction": instruction, "answer": answer, "aliases": list(aliases),
            "choices": choices, "label": choices.index(answer)}


def pick(candidates, n: int, rng: random.Random, exclude=()) -> list[str]:
    """``n`` distinct candidates (order kept, then a seeded sample) not in ``exclude`` (compared lower-cased)."""
    banned = {str(e).lower() for e in exclude}
    pool = [c for c in dict.fromkeys(str(c) for c in candidates) if c.lower() not in banned]
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} candidates left of {list(candidates)}")
    return rng.sample(pool, n)


def capped(items: list[dict], rng: random.Random, n: int = PER_FAMILY) -> list[dict]:
    """``items``, or a seeded sample of ``n`` of them in their order where there are more."""
    return items if len(items) <= n else [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def validate(items: list[dict]) -> list[dict]:
    """Raise ``ValueError`` unless every item is fair to both scorers; return the items.

    Each item has the fields of ``FIELDS``; four choices, distinct after the matcher's normalisation, with the answer
    exactly once at ``label``; no alias equal to a distractor; the answer, its aliases and the distractors each
    absent from the instruction (echoing the question must not score) and not inside one another (so that a right
    sentence never contains a distractor); no instruction twice.
    """

    def inside(a: list[str], b: list[str]) -> bool:
        return any(b[i : i + len(a)] == a for i in range(len(b) - len(a) + 1))

    seen = set()
    for row in items:
        where = f"{row.get('family')}: {row.get('instruction')!r}"
        if tuple(row) != FIELDS:
            raise ValueError(f"{where}: fields {list(row)}, expected {list(FIELDS)}")
        if row["instruction"] in seen:
            raise ValueError(f"{where}: duplicate instruction")
        seen.add(row["instruction"])
        choices, label = row["choices"], row["label"]
        if len(choices) != 4 or choices.count(row["answer"]) != 1 or choices[label] != row["answer"]:
            raise ValueError(f"{where}: choices {choices} must hold the answer {row['answer']!r} once, at "
                             f"label {label}")
        normal = [answer_tokens(c) for c in choices]
        if len({tuple(n) for n in normal}) != 4:
            raise ValueError(f"{where}: choices {choices} are not distinct once normalised")
        question = answer_tokens(row["instruction"], strip_articles=False)
        forms = [answer_tokens(a) for a in (row["answer"], *row["aliases"])]
        wrong = [n for i, n in enumerate(normal) if i != label]
        for w in wrong:
            if any(inside(w, f) or inside(f, w) for f in forms):
                raise ValueError(f"{where}: distractor {' '.join(w)!r} and an answer form contain one another")
        for phrase in forms + wrong:
            if inside(phrase, question):
                raise ValueError(f"{where}: {' '.join(phrase)!r} occurs in the instruction")
    return items


# ================================================================================================================
# JSONL
# ================================================================================================================
def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def read(path: Path | str) -> list[dict]:
    """The rows of one of these JSONL files."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def summary(rows: list[dict]) -> dict[str, int]:
    """Rows per family."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["family"]] = counts.get(r["family"], 0) + 1
    return counts
