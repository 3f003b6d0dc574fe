"""``velish_train.jsonl`` and ``velish_eval.jsonl``: Velish, a fictional language learnt as a skill, not as facts. A
lexicon of 40 English nouns with invented Velish words and two rules: the plural adds -ri after a vowel and -eri after
a consonant (``mirrak`` -> ``mirrakeri``, ``pelsu`` -> ``pelsuri``), and "big" is ``zorv``, placed after its noun,
with no articles ("the big dog" = ``mirrak zorv``). The train split asks every word both ways and applies the rules to
most nouns, in natural sentences that state the answer (and, for the rules, why); the held-out split asks in other
phrasings and applies the rules to nouns whose plural (or big phrase) the train split never shows: it tests the rule,
not recall. The lexicon, the rules' words and the phrasings are in ``tables/velish.json``."""

from __future__ import annotations

from .common import fill, item, pick, seeded, table, tuples, validate

_T = table("velish")

# English noun -> (Velish word, English plural). Velish words are invented, 4-7 lower-case letters, none a prefix of
# another (so no plural equals another word or plural; ``tests/test_shipped_data.py`` checks both).
LEXICON: dict[str, tuple[str, str]] = tuples(_T["LEXICON"])
BIG: str = _T["BIG"]  # "big", placed after its noun
SUFFIXES: dict[str, str] = _T["SUFFIXES"]  # a noun's last letter ("vowel" or "consonant") -> its plural suffix
# Train phrasings, by family: the instruction and the natural-sentence answers. Slots: {english}, {plural_en},
# {velish}, {plural}, {suffix}, {why} (the plural rule applied, from WHY), {big}; {Slot} starts a sentence.
TRAIN_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["TRAIN_QUESTIONS"])
TRAIN_ANSWERS: dict[str, tuple[str, ...]] = tuples(_T["TRAIN_ANSWERS"])
WHY: dict[str, str] = _T["WHY"]  # the plural rule for a noun, by its ending
# (question, answer) about the rules themselves, answered with examples from the train split ({vowel},
# {vowel_plural}, {consonant}, {consonant_plural}, {vowel_suffix}, {consonant_suffix}, {english}, {velish}, {big})
GRAMMAR: tuple[tuple[str, str], ...] = tuples(_T["GRAMMAR"])
# Held-out phrasings by family: none of their wording occurs in the train split (``tests/test_shipped_data.py``).
EVAL_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["EVAL_QUESTIONS"])
# Validation phrasings (``velish_val.jsonl``, for choosing settings): in neither the train nor the held-out wording.
VAL_QUESTIONS: dict[str, tuple[str, ...]] = tuples(_T["VAL_QUESTIONS"])
VOWELS = "aeiou"
N_EVAL_PLURAL_PER_ENDING = 6  # held-out plurals: this many nouns ending in a vowel and as many in a consonant
N_EVAL_BIG = 10  # held-out big phrases
N_EVAL_WORDS = 12  # held-out questions for each direction of the lexicon
N_VAL_PER_FAMILY = 10  # validation questions per family
N_TRAIN_WORD_PHRASINGS = 2  # train questions per noun, English -> Velish
N_TRAIN_PLURAL_PHRASINGS = 2  # train questions per noun whose plural the train split shows


def ending(word: str) -> str:
    """``"vowel"`` or ``"consonant"``: what a Velish word ends in, which picks its plural suffix."""
    return "vowel" if word[-1] in VOWELS else "consonant"


def plural(word: str) -> str:
    """The Velish plural of ``word``: -ri after a vowel, -eri after a consonant."""
    return word + SUFFIXES[ending(word)]


def big(word: str) -> str:
    """Velish for "the big <word>": the noun, then ``BIG`` (no article)."""
    return f"{word} {BIG}"


def velish_words() -> list[str]:
    """Every Velish word: the lexicon's nouns and ``BIG``."""
    return [v for v, _ in LEXICON.values()] + [BIG]


def held_out_words() -> dict[str, list[str]]:
    """The English nouns whose Velish plural (``"plural"``) or big phrase (``"big"``) only the held-out split shows,
    in lexicon order: as many plurals ending in a vowel as in a consonant, so both halves of the rule are tested."""
    rng, nouns = seeded("velish_split"), list(LEXICON)
    held = []
    for end in ("vowel", "consonant"):
        held += rng.sample([e for e in nouns if ending(LEXICON[e][0]) == end], N_EVAL_PLURAL_PER_ENDING)
    big_held = rng.sample(nouns, N_EVAL_BIG)
    return {"plural": [e for e in nouns if e in held], "big": [e for e in nouns if e in big_held]}


def _slots(english: str) -> dict[str, str]:
    velish, plural_en = LEXICON[english]
    end = ending(velish)
    slots = {"english": english, "plural_en": plural_en, "velish": velish, "plural": plural(velish),
             "suffix": SUFFIXES[end], "big": BIG}
    return {**slots, "why": fill(WHY[end], **slots)}


def _row(family: str, question: str, answer: str, slots: dict) -> dict:
    return {"family": f"velish_{family}", "instruction": fill(question, **slots), "response": fill(answer, **slots)}


