"""The held-out sets notebook 06 scores on: the lab's (drawn from its task families with the same
``n_eval_per_family`` / ``eval_seed`` as stage 00, which is why this module may read the lab's ground truth,
``tests/test_lab_isolation.py``), or two files of questions with short reference answers (``load_eval_set``), e.g.
slices of benchmarks whose prompts ask for the bare answer."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .datafiles import DataError, eval_row, looks_like_path, no_such_file, read_records
from .lab.evaluate import heldout_sets
from .runs import find_local, trouble


@dataclass(frozen=True)
class EvalItem:
    """One held-out question: the family it is reported under, the instruction and the reference answer (the lab's
    ``tasks.Example`` has the same three fields)."""

    family: str
    instruction: str
    response: str
    where: str = field(default="", compare=False)  # file and line, for error messages
    aliases: tuple = field(default=(), compare=False)  # other accepted forms of the answer (lenient matching)
    choices: tuple = field(default=(), compare=False)  # options for multiple choice (the answer among them)
    label: int | None = field(default=None, compare=False)  # index of the answer in choices


def load_eval_set(source: str, default_family: str) -> list[EvalItem]:
    """Held-out questions from a JSONL, JSON, CSV or Parquet file (or a hub dataset id).

    Each row needs ``instruction`` and ``answer`` (``response`` or ``output`` also accepted; ``input`` is appended to
    the instruction as in Alpaca), or ``messages`` with one user turn and the assistant's reference answer; an
    optional ``family`` (e.g. ``gsm8k``, ``mmlu``) groups rows for the per-family figures, ``default_family`` otherwise.
    Exact match is strict: write instructions that ask for a short, canonical answer ("Answer with the number only.").
    A hub id is refused: export the split you mean to a file (a benchmark's train split is not a held-out set).
    """
    found = find_local(source)
    if found is None:
        if looks_like_path(source) or Path(source).suffix:
            raise no_such_file(source)
        raise DataError(f"{source}: evaluation sets are read from local files, not hub ids (which would give the "
                        "train split); export the held-out split first, e.g. load_dataset(id, config, "
                        "split='test').to_json('data/eval.jsonl'), and map its columns to instruction/answer")
    items = []
    for where, record in read_records(str(found)):
        row = eval_row(record, where)
        items.append(EvalItem(str(row["family"] or default_family), row["instruction"], row["answer"], where,
                              row["aliases"], row["choices"], row["label"]))
    if not items:
        raise DataError(f"{source}: no rows")
    return items


def eval_sets(general: str, domain: str) -> dict[str, list[EvalItem]]:
    """``{"general": [...], "domain": [...]}`` from the two files of notebook 06's ``eval_general``/``eval_domain``."""
    missing = [name for name, value in (("eval_general", general), ("eval_domain", domain)) if not value]
    if missing:
        raise DataError(f"notebook 06 with lab = False needs {' and '.join(missing)}: a file of held-out questions "
                        "with reference answers (rows with 'instruction', 'answer' and optionally 'family')")
    sets = {"general": load_eval_set(general, "general"), "domain": load_eval_set(domain, "domain")}
    shared = {e.family for e in sets["general"]} & {e.family for e in sets["domain"]}
    if shared:
        raise DataError(f"family {sorted(shared)} occurs in both {general} and {domain}; give the domain rows "
                        "their own family names")
    return sets


def held_out(lab: bool, n_per_family: int, seed: int, general: str = "", domain: str = "") -> tuple[dict, list[str]]:
    """Notebook 06's held-out sets and what was left out of them: ``(sets, warnings)``. The lab's sets
    (``n_per_family``, ``seed``) or, with ``lab`` False, the two files (``n_per_family`` > 0 keeps that many questions
    of each family, drawn with ``seed``; 0 keeps them all). Each file cut that way gets a ``WARNING:`` line (printed,
    and returned for the report): the verdicts then rest on fewer questions than the user gave."""
    if not lab:
        files = eval_sets(general, domain)
        sets = {name: per_family_sample(items, n_per_family, seed) for name, items in files.items()}
        cut = {name: (len(sets[name]), len(items)) for name, items in files.items() if len(sets[name]) < len(items)}
        return sets, trouble({
            f"{name} set ({general if name == 'general' else domain}): {kept} of its {total} questions scored "
            f"(n_eval_per_family = {n_per_family} per family); set n_eval_per_family = 0 to score them all": True
            for name, (kept, total) in cut.items()})
    if general or domain:
        raise ValueError("eval_general / eval_domain are set but lab = True, which scores the lab's own held-out "
                         "sets: set lab = False to score your files")
    return heldout_sets(n_per_family, seed), []


def per_family_sample(items: list, n_per_family: int, seed: int) -> list:
    """At most ``n_per_family`` items of each family (a seeded draw, kept in file order); all when it is 0."""
    if n_per_family <= 0:
        return items
    by: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        by[item.family].append(i)
    rng = random.Random(seed)
    keep = {i for idx in by.values() for i in (rng.sample(idx, n_per_family) if len(idx) > n_per_family else idx)}
    return [item for i, item in enumerate(items) if i in keep]
