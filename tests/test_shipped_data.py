"""The shipped evaluation and domain data (``helpers.shipped_data``, ``data/``): the tables load, sizes, fairness,
held-out phrasings, correct facts, and the committed files equal, byte for byte, to what the code builds."""
import hashlib
import json
import re
import subprocess
import sys
import tomllib
from pathlib import PurePosixPath

import pytest

from helpers import heldout, scoring, text
from helpers import shipped_data as S
from helpers.lab.tasks import CLINICAL
from helpers.shipped_data import clinical, common, general, public, public_rules, velish
from tests.conftest import ROOT

DATA = ROOT / "data"


@pytest.fixture(scope="module")
def built():
    return S.build()


def test_general_set_has_enough_families_and_items(built):
    counts = S.summary(built["general"])
    assert len(counts) >= 8 and sum(counts.values()) >= 400, counts
    assert set(counts) == set(S.GENERAL_BUILDERS)
    assert all(20 <= n <= S.PER_FAMILY for n in counts.values()), counts
    assert counts["calendar"] == 38  # 12 months and 7 days, after and before: all the table has


def test_the_validation_split_asks_nothing_the_held_out_set_or_a_training_file_asks(built):
    """Issue 22 (retention levers chosen on validation): general_val.jsonl holds only what the held-out set leaves
    unused (its families drawn again; the generated ones give new questions), so choosing settings on it never reads
    the held-out set, which keeps all its items."""
    val = built["general_val"]
    key = lambda r: text.normalise(r["instruction"])  # noqa: E731
    taken = {key(r) for name in ("general", "clinical_train", "velish_train", "public_standin") for r in built[name]}
    assert not {key(r) for r in val} & taken
    assert len({key(r) for r in val}) == len(val)  # no repeats
    counts = S.summary(val)
    assert sum(counts.values()) >= 100 and len(counts) >= 5, counts
    assert counts["arithmetic"] >= 40 and "calendar" not in counts  # generated: new; whole table held out: none
    assert S.summary(built["general"]) == S.summary(S.general_items())  # drawing again left the held-out set as is


def test_clinical_splits_have_their_families_and_sizes(built):
    assert S.summary(built["clinical_eval"]) == {"clinical_diagnosis": 30, "clinical_treatment": 30,
                                                 "clinical_dosing": 30}
    train = built["clinical_train"]
    assert 150 <= len(train) <= 400
    assert {"clinical_diagnosis", "clinical_treatment", "clinical_dosing"} <= set(S.summary(train))
    assert all(set(r) == {"family", "instruction", "response"} for r in train)


@pytest.mark.parametrize("key", ["general", "clinical_eval", "velish_eval"])
def test_every_eval_row_is_well_formed(built, key):
    rows = built[key]
    assert len({r["instruction"] for r in rows}) == len(rows)  # no duplicates
    for r in rows:
        assert tuple(r) == S.FIELDS
        assert len(r["choices"]) == 4 and r["choices"].count(r["answer"]) == 1
        assert r["choices"][r["label"]] == r["answer"]
        assert len({text.normalise_answer(c) for c in r["choices"]}) == 4
        assert r["instruction"].rstrip().endswith("only.")  # asks for the bare answer
        # an output that repeats the question gives neither the answer nor a distractor
        assert not scoring.answer_matches(r["instruction"], r["answer"], r["aliases"])
    assert len({r["label"] for r in rows}) == 4  # the answer is not always in the same place


def test_building_is_deterministic(built):
    assert S.build() == built


def test_committed_data_files_equal_what_the_code_builds(built):
    assert S.check(DATA) == [], "run `python -m helpers.shipped_data write` and commit data/"
    for key, name in S.FILES.items():
        assert (DATA / name).read_bytes() == S.to_jsonl(built[key]).encode("utf-8"), name  # byte for byte
        assert S.read(DATA / name) == built[key]


# ------------------------------------------------------------------------------------------------------------------
# The tables (``src/helpers/shipped_data/tables/*.json``)
# ------------------------------------------------------------------------------------------------------------------
TABLE_MODULES = {"general": general, "clinical": clinical, "velish": velish, "public": public,
                 "public_rules": public_rules}


def _as_json(value):
    """A table as its JSON file holds it: tuples as lists, a dict keyed by tuples as a list of [*key, value]."""
    if isinstance(value, dict):
        if all(isinstance(k, tuple) for k in value):
            return [[*k, _as_json(v)] for k, v in value.items()]
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_as_json(v) for v in value]
    return value


def test_every_table_loads_into_its_module():
    assert sorted(p.name for p in common.TABLES.glob("*.json")) == sorted(f"{n}.json" for n in TABLE_MODULES)
    for name, module in TABLE_MODULES.items():
        tables = common.table(name)
        assert len(tables) >= 3, name
        for key, value in tables.items():
            bound = getattr(module, key) if hasattr(module, key) else getattr(module, "_" + key)
            assert value and _as_json(bound) == value, f"{name}.json: {key}"
    # the shapes the builders rely on: tuples where the tables were tuples, tuple keys where pairs name an entry
    assert general.COUNTRIES["China"] == ("Beijing", "Asia", ("Peking",)) and general.LETTERS == "bcefghjklnpqruvwyz"
    assert general.CONVERSIONS[0] == ("kilometers", "meters", 1000) and general.PLURALS["cactus"][1] == ("cactuses",)
    assert all(type(q) is tuple and len(q) == 3 for q in clinical.EVAL_QUESTIONS.values())
    assert public.COMPARISONS["weather", "climate"].startswith("Weather is the state of the atmosphere")
    planets = public.CATEGORIES["planets", "a planet"]
    assert type(planets) is tuple and "Mars" in planets
    assert public.TRANSLATIONS[0] == ("Spanish", "good morning", "Buenos días.", "")
    assert velish.LEXICON["dog"] == ("mirrak", "dogs") and velish.GRAMMAR[0][0].startswith("How do you make")
    trees = public_rules.MORE_CATEGORIES["trees", "a tree"]
    assert type(trees) is tuple and "oak" in trees
    assert public_rules.VERBS[0] == ("walk", "walks", "walked", ("to the station", "along the canal"))
    assert public_rules.SUBJECTS["plural"][0] == "we" and public_rules.JOIN_CAUSES[0][0] == "It rained all afternoon"


def test_tables_are_package_data():
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["helpers"]
    for path in common.TABLES.glob("*.json"):
        relative = PurePosixPath(path.relative_to(ROOT / "src" / "helpers").as_posix())
        assert any(relative.match(g) for g in globs), f"{relative} is not in pyproject.toml's package-data"