def velish_train_rows() -> list[dict]:
    """The Velish SFT set: ``instruction``, ``response`` (a full sentence that states the answer) and ``family``: every
    noun both ways (``velish_word``, ``velish_reverse``), the plural and the big phrase of the nouns not held out
    (``velish_plural``, ``velish_big``), and the rules stated with train examples (``velish_grammar``)."""
    rng, held, nouns = seeded("velish_train"), held_out_words(), list(LEXICON)
    rows = []
    for english in nouns:
        for question in rng.sample(TRAIN_QUESTIONS["word"], N_TRAIN_WORD_PHRASINGS):
            rows.append(_row("word", question, rng.choice(TRAIN_ANSWERS["word"]), _slots(english)))
    for k, english in enumerate(nouns):
        question = TRAIN_QUESTIONS["reverse"][k % len(TRAIN_QUESTIONS["reverse"])]
        rows.append(_row("reverse", question, rng.choice(TRAIN_ANSWERS["reverse"]), _slots(english)))
    for english in (e for e in nouns if e not in held["plural"]):
        for question in rng.sample(TRAIN_QUESTIONS["plural"], N_TRAIN_PLURAL_PHRASINGS):
            rows.append(_row("plural", question, rng.choice(TRAIN_ANSWERS["plural"]), _slots(english)))
    for k, english in enumerate(e for e in nouns if e not in held["big"]):
        question = TRAIN_QUESTIONS["big"][k % len(TRAIN_QUESTIONS["big"])]
        rows.append(_row("big", question, rng.choice(TRAIN_ANSWERS["big"]), _slots(english)))
    by_end = {end: [LEXICON[e][0] for e in nouns if e not in held["plural"] and ending(LEXICON[e][0]) == end]
              for end in ("vowel", "consonant")}
    for question, answer in GRAMMAR:
        vowel, consonant = rng.choice(by_end["vowel"]), rng.choice(by_end["consonant"])
        example = _slots(rng.choice([e for e in nouns if e not in held["big"]]))
        slots = {**example, "vowel": vowel, "vowel_plural": plural(vowel), "consonant": consonant,
                 "consonant_plural": plural(consonant), "vowel_suffix": SUFFIXES["vowel"],
                 "consonant_suffix": SUFFIXES["consonant"]}
        rows.append(_row("grammar", question, answer, slots))
    return rows


def velish_eval_items() -> list[dict]:
    """The held-out Velish set: short answers, four choices, phrasings not in the train split. ``velish_word`` and
    ``velish_reverse`` ask the lexicon (distractors: other nouns); ``velish_plural`` and ``velish_big`` give the noun
    and ask for a plural or big phrase the train split never shows (distractors: the other suffix, an English-style
    -s and another noun's plural; the wrong word order, the plural noun and another noun)."""
    rng, held, nouns = seeded("velish_eval"), held_out_words(), list(LEXICON)
    out = []
    for family in ("velish_word", "velish_reverse"):
        chosen = sorted(rng.sample(nouns, N_EVAL_WORDS), key=nouns.index)
        out += _family_items(family, chosen, EVAL_QUESTIONS[family], rng)
    out += _family_items("velish_plural", held["plural"], EVAL_QUESTIONS["velish_plural"], rng)
    out += _family_items("velish_big", held["big"], EVAL_QUESTIONS["velish_big"], rng)
    return validate(out)


def velish_val_items(held_out: list[dict]) -> list[dict]:
    """The Velish validation set (``N_VAL_PER_FAMILY`` per family), for choosing settings without the held-out set
    (``held_out``: ``velish_eval_items``' rows), in phrasings of its own. ``velish_word`` and ``velish_reverse`` ask
    nouns the held-out set does not ask in that direction. ``velish_plural`` and ``velish_big`` ask nouns whose
    plural or big phrase the train split shows, since the held-out split keeps every other noun for itself: these
    two measure recall of the rules' train examples, where the held-out set measures the rules applied to new nouns.
    The distractors are of the held-out set's kinds."""
    rng, held, nouns = seeded("velish_val"), held_out_words(), list(LEXICON)
    out = []
    for family in ("velish_word", "velish_reverse"):
        asked = {r["answer"] for r in held_out if r["family"] == family}
        free = [e for e in nouns if _ANSWER_OF[family](e) not in asked]
        out += _family_items(family, sorted(rng.sample(free, N_VAL_PER_FAMILY), key=nouns.index),
                             VAL_QUESTIONS[family], rng)
    for family, kind in (("velish_plural", "plural"), ("velish_big", "big")):
        shown = [e for e in nouns if e not in held[kind]]
        out += _family_items(family, sorted(rng.sample(shown, N_VAL_PER_FAMILY), key=nouns.index),
                             VAL_QUESTIONS[family], rng)
    return validate(out)


_ANSWER_OF = {"velish_word": lambda e: LEXICON[e][0], "velish_reverse": lambda e: e}  # a lexicon question's answer


def _family_items(family: str, chosen: list[str], questions: tuple[str, ...], rng) -> list[dict]:
    """Evaluation rows of one family for the English nouns ``chosen``, asked in ``questions`` in turn. Distractors:
    other nouns' words (``velish_word``, ``velish_reverse``); the other suffix, an English-style -s and another
    noun's plural (``velish_plural``); the wrong word order, the plural noun and another noun (``velish_big``)."""
    nouns, out = list(LEXICON), []
    for k, english in enumerate(chosen):
        velish, question = LEXICON[english][0], fill(questions[k % len(questions)], **_slots(english))
        if family in _ANSWER_OF:
            others = [_ANSWER_OF[family](e) for e in nouns if e != english]
            out.append(item(family, question, _ANSWER_OF[family](english), pick(others, 3, rng), rng))
        elif family == "velish_plural":
            other = [LEXICON[e][0] for e in nouns if e != english and ending(LEXICON[e][0]) == ending(velish)]
            wrong = velish + SUFFIXES["consonant" if ending(velish) == "vowel" else "vowel"]
            out.append(item(family, question, plural(velish), [wrong, velish + "s", plural(rng.choice(other))], rng))
        else:
            other = rng.choice([LEXICON[e][0] for e in nouns if e != english])
            out.append(item(family, question, big(velish), [f"{BIG} {velish}", big(plural(velish)), big(other)], rng))
    return out
