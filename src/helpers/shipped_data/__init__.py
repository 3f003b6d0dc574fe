"""Evaluation and domain data for a real model, shipped in ``data/`` and built here from small tables of facts.

Nine files, written by :func:`write` (``python -m helpers.shipped_data write [folder]``) and checked against the
code by :func:`check` (``python -m helpers.shipped_data check``):

* ``general_eval.jsonl``: a measure of general skill that carries over to any real model: ten families of short-answer
  questions about real-world facts and simple skills (capitals, chemical symbols, arithmetic, unit conversion,
  opposites, the calendar, first letters, plurals, numbers in words, continents), 488 items. The families were picked
  so that a small (~135M) instruct model should get some of each right and a large one most, so that forgetting can
  show on either; no real model has been scored on them here (no model hub is reachable from this project's
  machines).
* ``general_val.jsonl``: a validation split of the general set (112 items), for choosing training settings without
  the held-out set: its families drawn again, minus every question the held-out set or a training file asks
  (``validation``). It holds what the held-out set leaves unused: new arithmetic and numbers in words, and the rest
  of the capped tables (unit conversions, capitals, continents...).
* ``clinical_train.jsonl``: the domain SFT set of notebook 04 (``domain_data``): the lab's fictional clinical
  knowledge base (``lab.tasks.CLINICAL``: condition -> presenting symptom and first-line drug; weight-based dosing)
  asked and answered in natural English sentences, several phrasings of each (322 rows). No real model has seen
  these facts.
* ``clinical_eval.jsonl``: the held-out domain set (notebook 06's ``eval_domain``): the same facts asked in
  phrasings that occur nowhere in the train split (it tests the facts, not memorised strings), dosing with (rate,
  weight) pairs the train split never uses.
* ``clinical_val.jsonl``: the domain validation set (40 items): the diagnosis and treatment facts in phrasings that
  neither the train nor the held-out split uses, for choosing settings without the held-out set.
* ``velish_train.jsonl`` and ``velish_eval.jsonl``: a second domain of another kind, a skill rather than facts:
  Velish, a fictional language of 40 nouns with invented words and two rules (plural -ri after a vowel, -eri after a
  consonant; "big" is ``zorv``, after its noun: "the big dog" = ``mirrak zorv``). The train split (210 rows) asks
  every word both ways and applies the rules to most nouns, in sentences that state the answer; the held-out split
  (46 items) asks in other phrasings, and its plurals and big phrases are of nouns whose plural or big phrase the
  train split never shows, so it tests the rule, not recall.
* ``velish_val.jsonl``: Velish's validation set (40 items), in phrasings of its own: words that the held-out set
  does not ask in that direction, and plurals and big phrases of nouns the train split shows (the held-out split
  keeps the other nouns), so on the rules it measures recall.
* ``public_standin.jsonl``: a stand-in for a public general SFT set such as Alpaca (tatsu-lab/alpaca), for the
  ``public_mix`` arm of notebook 04 where no hub is reachable: 2,323 everyday instructions with short, correct
  answers, ``family``/``instruction``/``response`` like ``clinical_train.jsonl``. First 523 rows in 14 families
  written out in tables (explain a concept, formal rewrite, tips, summarise a passage, review sentiment, word problems
  with working, define a word, short email, haiku, compare two things, give an example, translate a phrase, odd one
  out, grammar fix), then 1,800 in 11 families made by rule from small tables, so that no mixed arm is capped by it
  (322 clinical rows at 83% general need 1,572 general rows): format a list, pick out a category's members, more odd
  ones out, title case, join two sentences, past tense, yes/no question, negative, more review sentiment, more word
  problems, sort numbers. It is written by code in this package from hand-written tables and templates,
  not by any model run in this project, and no model has been trained on it here yet. Its families overlap none of the
  evaluation's, and :func:`public_leaks` (run by :func:`build`) checks that it asks no eval question or eval form
  and names no clinical fact, no Velish word, no multi-word eval answer and no country, capital or continent, teaches
  none of the plurals that the evaluation asks and names no two neighbouring months or weekdays.

Every evaluation row has ``family``, ``instruction`` (a question that asks for the bare answer), ``answer``
(canonical), ``aliases`` (other accepted forms), ``choices`` (four options: the answer and three distractors from the
same table) and ``label`` (the answer's index in ``choices``). notebook 06's reader of held-out files (``load_eval_set``) reads them (extra fields
are ignored); ``loglik.multiple_choice`` scores the choices by log-likelihood, ``scoring.answer_matches`` scores
free answers (a right answer inside a sentence counts, a hedge between choices does not). Each family draws from
its own seeded ``random.Random``, so the files are the same on every machine and a family does not change when
another is edited (the stand-in's ``word_problem_more`` and ``odd_one_out_more`` aside: they leave out what
``word_problem`` and ``odd_one_out`` ask, so they follow those). :func:`validate` checks what makes an item fair to
the matcher: the answer and each distractor appear neither in the question nor inside one another.

Where things are: the tables (facts, word lists, phrasings, the stand-in's hand-written answers) are JSON files in
``tables/`` (``general.json``, ``clinical.json``, ``velish.json``, ``public.json``, ``public_rules.json``), read by the
module that builds each set: ``general`` (``general_eval.jsonl``), ``clinical`` (``clinical_train.jsonl`` and
``clinical_eval.jsonl``), ``velish`` (``velish_train.jsonl`` and ``velish_eval.jsonl``), ``public``
(``public_standin.jsonl`` and its leak check) with ``public_rules`` (the stand-in's families made by rule);
``validation`` (``general_val.jsonl``; ``clinical`` and ``velish`` build their ``*_val.jsonl`` too); ``common`` holds
the seed, the file names, :func:`item`, :func:`validate` and the JSONL format; ``files`` builds, writes and checks
the nine files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .clinical import clinical_eval_items, clinical_train_rows, dosing_pairs
from .common import FIELDS, FILES, PER_FAMILY, SEED, item, read, summary, to_jsonl, validate
from .files import build, check, default_folder, write
from .general import GENERAL_BUILDERS, general_items, number_in_words
from .public import PUBLIC_FAMILIES, public_leaks, public_standin_rows
from .velish import velish_eval_items, velish_train_rows

__all__ = ["FIELDS", "FILES", "GENERAL_BUILDERS", "PER_FAMILY", "PUBLIC_FAMILIES", "SEED", "build", "check",
           "clinical_eval_items", "clinical_train_rows", "default_folder", "dosing_pairs", "general_items", "item",
           "main", "number_in_words", "public_leaks", "public_standin_rows", "read", "summary", "to_jsonl",
           "validate", "velish_eval_items", "velish_train_rows", "write"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.shipped_data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="build the files into a folder (default: data/ at the repository root)")
    w.add_argument("folder", nargs="?", type=Path, default=None)
    c = sub.add_parser("check", help="rebuild and compare with the files in a folder (default: data/)")
    c.add_argument("folder", nargs="?", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "write":
        for key, path in write(args.folder).items():
            print(f"{path}: {sum(summary(read(path)).values())} rows {summary(read(path))}")
        return 0
    stale = check(args.folder)
    if stale:
        print("out of date (run `python -m helpers.shipped_data write`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("data files match the code")
    return 0