def test_module_cli_checks_the_committed_files():
    run = subprocess.run([sys.executable, "-m", "helpers.shipped_data", "check", str(DATA)], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0 and "data files match the code" in run.stdout, run.stderr


def test_cli_writes_and_checks(tmp_path, capsys):
    assert S.main(["write", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(S.FILES.values())
    assert S.main(["check", str(tmp_path)]) == 0
    path = tmp_path / S.FILES["general"]
    path.write_text(path.read_text().replace("Paris", "Lyon"))
    assert S.main(["check", str(tmp_path)]) == 1
    assert "general_eval.jsonl" in capsys.readouterr().err


def test_eval_files_load_with_load_eval_set():
    for name, default in (("general_eval.jsonl", "general"), ("clinical_eval.jsonl", "domain"),
                          ("velish_eval.jsonl", "domain")):
        items = heldout.load_eval_set(str(DATA / name), default)
        rows = S.read(DATA / name)
        assert [(e.family, e.instruction, e.response) for e in items] == \
            [(r["family"], r["instruction"], r["answer"]) for r in rows]
    sets = heldout.eval_sets(str(DATA / "general_eval.jsonl"), str(DATA / "clinical_eval.jsonl"))
    assert len(sets["general"]) == 488 and len(sets["domain"]) == 90


def test_general_facts_are_right(built):
    by_q = {r["instruction"]: r for r in built["general"]}
    assert general.COUNTRIES["France"][:2] == ("Paris", "Europe")
    assert general.COUNTRIES["Kenya"][:2] == ("Nairobi", "Africa")
    assert by_q["What is the chemical symbol for gold? Answer with the symbol only."]["answer"] == "Au"
    assert by_q["Which month comes right after December? Answer with the name of the month only."]["answer"] == \
        "January"
    assert by_q["Which day of the week comes right before Monday? Answer with the name of the day only."]["answer"] \
        == "Sunday"
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
    factors = {(small, big): f for big, small, f in general.CONVERSIONS}
    for r in built["general"]:
        q = r["instruction"]
        if r["family"] == "arithmetic":
            a, op, b = re.match(r"What is (\d+) (plus|minus|times) (\d+)\?", q).groups()
            assert r["answer"] == str(ops[op](int(a), int(b)))
        elif r["family"] == "unit_conversion":
            small, n, big = re.match(r"How many (\w+) are in (\d+) (\w+)\?", q).groups()
            assert r["answer"] == str(int(n) * factors[(small, big)])
        elif r["family"] == "first_letter":
            assert r["answer"] == re.search(r'"(\w+)"', q).group(1)[0]
        elif r["family"] == "capital":
            country = re.match(r"What is the capital of (.+)\? Answer", q).group(1)
            assert r["answer"] == general.COUNTRIES[country][0] and r["aliases"] == list(general.COUNTRIES[country][2])
        elif r["family"] == "continent":
            country = re.match(r"On which continent is (.+)\? Answer", q).group(1)
            assert r["answer"] == general.COUNTRIES[country][1]
    assert [S.number_in_words(n) for n in (7, 13, 40, 47, 99, 305)] == \
        ["seven", "thirteen", "forty", "forty-seven", "ninety-nine", "three hundred and five"]


def _frame(text: str) -> list[str]:
    """An instruction's wording with the facts taken out: slot values become "<x>", then lower-case words."""
    values = [c for c in CLINICAL] + [s for s, _ in CLINICAL.values()] + [d for _, d in CLINICAL.values()]
    for v in sorted(values, key=len, reverse=True):
        text = re.sub(re.escape(v), " X ", text, flags=re.I)
    text = re.sub(r"\d+", " X ", text)
    return re.findall(r"[a-z]+|X", text.lower().replace(" x ", " X "))


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_held_out_phrasings_do_not_occur_in_train(built):
    train = [_frame(r["instruction"]) for r in built["clinical_train"]]
    held = [_frame(r["instruction"]) for r in built["clinical_eval"]]
    assert not {tuple(h) for h in held} & {tuple(t) for t in train}
    assert not {r["instruction"] for r in built["clinical_eval"]} & {r["instruction"] for r in built["clinical_train"]}
    # not even four words in a row of a held-out question's wording come from a train question (a fact counts as
    # one word, "X", so "the dose of X is" would be caught)
    train_grams = set().union(*(_ngrams(t, 4) for t in train))
    shared = {g for h in held for g in _ngrams(h, 4) if g in train_grams}
    assert not shared, shared
    # the frame really removes only the facts: each family's held-out questions have 3 frames, train ones several
    assert len({tuple(h) for h in held}) == 9 and len({tuple(t) for t in train}) >= 20


def test_validation_phrasings_are_neither_train_nor_held_out_wording(built):
    """clinical_val.jsonl asks the train facts in wordings of its own: no four words in a row from a train question,
    nor from a held-out one (the shared answer-format sentence aside)."""
    suffix = re.compile(r" Answer with the \w+ name only\.$")
    val = [_frame(suffix.sub("", r["instruction"])) for r in built["clinical_val"]]
    for other in ("clinical_train", "clinical_eval"):
        grams = set().union(*(_ngrams(_frame(suffix.sub("", r["instruction"])), 4) for r in built[other]))
        shared = {g for v in val for g in _ngrams(v, 4) if g in grams}
        assert not shared, (other, shared)
    assert S.summary(built["clinical_val"]) == {"clinical_diagnosis": 20, "clinical_treatment": 20}


def test_held_out_doses_use_rate_weight_pairs_not_in_train(built):
    train_pairs, eval_pairs = S.dosing_pairs()
    assert not set(train_pairs) & set(eval_pairs) and len(eval_pairs) == clinical.N_EVAL_DOSING
    seen = set()
    for r in built["clinical_train"]:
        if r["family"] == "clinical_dosing":
            rate = int(re.search(r"(\d+) mg(?: per kg|/kg)", r["instruction"]).group(1))
            weight = int(re.search(r"(\d+) kg", r["instruction"]).group(1))
            seen.add((rate, weight))
            assert f"{rate * weight} mg" in r["response"]
    assert seen == set(train_pairs)
    for r in built["clinical_eval"]:
        if r["family"] == "clinical_dosing":
            rate = int(re.search(r"(\d+) mg", r["instruction"]).group(1))
            weight = int(re.search(r"(\d+) kg", r["instruction"]).group(1))
            assert (rate, weight) in set(eval_pairs) and r["answer"] == f"{rate * weight} mg"
            assert str(rate * weight) in r["aliases"] and f"{rate * weight} milligrams" in r["aliases"]


def test_train_responses_state_the_fact_in_a_sentence(built):
    drug_of = {c: d for c, (_, d) in CLINICAL.items()}
    condition_of_symptom = {s: c for c, (s, _) in CLINICAL.items()}
    rows = built["clinical_train"]
    for r in rows:
        if r["family"] == "clinical_diagnosis":
            symptom = next(s for s in condition_of_symptom if s in r["instruction"].lower())
            assert scoring.answer_matches(r["response"], condition_of_symptom[symptom])
        elif r["family"] == "clinical_treatment":
            condition = next(c for c in drug_of if c in r["instruction"])
            assert scoring.answer_matches(r["response"], drug_of[condition])
        assert len(r["response"].split()) >= 4 and r["response"].endswith(".")  # a sentence, not a bare answer
    assert len({r["response"] for r in rows if r["family"] == "clinical_treatment"}) >= 30  # several phrasings


def test_validate_refuses_unfair_items():
    good = S.item("f", "What is 2 plus 3? Answer with the number only.", "5", ["6", "7", "8"], common.seeded("t"))
    assert S.validate([good]) == [good]
    with pytest.raises(ValueError, match="occurs in the instruction"):
        S.validate([S.item("f", "What is 2 plus 3? Answer.", "5", ["6", "7", "3"], common.seeded("t"))])
    with pytest.raises(ValueError, match="contain one another"):
        S.validate([S.item("f", "Which one? Answer.", "forty-one", ["forty", "fifty", "sixty"], common.seeded("t"))])
    with pytest.raises(ValueError, match="not distinct"):
        S.validate([S.item("f", "Which city? Answer.", "Bogotá", ["Bogota", "Lima", "Quito"], common.seeded("t"))])
    with pytest.raises(ValueError, match="duplicate"):
        S.validate([good, dict(good)])


def test_data_files_are_plain_utf8_jsonl():
    for name in S.FILES.values():
        lines = (DATA / name).read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line) for line in lines)
    assert "Bogotá" in (DATA / "general_eval.jsonl").read_text(encoding="utf-8")  # not \u-escaped


# ------------------------------------------------------------------------------------------------------------------
# Velish, the fictional language (``velish_train.jsonl``, ``velish_eval.jsonl``)
# ------------------------------------------------------------------------------------------------------------------
# Common English words, some of them the shape of a Velish word (four to seven letters, a vowel or "-ri" at the end):
# no Velish word or plural may be one of them (nor an English noun of the lexicon, nor a word of the general set).
ENGLISH_STOP = set("""about after again also animal any area back bake before berry best body bring call came carry
children city come could cover dairy every family father ferry find first from give great hand have here hobby home
house into jury know large later light little long look lorry made mango marry merry mother much music must name
never next night only open other paper party place plant point pony right river same school should small sorry
sound still story study such sugar table tiger their there thing think three through tomato under until valley very
water where which while white world would write years young zero""".split())


def _velish_values() -> list[str]:
    values = [velish.BIG]
    for english, (word, plural_en) in velish.LEXICON.items():
        values += [english, plural_en, word, velish.plural(word)]
    return values


def test_velish_splits_have_their_families_and_sizes(built):
    train, held = built["velish_train"], built["velish_eval"]
    assert S.summary(train) == {"velish_word": 80, "velish_reverse": 40, "velish_plural": 56, "velish_big": 30,
                                "velish_grammar": 4}
    assert S.summary(held) == {"velish_word": 12, "velish_reverse": 12, "velish_plural": 12, "velish_big": 10}
    assert all(list(r) == ["family", "instruction", "response"] for r in train)
    assert len({r["instruction"] for r in train}) == len(train)
    assert all(len(r["response"].split()) >= 4 and r["response"].endswith(".") for r in train)  # sentences
    # its own family names: none shared with the general set or the clinical one (eval_sets refuses shared names)
    families = set(S.summary(held)) | set(S.summary(train))
    assert not families & (set(S.summary(built["general"])) | set(S.summary(built["clinical_train"])))
    assert "velish_eval.jsonl" in S.__doc__ and "not recall" in S.__doc__


def test_velish_lexicon_is_invented_and_prefix_free(built):
    words = [w for w, _ in velish.LEXICON.values()]
    assert len(velish.LEXICON) == 40 and len(set(words)) == 40
    assert all(re.fullmatch(r"[a-z]{4,7}", w) for w in words) and re.fullmatch(r"[a-z]{3,7}", velish.BIG)
    every = words + [velish.BIG]
    assert not [(a, b) for a in every for b in every if a != b and b.startswith(a)]  # no word a prefix of another
    plurals = [velish.plural(w) for w in words]
    assert len(set(plurals) | set(every)) == len(plurals) + len(every)  # so no plural is another word or plural
    assert all(p == w + ("ri" if w[-1] in "aeiou" else "eri") for w, p in zip(words, plurals))
    assert {velish.ending(w) for w in words} == {"vowel", "consonant"}
    # not English: not in the stop list, nor an English noun of the lexicon, nor any word of the general set
    english = ENGLISH_STOP | set(velish.LEXICON) | {p for _, p in velish.LEXICON.values()}
    english |= {w for r in built["general"] for c in (r["instruction"], *r["choices"]) for w in re.findall(r"[a-z]+",
                                                                                                         c.lower())}
    assert not english & (set(every) | set(plurals))
    assert not [w for w in every for c in CLINICAL for v in (c, *CLINICAL[c]) if w in v.lower()]
    # the English nouns' plurals are not what the general set's plural family asks
    assert not set(velish.LEXICON) & set(general.PLURALS)


def _velish_frame(text: str) -> list[str]:
    """A Velish question's or answer's wording with the lexicon taken out: every English noun, its plural, Velish
    word, Velish plural and "big" word becomes "X", then lower-case words."""
    for v in sorted(_velish_values(), key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(v)}\b", " X ", text, flags=re.I)
    return re.findall(r"[a-z]+|X", text.lower().replace(" x ", " X "))


def test_velish_held_out_phrasings_do_not_occur_in_train(built):
    train = [_velish_frame(r[k]) for r in built["velish_train"] for k in ("instruction", "response")]
    held = [_velish_frame(r["instruction"]) for r in built["velish_eval"]]
    assert not {tuple(h) for h in held} & {tuple(t) for t in train}
    # not four words in a row of a held-out question, a noun counting as one word "X", occur in a train question
    # or answer
    train_grams = set().union(*(_ngrams(t, 4) for t in train))
    shared = {g for h in held for g in _ngrams(h, 4) if g in train_grams}
    assert not shared, shared
    assert len({tuple(h) for h in held}) == 12  # three phrasings in each of the four families
    assert len({tuple(_velish_frame(r["instruction"])) for r in built["velish_train"]}) >= 15



def test_velish_validation_asks_in_its_own_words_and_no_held_out_question(built):
    """velish_val.jsonl (issue 22: settings chosen without the held-out set): ten per family; no four words in a row
    of a train or held-out wording (a noun counting as "X", the shared answer-format sentence aside); a word asked
    in neither direction the held-out set asks it; plurals and big phrases only of nouns the train split shows."""
    suffix = re.compile(r" Answer with the \w+ words? only\.$")
    val = built["velish_val"]
    assert S.summary(val) == {f"velish_{f}": 10 for f in ("word", "reverse", "plural", "big")}
    frames = [_velish_frame(suffix.sub("", r["instruction"])) for r in val]
    for other, fields in (("velish_train", ("instruction", "response")), ("velish_eval", ("instruction",))):
        grams = set().union(*(_ngrams(_velish_frame(suffix.sub("", r[k])), 4) for r in built[other] for k in fields))
        shared = {g for f in frames for g in _ngrams(f, 4) if g in grams}
        assert not shared, (other, shared)
    held = built["velish_eval"]
    for family in ("velish_word", "velish_reverse"):
        asked = {r["answer"] for r in held if r["family"] == family}
        assert not asked & {r["answer"] for r in val if r["family"] == family}, family
    for family in ("velish_plural", "velish_big"):
        taught = {r["response"] for r in built["velish_train"] if r["family"] == family}
        answers = [r["answer"] for r in val if r["family"] == family]
        assert all(any(re.search(rf"\b{re.escape(a)}\b", t, re.I) for t in taught) for a in answers), family
        assert not set(answers) & {r["answer"] for r in held if r["family"] == family}, family

def _nouns_in(text: str, words) -> list[str]:
    """The ``words`` that occur in ``text`` as whole words."""
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", text, flags=re.I)]


def test_velish_held_out_plurals_and_big_phrases_never_occur_in_train(built):
    train = " ".join(f"{r['instruction']} {r['response']}" for r in built["velish_train"]).lower()
    train_words = set(re.findall(r"[a-z]+", train))
    held = velish.held_out_words()
    assert len(held["plural"]) == 12 and len(held["big"]) == 10
    assert {velish.ending(velish.LEXICON[e][0]) for e in held["plural"]} == {"vowel", "consonant"}
    english_of = {w: e for e, (w, _) in velish.LEXICON.items()}
    for r in built["velish_eval"]:
        if r["family"] not in ("velish_plural", "velish_big"):
            continue
        [noun] = _nouns_in(r["instruction"], english_of)
        english = english_of[noun]
        assert noun in train_words and english in train_words  # the noun is taught...
        if r["family"] == "velish_plural":
            assert english in held["plural"] and r["answer"] == velish.plural(noun)
            # ...its plural never: neither the Velish plural nor the English plural of the noun
            assert r["answer"] not in train_words and velish.LEXICON[english][1] not in train_words
        else:
            assert english in held["big"] and r["answer"] == f"{noun} {velish.BIG}"
            assert r["answer"] not in train and f"big {english}" not in train
    # the plurals the train split does show are all the others
    shown = {e for e, (w, _) in velish.LEXICON.items() if velish.plural(w) in train_words}
    assert shown == set(velish.LEXICON) - set(held["plural"])


def test_velish_answers_follow_the_lexicon_and_the_rules(built):
    velish_of = {e: w for e, (w, _) in velish.LEXICON.items()}
    english_of = {w: e for e, w in velish_of.items()}
    for r in built["velish_train"]:
        if r["family"] == "velish_word":
            [english] = _nouns_in(r["instruction"], velish_of)
            assert scoring.answer_matches(r["response"], velish_of[english])
        elif r["family"] == "velish_reverse":
            [noun] = _nouns_in(r["instruction"], english_of)
            assert scoring.answer_matches(r["response"], english_of[noun])
        elif r["family"] in ("velish_plural", "velish_big"):
            [noun] = _nouns_in(f"{r['instruction']} {r['response']}", english_of)
            right = velish.plural(noun) if r["family"] == "velish_plural" else f"{noun} {velish.BIG}"
            assert scoring.answer_matches(r["response"], right), r
    for r in built["velish_eval"]:
        if r["family"] == "velish_word":
            [english] = _nouns_in(r["instruction"], velish_of)
            assert r["answer"] == velish_of[english]
        elif r["family"] == "velish_reverse":
            [noun] = _nouns_in(r["instruction"], english_of)
            assert r["answer"] == english_of[noun]
        else:  # these questions give the noun and its meaning, and ask for the rule applied to it
            [noun] = _nouns_in(r["instruction"], english_of)
            assert english_of[noun] in r["instruction"]
            assert r["answer"] == (velish.plural(noun) if r["family"] == "velish_plural" else f"{noun} {velish.BIG}")
            wrong = [c for c in r["choices"] if c != r["answer"]]
            assert len(wrong) == 3  # the wrong suffix / the wrong order is among them: the choice tests the rule
            assert (noun + ("eri" if velish.ending(noun) == "vowel" else "ri") in wrong
                    if r["family"] == "velish_plural" else f"{velish.BIG} {noun}" in wrong)


def test_velish_eval_rows_load_and_labels_point_at_answers(built):
    rows = S.read(DATA / "velish_eval.jsonl")
    items = heldout.load_eval_set(str(DATA / "velish_eval.jsonl"), "domain")
    assert len(items) == len(rows) == 46
    for e, r in zip(items, rows):
        assert (e.family, e.instruction, e.response, e.choices, e.label) == \
            (r["family"], r["instruction"], r["answer"], tuple(r["choices"]), r["label"])
        assert e.choices[e.label] == e.response and len(e.choices) == 4
    # the Velish set can stand as notebook 06's domain set beside the general one
    sets = heldout.eval_sets(str(DATA / "general_eval.jsonl"), str(DATA / "velish_eval.jsonl"))
    assert len(sets["domain"]) == 46


# ------------------------------------------------------------------------------------------------------------------
# The public-style stand-in (``public_standin.jsonl``)
# ------------------------------------------------------------------------------------------------------------------
# The first 523 rows, the 14 hand-written families, as they were before the families made by rule were added after
# them (sha256 of their JSONL)
FIRST_ROWS, FIRST_ROWS_SHA256 = 523, "85778212b5cdc91d064cf8c9516e7912a2b4102e7d8938eabe77d5340ec81f68"
RULE_FAMILIES = ("list_format", "category_pick", "odd_one_out_more", "title_case", "join_sentences", "past_tense",
                 "make_question", "make_negative", "sentiment_more", "word_problem_more", "sort_numbers")


def _family(built, name: str) -> list[dict]:
    return [r for r in built["public_standin"] if r["family"] == name]


def _given(instruction: str) -> str:
    """What an instruction gives to work on: after its first ": ", blank line or question mark before a quote, without
    quotes round it."""
    return re.split(r": |\n\n|\? (?=\")", instruction, maxsplit=1)[1].strip('"')


def test_public_standin_has_its_families_and_sizes(built):
    rows = built["public_standin"]
    counts = S.summary(rows)
    # large enough that no arm is capped: at 83% general, 322 clinical rows need 1,572 general rows per arm
    assert len(rows) >= 2000 and len({r["instruction"] for r in rows}) == len(rows) == 2323, counts
    assert list(counts) == list(S.PUBLIC_FAMILIES) and len(counts) == 25
    assert tuple(counts)[14:] == RULE_FAMILIES
    assert all(n >= 20 for n in counts.values()), counts
    # the first families' rows come first, unchanged
    first = rows[:FIRST_ROWS]
    assert {r["family"] for r in first} == set(S.PUBLIC_FAMILIES[:14]) and sum(list(counts.values())[:14]) == 523
    assert hashlib.sha256(S.to_jsonl(first).encode("utf-8")).hexdigest() == FIRST_ROWS_SHA256
    assert not set(counts) & set(S.GENERAL_BUILDERS)  # no family shared with the general evaluation
    assert "stand-in" in S.__doc__ and "public_standin.jsonl" in S.__doc__ and "not by any model" in S.__doc__


def test_public_rows_are_well_formed(built):
    rows = built["public_standin"]
    assert all(list(r) == ["family", "instruction", "response"] for r in rows)
    assert all(r["instruction"].strip() and r["response"].strip() for r in rows)
    assert len({r["instruction"] for r in rows}) == len(rows)  # no duplicate instructions
    assert all(3 <= len(r["response"].split()) <= 120 for r in rows)  # short answers, not bare tokens or essays
    # responses are specific to their rows: only a sentiment label's reason may repeat (same review, other product)
    others = [r["response"] for r in rows if r["family"] not in ("sentiment", "sentiment_more")]
    assert len(set(others)) == len(others)
    assert len({r["response"] for r in rows if r["family"] == "sentiment"}) >= 20
    assert len({r["response"] for r in rows if r["family"] == "sentiment_more"}) >= 30
    for r in rows:
        if r["family"] == "tips":
            assert re.fullmatch(r"1\. .+\n2\. .+\n3\. .+", r["response"])
        elif r["family"] == "haiku":
            assert len(r["response"].splitlines()) == 3
        elif r["family"] in ("sentiment", "sentiment_more"):
            label = r["response"].split(":")[0].lower()
            assert label in public.SENTIMENTS
            review = re.search(r'"(.+)"|\n(.+)$', r["instruction"])
            text = review.group(1) or review.group(2)
            reviews, items = (public.SENTIMENTS[label], public.SENTIMENT_ITEMS) if r["family"] == "sentiment" else \
                (public.SENTIMENTS[label] + public_rules.MORE_SENTIMENTS[label], public_rules.MORE_SENTIMENT_ITEMS)
            assert any(text == t.format(item=i) and r["response"] == f"{label.capitalize()}: {why}."
                       for t, why in reviews for i in items)
    # the defined words are none of the evaluation's words (opposites, plurals, first letters)
    eval_words = set(general.OPPOSITES) | {o for o, _ in general.OPPOSITES.values()} | set(general.PLURALS) | \
        set(general.LETTER_WORDS)
    assert not set(public.DEFINITIONS) & eval_words


def test_public_set_does_not_leak_the_eval_sets(built):
    rows, evals = built["public_standin"], built["general"] + built["clinical_eval"] + built["velish_eval"]
    assert S.public_leaks(rows, evals) == []
    texts = [f"{r['instruction']}\n{r['response']}".lower() for r in rows]
    # no eval instruction, nor its question without the "Answer with ..." tail, occurs anywhere in the public set
    for e in evals:
        question = e["instruction"].split(" Answer ")[0].lower()
        assert not any(question in t or e["instruction"].lower() in t for t in texts), e["instruction"]
    # nothing of the fictional clinic: condition, symptom or drug
    for condition, (symptom, drug) in CLINICAL.items():
        for name in (condition, symptom.removeprefix("a "), drug):
            assert not any(name.lower() in t for t in texts), name
    # no word of Velish
    assert not {w for t in texts for w in re.findall(r"[a-z]+", t)} & set(velish.velish_words())
    # none of the general eval's question forms is asked
    forms = ("capital of", "chemical symbol", "opposite of", "first letter", "plural of", "in words", "continent",
             "comes right after", "comes right before")
    assert not [(f, r["instruction"]) for r in rows for f in forms if f in r["instruction"].lower()]


def test_public_leaks_catches_planted_leaks(built, monkeypatch):
    evals = built["general"] + built["clinical_eval"] + built["velish_eval"]
    clean = {"family": "x", "instruction": "Name a hobby.", "response": "Knitting is a relaxing hobby."}
    number = next(r for r in built["general"] if r["family"] == "number_word")
    planted = [
        {**clean, "instruction": evals[0]["instruction"]},  # an eval question, verbatim
        {**clean, "instruction": evals[0]["instruction"].split(" Answer ")[0] + " Explain."},  # without its tail
        {**clean, "instruction": "Tell me the capital of Peru."},  # an eval form
        {**clean, "instruction": "What is 4 times 6?"},  # the arithmetic form
        {**clean, "response": f"Treat it with {CLINICAL['Osk disease'][1]}."},  # a clinical drug
        {**clean, "response": "Addis Ababa is a large city."},  # a multi-word eval answer, and a capital
        {**clean, "response": f"The number is {number['answer']}."},  # a multi-word eval answer
        {**clean, "response": "Paris is lovely in spring."},  # a capital of the geography families
        {**clean, "response": f"My dog is called {velish.LEXICON['dog'][0].title()}."},  # a Velish word
        # a list written out with an eval noun made plural; a row on plurals that shows an eval plural
        {**clean, "family": "list_format", "instruction": "Format these items as a bulleted list: knife, spoon",
         "response": "- knives\n- spoons"},
        {**clean, "response": "Its plural is feet."},
        {**clean, "response": "The shop shuts on Monday and opens on Tuesday."},  # calendar neighbours
    ]
    for row in planted:
        assert S.public_leaks([row], evals), row
    assert S.public_leaks([clean], evals) == []
    monkeypatch.setattr(public, "public_standin_rows", lambda: [clean, planted[4]])
    with pytest.raises(ValueError, match="leaks"):
        S.build()


def _equations(text: str) -> list[tuple[list, float]]:
    """Every "a op b (op c ...) = result" in ``text`` (units and words between numbers ignored), as (terms, result)."""
    number = re.compile(r"\d+(?:\.\d+)?")
    tokens = re.findall(r"\d+(?:\.\d+)?|[×÷−+=,;:.]", text.replace("$", "").replace("%", ""))
    found, expr = [], []
    for i, tok in enumerate(tokens):
        if tok == "=":
            ok = len(expr) >= 3 and len(expr) % 2 and all(number.fullmatch(t) for t in expr[::2])
            ok = ok and all(op in "×÷−+" for op in expr[1::2])
            if ok and i + 1 < len(tokens) and number.fullmatch(tokens[i + 1]):
                found.append((expr, float(tokens[i + 1])))
            expr = []
        elif tok in "×÷−+" or number.fullmatch(tok):
            expr.append(tok)
        else:  # punctuation ends an expression
            expr = []
    return found


def _value(terms: list[str]) -> float:
    ops = {"×": lambda a, b: a * b, "÷": lambda a, b: a / b, "−": lambda a, b: a - b, "+": lambda a, b: a + b}
    value = float(terms[0])
    for op, term in zip(terms[1::2], terms[2::2]):
        value = ops[op](value, float(term))
    return value


def test_public_word_problems_are_worked_correctly(built):
    assert _equations("3 packs × 4 pens = 12 pens, and $10 − $8.17 = $1.83. Distance = 60 km/h × 3 h = 180 km. "
                      "The total is 70 + 80 + 90 = 240, and 240 ÷ 3 = 80.") == \
        [(["3", "×", "4"], 12.0), (["10", "−", "8.17"], 1.83), (["60", "×", "3"], 180.0),
         (["70", "+", "80", "+", "90"], 240.0), (["240", "÷", "3"], 80.0)]
    rows = _family(built, "word_problem")
    assert len(rows) == len(public.WORD_PROBLEM_KINDS) * public.WORD_PROBLEMS_PER_KIND
    more = _family(built, "word_problem_more")
    assert len(more) == len(public.WORD_PROBLEM_KINDS) * public.MORE_WORD_PROBLEMS_PER_KIND + \
        len(public.MORE_WORD_PROBLEM_KINDS) * public.NEW_WORD_PROBLEMS_PER_KIND
    # no problem asked twice: the instructions stripped of their phrasing differ too
    asked = [re.sub(r"^Solve this word problem: | Show your working\.$", "", r["instruction"]) for r in rows + more]
    assert len(set(asked)) == len(asked)
    for r in rows + more:
        equations = _equations(r["response"])
        assert equations, r["response"]  # every answer shows its working
        for terms, result in equations:
            assert abs(_value(terms) - result) < 1e-9, (r["response"], terms, result)
        if "% off" in r["instruction"]:
            pct, price = map(int, re.search(r"\$(\d+) and is on sale for (\d+)%", r["instruction"]).groups()[::-1])
            assert f"${price - price * pct // 100}." in r["response"]
        elif re.search(r"How much do \d", r["instruction"]):  # not "How much does ..." of the newer kinds
            x, y = map(int, re.findall(r"costs \$(\d+)", r["instruction"]))
            n = int(re.search(r"How much do (\d+)", r["instruction"]).group(1))
            assert r["response"].endswith(f"makes ${n * x + y} in total.")
    kinds = dict.fromkeys(public.MORE_WORD_PROBLEM_KINDS, 0)
    for r in more:  # the new kinds' answers, from the numbers of the question
        q, a = r["instruction"], r["response"]
        if m := re.search(r"saves \$(\d+) every week\. How much will \w+ have saved after (\d+) weeks", q):
            kinds["savings"] += 1
            assert a.endswith(f"have saved ${int(m[1]) * int(m[2])}.")
        elif m := re.search(r"(\d+) friends share a restaurant bill of \$(\d+) equally", q):
            kinds["split_bill"] += 1
            assert int(m[2]) % int(m[1]) == 0 and a.endswith(f"each friend pays ${int(m[2]) // int(m[1])}.")
        elif m := re.search(r"pays \$(\d+) for (\d+) (\w+), all at the same price\. How much does one (\w+) cost", q):
            kinds["unit_price"] += 1
            assert int(m[1]) % int(m[2]) == 0 and m[3] == m[4] + "s"
            assert a.endswith(f"One {m[4]} costs ${int(m[1]) // int(m[2])}.")
        elif m := re.search(r"opens at (\d+):00 and closes at (\d+):00", q):
            kinds["opening_hours"] += 1
            assert a.endswith(f"is open for {int(m[2]) - int(m[1])} hours.")
        elif m := re.search(r"starts at (\d+):(\d\d) and lasts (\d+) minutes", q):
            kinds["end_time"] += 1
            minute = int(m[2]) + int(m[3])
            assert minute < 60 and a.endswith(f"it ends at {m[1]}:{minute:02d}.")  # within the hour: no conversion
    assert set(kinds.values()) == {public.NEW_WORD_PROBLEMS_PER_KIND}, kinds


def test_public_odd_one_out_answers_are_right(built):
    categories = public.all_categories()
    assert set(categories) == set(public.CATEGORIES) | set(public_rules.MORE_CATEGORIES) and len(categories) == 28
    members = {plural: set(items) for (plural, _), items in categories.items()}
    kind_of = {item: singular for (_, singular), items in categories.items() for item in items}
    assert sum(len(m) for m in members.values()) == len(kind_of)  # no item in two categories, of either table
    first, more = _family(built, "odd_one_out"), _family(built, "odd_one_out_more")
    assert len(first) == public.N_ODD and len(more) == public_rules.N_ODD_MORE
    sets = [frozenset(re.split(r"[:?] |, |\.$|\? ", r["instruction"])) & set(kind_of) for r in first + more]
    assert all(len(s) == 4 for s in sets) and len(set(sets)) == len(sets)  # four items; no list asked twice
    assert any(set(s) & {i for c in public_rules.MORE_CATEGORIES.values() for i in c} for s in sets[len(first):])
    for r in first + more:
        odd, a, b, c, plural, kind = re.fullmatch(r"(.+) is the odd one out: (.+), (.+) and (.+) are (.+), but .+ is "
                                                  r"(.+)\.", r["response"]).groups()
        odd = odd if odd in kind_of else odd.lower()
        assert {a, b, c} <= members[plural] and odd not in members[plural] and kind_of[odd] == kind
        assert all(w in r["instruction"] for w in (odd, a, b, c))


# ------------------------------------------------------------------------------------------------------------------
# The stand-in's families made by rule (``public_rules``): each answer recomputed from its instruction
# ------------------------------------------------------------------------------------------------------------------
def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def test_public_list_answers_are_right(built):
    kind_of = {m: plural for (plural, _), members in public.all_categories().items() for m in members}
    rows = _family(built, "list_format")
    assert len(rows) == public_rules.N_LIST
    for r in rows:
        items = _given(r["instruction"]).split(", ")
        assert 3 <= len(items) <= 6 and set(items) <= set(kind_of)
        if "numbered" in r["instruction"]:
            assert r["response"].splitlines() == [f"{k + 1}. {x}" for k, x in enumerate(items)]
        else:
            assert "bulleted" in r["instruction"] and r["response"].splitlines() == [f"- {x}" for x in items]
    assert {"numbered", "bulleted"} <= {w for r in rows for w in r["instruction"].split()}
    rows = _family(built, "category_pick")
    assert len(rows) == public_rules.N_PICK
    for r in rows:
        [plural] = [p for p in set(kind_of.values()) if re.search(rf"\b{p}\b", r["instruction"])]
        found = sorted((m.start(), x) for x in kind_of for m in re.finditer(rf"\b{re.escape(x)}\b", r["instruction"]))
        wanted = [x for _, x in found if kind_of[x] == plural]
        others = [x for _, x in found if kind_of[x] != plural]
        assert 2 <= len(wanted) <= 3 and len(others) == len({kind_of[x] for x in others}) >= 3
        assert r["response"] == f"The {plural} in the list are {_and(wanted)}."


def test_public_title_case_answers_are_right(built):
    minor = {"a", "an", "the", "and", "but", "or", "nor", "for", "of", "on", "in", "at", "to", "by"}
    rows = _family(built, "title_case")
    assert len(rows) == public_rules.N_TITLE
    for r in rows:
        source, title = _given(r["instruction"]).split(), r["response"].split()
        assert source == [w.lower() for w in source] and len(title) == len(source) >= 3
        for k, (s, t) in enumerate(zip(source, title)):
            small = s in minor and 0 < k < len(source) - 1
            assert t == (s if small else s[0].upper() + s[1:]), (r["response"], t)
    assert any(" the " in r["response"] or " of " in r["response"] for r in rows)  # small words stay small


def test_public_joined_sentences_are_right(built):
    rows = _family(built, "join_sentences")
    assert len(rows) == 2 * (len(public_rules.JOIN_CAUSES) + len(public_rules.JOIN_CONTRASTS))
    causes, contrasts = set(public_rules.JOIN_CAUSES), set(public_rules.JOIN_CONTRASTS)
    sentences = [s for pair in causes | contrasts for s in pair]
    assert len(set(sentences)) == len(sentences) == 2 * (len(causes) + len(contrasts))  # each pair joined one way
    low = lambda s: s[0].lower() + s[1:]  # noqa: E731
    for r in rows:
        connective = re.search(r'"(so|because|but|although)"', r["instruction"]).group(1)
        a, b = re.fullmatch(r'(.+?)\.\"? \"?(.+)\.', _given(r["instruction"])).groups()
        assert (a, b) in (causes if connective in ("so", "because") else contrasts)
        assert r["response"] == {"so": f"{a}, so {low(b)}.", "because": f"{b} because {low(a)}.",
                                 "but": f"{a}, but {low(b)}.", "although": f"Although {low(a)}, {low(b)}."}[connective]


# Past forms, written out here, not read from the tables: the irregular verbs, then the spelling rules
IRREGULAR_PAST = {"write": "wrote", "drink": "drank", "eat": "ate", "make": "made", "catch": "caught",
                  "teach": "taught", "bring": "brought", "ride": "rode", "sing": "sang", "swim": "swam", "draw": "drew",
                  "build": "built", "send": "sent", "drive": "drove", "wear": "wore", "find": "found", "speak": "spoke",
                  "feed": "fed", "keep": "kept", "grow": "grew", "sweep": "swept", "spend": "spent", "run": "ran",
                  "go": "went", "meet": "met", "choose": "chose", "hang": "hung"}


_CONSONANT_Y = {c + "y" for c in "bcdfghjklmnpqrstvwxz"}


def _past(base: str) -> str:
    if base in IRREGULAR_PAST:
        return IRREGULAR_PAST[base]
    if base.endswith("e"):
        return base + "d"
    return base[:-1] + "ied" if base[-2:] in _CONSONANT_Y else base + "ed"


def _third(base: str) -> str:
    if base.endswith(("s", "sh", "ch", "x", "z", "o")):
        return base + "es"
    return base[:-1] + "ies" if base[-2:] in _CONSONANT_Y else base + "s"


def _is_plural(subject: list[str]) -> bool:
    return subject[-1] in ("we", "they") or subject[-1].endswith("s")


def test_public_sentence_rewrites_are_right(built):
    names = set(public.NAMES)
    subjects = [[n] for n in names] + [p.split() for p in sum(public_rules.SUBJECTS.values(), ())]
    assert all(v[1] == _third(v[0]) and v[2] == _past(v[0]) for v in public_rules.VERBS)
    for family, n in (("past_tense", public_rules.N_PAST), ("make_question", public_rules.N_QUESTION),
                      ("make_negative", public_rules.N_NEGATIVE)):
        rows = _family(built, family)
        assert len(rows) == n
        for r in rows:
            statement = _given(r["instruction"])
            assert statement.endswith(".") and statement[0].isupper()
            said = statement[:-1].split()
            said = [said[0] if said[0] in names else said[0].lower(), *said[1:]]
            if family == "past_tense":
                told = r["response"][:-1].split()
                told[0] = told[0] if told[0] in names else told[0].lower()
                [k] = [k for k, (a, b) in enumerate(zip(said, told)) if a != b]  # one word changes: the verb
                verb, past = said[k], told[k]
                # the base forms the verb can be of ("teaches": "teach" or "teache"), one of them with this past
                bases = [b for b in (verb[:-1], verb[:-2], verb[:-3] + "y") if _third(b) == verb] or [verb]
                assert past in [_past(b) for b in bases] and len(told) == len(said) and r["response"].endswith(".")
                assert (bases == [verb]) == _is_plural(said[:k]), statement  # the verb agreed with its subject
                continue
            if family == "make_question":
                aux, *rest = r["response"][:-1].split()
                assert r["response"].endswith("?") and aux in ("Does", "Do", "Did")
            else:
                words = r["response"][:-1].split()
                words[0] = words[0] if words[0] in names else words[0].lower()
                k = next(k for k, w in enumerate(words) if w in ("does", "do", "did"))
                assert words[k + 1] == "not" and r["response"].endswith(".")
                aux, rest = words[k], words[:k] + words[k + 2:]
            k = len(next(p for p in subjects if said[:len(p)] == p))  # the verb follows its subject
            verb, base, subject = said[k], rest[k], said[:k]
            assert rest[:k] + rest[k + 1:] == said[:k] + said[k + 1:]  # all else as it was
            assert verb in (_past(base), _third(base), base) and base != _past(base)
            expected = "did" if verb == _past(base) else "does" if verb == _third(base) else "do"
            assert aux.lower() == expected and (expected != "do" or _is_plural(subject)), r
            assert (expected == "does") == (expected != "did" and not _is_plural(subject)), r


def test_public_sorted_numbers_are_right(built):
    rows = _family(built, "sort_numbers")
    assert len(rows) == public_rules.N_SORT
    for r in rows:
        numbers = [int(x) for x in re.findall(r"\d+", r["instruction"])]
        down = "from largest to smallest" in r["instruction"]
        assert down != ("from smallest to largest" in r["instruction"]) and len(set(numbers)) == len(numbers) >= 4
        assert [int(x) for x in re.findall(r"\d+", r["response"])] == sorted(numbers, reverse=down)
        assert r["response"].startswith("From largest to smallest: " if down else "From smallest to largest: ")


def test_public_review_labels_follow_their_words(built):
    """The reviews' labels, checked against words that carry them (a list written here): a positive review has a
    word of praise and none of complaint, a negative one the other way round, a neutral one neither."""
    praise = {"love", "great", "perfectly", "best", "pleased", "exceeded", "better", "stars", "excellent", "happy",
              "brilliant", "recommend", "beautifully", "fantastic"}
    complaint = {"broke", "disappointed", "waste", "flimsy", "worst", "scratched", "regret", "failed", "stopped",
                 "terrible", "missing", "poor", "unhappy", "avoid"}
    for label in public.SENTIMENTS:
        for review, _ in public.SENTIMENTS[label] + public_rules.MORE_SENTIMENTS[label]:
            words = set(re.findall(r"[a-z]+", review.lower()))
            assert (bool(words & praise), bool(words & complaint)) == \
                {"positive": (True, False), "negative": (False, True), "neutral": (False, False)}[label], review
    rows = _family(built, "sentiment_more")
    assert S.summary(rows) == {"sentiment_more": 3 * public_rules.N_SENTIMENT_PER_LABEL}
    first = " ".join(r["instruction"] for r in _family(built, "sentiment"))
    assert not [i for i in public_rules.MORE_SENTIMENT_ITEMS if i in first]  # other products than the first family's


def test_public_rule_families_keep_clear_of_the_eval_words(built):
    """No row made by rule shows a plural that the plural family asks, a month or a weekday, or a word of the opposite
    family beside its opposite (the sentiment phrasings' "positive, negative or neutral" aside)."""
    plurals = {p for p, aliases in general.PLURALS.values() for p in (p, *aliases)}
    calendar = {n.lower() for n in general.MONTHS + general.WEEKDAYS}
    for r in (r for f in RULE_FAMILIES for r in _family(built, f)):
        text = f"{r['instruction']} {r['response']}"
        if r["family"] == "sentiment_more":
            text = text.replace("positive, negative or neutral", "")
        words = set(re.findall(r"[a-z]+", text.lower()))
        assert not words & (plurals | calendar), (r, words & (plurals | calendar))
        assert not [w for w, (o, aliases) in general.OPPOSITES.items() if w in words and {o, *aliases} & words], r


def _with(table, text: str):
    """``public_rules.VERBS`` with ``text`` after every complement."""
    return tuple((b, t, p, tuple(f"{c} {text}" for c in cs)) for b, t, p, cs in table)


# family -> (module, table, a version of it with a leak planted, what public_leaks should say)
PLANTS = {
    "list_format": (public_rules, "MORE_CATEGORIES", lambda t: {**t, ("remedies", "a remedy"): tuple(
        d for _, d in CLINICAL.values())}, "names the clinic's"),
    "category_pick": (public_rules, "MORE_CATEGORIES", lambda t: {**t, ("words", "a word"): tuple(
        velish.velish_words()[:8])}, "Velish word"),
    "odd_one_out_more": (public_rules, "MORE_CATEGORIES", lambda t: {**t, ("cities", "a city"): (
        "Paris", "Nairobi", "Lima", "Oslo")}, "names the place"),
    "title_case": (public_rules, "HOBBIES", lambda t: tuple(f"{h} in Paris" for h in t), "names the place"),
    "join_sentences": (public_rules, "JOIN_CAUSES", lambda t: tuple((f"{a} on Monday", f"{b} on Tuesday")
                                                                    for a, b in t), "neighbours in the calendar"),
    "past_tense": (public_rules, "VERBS", lambda t: _with(t, "in Addis Ababa"), "contains the eval answer"),
    "make_question": (public_rules, "VERBS", lambda t: _with(t, f"with {velish.LEXICON['dog'][0]}"), "Velish word"),
    "make_negative": (public_rules, "VERBS", lambda t: _with(t, f"despite {CLINICAL['Pike flush'][0]}"),
                      "names the clinic's"),
    "sentiment_more": (public_rules, "MORE_SENTIMENT_ITEMS", lambda t: tuple(f"{i} from Nairobi" for i in t),
                       "names the place"),
    "word_problem_more": (public, "NAMES", lambda t: ("Paris", "Lima"), "names the place"),
    "sort_numbers": (public_rules, "SORT_PHRASINGS", lambda t: tuple(f"What is 3 plus 4? {p}" for p in t),
                     "asks in the eval form"),
}


@pytest.mark.parametrize("family", RULE_FAMILIES)
def test_public_leaks_catches_a_leak_planted_in_each_rule_family(built, monkeypatch, family):
    """A table of the family given something the evaluation asks (or the clinic's or Velish's words): the rows it
    makes then leak, and public_leaks says so; the family as shipped does not."""
    evals = built["general"] + built["clinical_eval"] + built["velish_eval"]
    assert S.public_leaks(_family(built, family), evals) == []
    module, name, plant, said = PLANTS[family]
    monkeypatch.setattr(module, name, plant(getattr(module, name)))
    rows = public._public_families()[family](common.seeded(f"public:{family}"))
    leaks = S.public_leaks(rows, evals)
    assert rows and any(said in leak for leak in leaks), (said, leaks[:3])
