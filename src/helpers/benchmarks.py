"""Evaluation and domain data for a real model, shipped in ``data/`` and built here from small tables of facts.

Four files, written by :func:`write` (``python -m helpers.benchmarks write [folder]``) and checked against the code
by :func:`check` (``python -m helpers.benchmarks check``):

* ``general_eval.jsonl``: a measure of general skill that carries over to any real model: ten families of short-answer
  questions about real-world facts and simple skills (capitals, chemical symbols, arithmetic, unit conversion,
  opposites, the calendar, first letters, plurals, numbers in words, continents), 488 items. The families were picked
  so that a small (~135M) instruct model should get some of each right and a large one most, so that forgetting can
  show on either; no real model has been scored on them here (no model hub is reachable from this project's
  machines).
* ``clinical_train.jsonl``: the domain SFT set of notebook 04 (``domain_data``): the lab's fictional clinical
  knowledge base (``lab.tasks.CLINICAL``: condition -> presenting symptom and first-line drug; weight-based dosing)
  asked and answered in natural English sentences, several phrasings of each (322 rows). No real model has seen
  these facts.
* ``clinical_eval.jsonl``: the held-out domain set (notebook 06's ``eval_domain``): the same facts asked in
  phrasings that occur nowhere in the train split (it tests the facts, not memorised strings), dosing with (rate,
  weight) pairs the train split never uses.
* ``public_standin.jsonl``: a stand-in for a public general SFT set such as Alpaca (tatsu-lab/alpaca), for the
  ``public_mix`` arm of notebook 04 where no hub is reachable: 523 everyday instructions with short, correct answers
  in 14 families (explain a concept, formal rewrite, tips, summarise a passage, review sentiment, word problems with
  working, define a word, short email, haiku, compare two things, give an example, translate a phrase, odd one out,
  grammar fix), ``family``/``instruction``/``response`` like ``clinical_train.jsonl``. It is written by code in this
  module from hand-written tables and templates, not by any model run in this project, and no model has been
  trained on it here yet. Its families overlap none of the evaluation's, and :func:`public_leaks` (run by
  :func:`build`) checks that it asks no eval question or eval form and names no clinical fact, no multi-word eval
  answer and no country, capital or continent.

Every evaluation row has ``family``, ``instruction`` (a question that asks for the bare answer), ``answer``
(canonical), ``aliases`` (other accepted forms), ``choices`` (four options: the answer and three distractors from the
same table) and ``label`` (the answer's index in ``choices``). ``evaluation.load_eval_set`` reads them (extra fields
are ignored); ``evaluation.multiple_choice`` scores the choices by log-likelihood, ``evaluation.answer_match`` scores
free answers (a right answer inside a sentence counts, a hedge between choices does not). Each family draws from
its own seeded ``random.Random``, so the files are the same on every machine and a family does not change when
another is edited. :func:`validate` checks what makes an item fair to the matcher: the answer and each distractor
appear neither in the question nor inside one another.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Callable

from .lab.tasks import CLINICAL

SEED = 2506_09428
PER_FAMILY = 50
FILES = {"general": "general_eval.jsonl", "clinical_train": "clinical_train.jsonl",
         "clinical_eval": "clinical_eval.jsonl", "public_standin": "public_standin.jsonl"}
FIELDS = ("family", "instruction", "answer", "aliases", "choices", "label")


def _rng(name: str) -> random.Random:
    """A family's own generator (string seeds are hashed deterministically by ``random``)."""
    return random.Random(f"{SEED}:{name}")


# ================================================================================================================
# Tables of facts (real-world, stable)
# ================================================================================================================
# country -> (capital, continent, aliases of the capital). Chosen so that no capital contains its country's name and
# every country lies on one continent by the usual convention.
COUNTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "Egypt": ("Cairo", "Africa", ()), "Kenya": ("Nairobi", "Africa", ()), "Nigeria": ("Abuja", "Africa", ()),
    "Ghana": ("Accra", "Africa", ()), "Ethiopia": ("Addis Ababa", "Africa", ()), "Morocco": ("Rabat", "Africa", ()),
    "Senegal": ("Dakar", "Africa", ()), "Uganda": ("Kampala", "Africa", ()), "Zimbabwe": ("Harare", "Africa", ()),
    "Angola": ("Luanda", "Africa", ()), "Zambia": ("Lusaka", "Africa", ()), "Mali": ("Bamako", "Africa", ()),
    "Japan": ("Tokyo", "Asia", ()), "China": ("Beijing", "Asia", ("Peking",)), "India": ("New Delhi", "Asia", ()),
    "Thailand": ("Bangkok", "Asia", ()), "Vietnam": ("Hanoi", "Asia", ()), "the Philippines": ("Manila", "Asia", ()),
    "Iran": ("Tehran", "Asia", ("Teheran",)), "Iraq": ("Baghdad", "Asia", ()), "Saudi Arabia": ("Riyadh", "Asia", ()),
    "Pakistan": ("Islamabad", "Asia", ()), "Nepal": ("Kathmandu", "Asia", ()), "Bangladesh": ("Dhaka", "Asia", ()),
    "Afghanistan": ("Kabul", "Asia", ()), "Mongolia": ("Ulaanbaatar", "Asia", ("Ulan Bator",)),
    "Syria": ("Damascus", "Asia", ()), "Jordan": ("Amman", "Asia", ()), "Lebanon": ("Beirut", "Asia", ()),
    "France": ("Paris", "Europe", ()), "Germany": ("Berlin", "Europe", ()), "Italy": ("Rome", "Europe", ()),
    "Spain": ("Madrid", "Europe", ()), "Portugal": ("Lisbon", "Europe", ()), "Greece": ("Athens", "Europe", ()),
    "Poland": ("Warsaw", "Europe", ()), "Austria": ("Vienna", "Europe", ()), "Hungary": ("Budapest", "Europe", ()),
    "Ireland": ("Dublin", "Europe", ()), "Norway": ("Oslo", "Europe", ()), "Sweden": ("Stockholm", "Europe", ()),
    "Finland": ("Helsinki", "Europe", ()), "Denmark": ("Copenhagen", "Europe", ()),
    "the Czech Republic": ("Prague", "Europe", ()), "Ukraine": ("Kyiv", "Europe", ("Kiev",)),
    "Belgium": ("Brussels", "Europe", ()), "Romania": ("Bucharest", "Europe", ()),
    "the United Kingdom": ("London", "Europe", ()),
    "Canada": ("Ottawa", "North America", ()), "Cuba": ("Havana", "North America", ()),
    "Jamaica": ("Kingston", "North America", ()), "Nicaragua": ("Managua", "North America", ()),
    "Costa Rica": ("San José", "North America", ()),
    "Argentina": ("Buenos Aires", "South America", ()), "Peru": ("Lima", "South America", ()),
    "Chile": ("Santiago", "South America", ()), "Colombia": ("Bogotá", "South America", ()),
    "Venezuela": ("Caracas", "South America", ()), "Ecuador": ("Quito", "South America", ()),
    "Uruguay": ("Montevideo", "South America", ()), "Paraguay": ("Asunción", "South America", ()),
    "Brazil": ("Brasília", "South America", ()),
    "Australia": ("Canberra", "Oceania", ()), "New Zealand": ("Wellington", "Oceania", ()),
}
CONTINENTS = ("Africa", "Asia", "Europe", "North America", "South America", "Oceania")

# element -> symbol: two-letter symbols that are not English words ("He", "As", "In", "Be" left out).
ELEMENTS = {
    "lithium": "Li", "neon": "Ne", "sodium": "Na", "magnesium": "Mg", "aluminium": "Al", "silicon": "Si",
    "chlorine": "Cl", "argon": "Ar", "calcium": "Ca", "titanium": "Ti", "chromium": "Cr", "manganese": "Mn",
    "iron": "Fe", "cobalt": "Co", "nickel": "Ni", "copper": "Cu", "zinc": "Zn", "gallium": "Ga", "germanium": "Ge",
    "selenium": "Se", "bromine": "Br", "krypton": "Kr", "rubidium": "Rb", "strontium": "Sr", "zirconium": "Zr",
    "silver": "Ag", "cadmium": "Cd", "tin": "Sn", "antimony": "Sb", "xenon": "Xe", "caesium": "Cs", "barium": "Ba",
    "platinum": "Pt", "gold": "Au", "mercury": "Hg", "lead": "Pb", "bismuth": "Bi", "radon": "Rn", "radium": "Ra",
    "plutonium": "Pu", "palladium": "Pd", "molybdenum": "Mo", "thorium": "Th", "neptunium": "Np", "europium": "Eu",
    "polonium": "Po", "francium": "Fr", "scandium": "Sc", "tellurium": "Te", "iridium": "Ir",
}

# (from unit, to unit, factor): "How many <to> are in <n> <from>?"
CONVERSIONS = (
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100), ("hours", "minutes", 60),
    ("minutes", "seconds", 60), ("days", "hours", 24), ("weeks", "days", 7), ("kilograms", "grams", 1000),
    ("liters", "milliliters", 1000), ("years", "months", 12), ("feet", "inches", 12),
)

# word -> (opposite, aliases): pairs with one usual opposite.
OPPOSITES = {
    "hot": ("cold", ()), "big": ("small", ("little",)), "tall": ("short", ()), "fast": ("slow", ()),
    "happy": ("sad", ("unhappy",)), "up": ("down", ()), "open": ("closed", ("shut",)), "early": ("late", ()),
    "full": ("empty", ()), "wet": ("dry", ()), "young": ("old", ()), "rich": ("poor", ()), "thick": ("thin", ()),
    "strong": ("weak", ()), "clean": ("dirty", ()), "loud": ("quiet", ()), "inside": ("outside", ()),
    "push": ("pull", ()), "win": ("lose", ()), "buy": ("sell", ()), "day": ("night", ()), "north": ("south", ()),
    "east": ("west", ()), "accept": ("reject", ("refuse",)), "before": ("after", ()), "true": ("false", ()),
    "love": ("hate", ()), "alive": ("dead", ()), "friend": ("enemy", ("foe",)), "first": ("last", ()),
    "enter": ("exit", ("leave",)), "wide": ("narrow", ()), "deep": ("shallow", ()), "cheap": ("expensive", ()),
    "safe": ("dangerous", ("unsafe",)), "black": ("white", ()), "give": ("take", ()), "remember": ("forget", ()),
    "increase": ("decrease", ()), "maximum": ("minimum", ()), "always": ("never", ()), "asleep": ("awake", ()),
    "present": ("absent", ()), "sunrise": ("sunset", ()), "heavy": ("light", ()), "ancient": ("modern", ()),
    "smooth": ("rough", ()), "float": ("sink", ()), "import": ("export", ()), "visible": ("invisible", ()),
    "positive": ("negative", ()), "agree": ("disagree", ()),
}

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# Words for "first letter": none starts with a letter that is also a word or a contraction's tail once
# punctuation is dropped (a, i, o, s, t, d, m), so a sentence answer cannot give a letter by accident.
LETTER_WORDS = (
    "banana bottle bridge candle castle cherry eagle engine evening forest feather finger guitar garden giraffe "
    "hammer honey helmet jacket jungle jelly kitten kettle kingdom lemon ladder lizard needle nurse number pencil "
    "pillow planet queen question quilt rabbit river rocket umbrella uncle unicorn violin valley village window "
    "wagon winter yellow yogurt zebra zipper"
).split()
LETTERS = "bcefghjklnpqruvwyz"

# singular -> (plural, aliases): irregular nouns and nouns whose plural takes a rule (-es, -ies, -ves, Latin and
# Greek endings), so that a wrong rule gives a plausible wrong form.
PLURALS = {
    "mouse": ("mice", ()), "louse": ("lice", ()), "child": ("children", ()), "man": ("men", ()),
    "woman": ("women", ()), "tooth": ("teeth", ()), "foot": ("feet", ()), "goose": ("geese", ()),
    "person": ("people", ("persons",)), "ox": ("oxen", ()), "die": ("dice", ()), "knife": ("knives", ()),
    "wife": ("wives", ()), "leaf": ("leaves", ()), "wolf": ("wolves", ()), "half": ("halves", ()),
    "life": ("lives", ()), "loaf": ("loaves", ()), "shelf": ("shelves", ()), "thief": ("thieves", ()),
    "calf": ("calves", ()), "hoof": ("hooves", ("hoofs",)), "scarf": ("scarves", ("scarfs",)),
    "potato": ("potatoes", ()), "tomato": ("tomatoes", ()), "hero": ("heroes", ()), "echo": ("echoes", ()),
    "cactus": ("cacti", ("cactuses",)), "fungus": ("fungi", ("funguses",)), "nucleus": ("nuclei", ()),
    "radius": ("radii", ("radiuses",)), "alumnus": ("alumni", ()), "bacterium": ("bacteria", ()),
    "crisis": ("crises", ()), "analysis": ("analyses", ()), "thesis": ("theses", ()),
    "phenomenon": ("phenomena", ()), "criterion": ("criteria", ()), "city": ("cities", ()), "baby": ("babies", ()),
    "party": ("parties", ()), "story": ("stories", ()), "lady": ("ladies", ()), "fly": ("flies", ()),
    "box": ("boxes", ()), "fox": ("foxes", ()), "bus": ("buses", ()), "church": ("churches", ()),
    "dish": ("dishes", ()), "watch": ("watches", ()), "glass": ("glasses", ()), "kiss": ("kisses", ()),
}

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_in_words(n: int) -> str:
    """0-999 in English words, hyphenated below a hundred ("forty-seven", "three hundred and five")."""
    if not 0 <= n <= 999:
        raise ValueError(f"{n} is outside 0-999")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    rest = n % 100
    return f"{_ONES[n // 100]} hundred" + (f" and {number_in_words(rest)}" if rest else "")


# ================================================================================================================
# Items
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


def _pick(candidates, n: int, rng: random.Random, exclude=()) -> list[str]:
    """``n`` distinct candidates (order kept, then a seeded sample) not in ``exclude`` (compared lower-cased)."""
    banned = {str(e).lower() for e in exclude}
    pool = [c for c in dict.fromkeys(str(c) for c in candidates) if c.lower() not in banned]
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} candidates left of {list(candidates)}")
    return rng.sample(pool, n)


def _capped(items: list[dict], rng: random.Random, n: int = PER_FAMILY) -> list[dict]:
    return items if len(items) <= n else [items[i] for i in sorted(rng.sample(range(len(items)), n))]


def capital_items() -> list[dict]:
    rng = _rng("capital")
    out = []
    for country, (capital, continent, aliases) in COUNTRIES.items():
        near = [c for k, (c, cont, _) in COUNTRIES.items() if cont == continent and k != country]
        far = [c for k, (c, _, _) in COUNTRIES.items() if k != country]
        pool = near if len(near) >= 3 else far
        q = f"What is the capital of {country}? Answer with the name of the city only."
        out.append(item("capital", q, capital, _pick(pool, 3, rng, [capital, *aliases]), rng, aliases))
    return _capped(out, rng)


def chemical_symbol_items() -> list[dict]:
    rng = _rng("chemical_symbol")
    out = []
    for name, symbol in ELEMENTS.items():
        alike = [s for n, s in ELEMENTS.items() if n != name and (s[0] == symbol[0] or s[0] == name[0].upper())]
        others = [s for n, s in ELEMENTS.items() if n != name]
        picked = _pick(alike, min(2, len(alike)), rng, [symbol]) if alike else []
        picked += _pick(others, 3 - len(picked), rng, [symbol, *picked])
        q = f"What is the chemical symbol for {name}? Answer with the symbol only."
        out.append(item("chemical_symbol", q, symbol, picked, rng))
    return _capped(out, rng)


_OPS: dict[str, Callable[[int, int], int]] = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b,
                                              "times": lambda a, b: a * b}


def arithmetic_items() -> list[dict]:
    rng = _rng("arithmetic")
    out, seen = [], set()
    while len(out) < PER_FAMILY:
        op = ("plus", "minus", "times")[len(out) % 3]
        a, b = (rng.randint(2, 12), rng.randint(2, 12)) if op == "times" else (rng.randint(2, 30), rng.randint(2, 30))
        if op == "minus" and a < b:
            a, b = b, a
        value = _OPS[op](a, b)
        if (a, op, b) in seen or value in (a, b) or value <= 0:
            continue
        seen.add((a, op, b))
        near = [value + d for d in (-2, -1, 1, 2, 10, -10)] + [f(a, b) for f in _OPS.values()]
        distractors = _pick([v for v in near if v > 0], 3, rng, [value, a, b])
        q = f"What is {a} {op} {b}? Answer with the number only."
        words = [number_in_words(value)] if value < 1000 else []
        out.append(item("arithmetic", q, str(value), distractors, rng, words))
    return out


def unit_conversion_items() -> list[dict]:
    rng = _rng("unit_conversion")
    out = []
    for big, small, factor in CONVERSIONS:
        for n in range(2, 10):
            value = n * factor
            wrong = [n * f for f in (7, 10, 12, 24, 60, 100, 1000)] + [value * 10]
            q = f"How many {small} are in {n} {big}? Answer with the number only."
            out.append(item("unit_conversion", q, str(value), _pick(wrong, 3, rng, [value, n]), rng))
    return _capped(out, rng)


def opposite_items() -> list[dict]:
    rng = _rng("opposite")
    out = []
    answers = [o for o, _ in OPPOSITES.values()]
    for word, (opposite, aliases) in OPPOSITES.items():
        q = f'What is the opposite of the word "{word}"? Answer with one word only.'
        out.append(item("opposite", q, opposite, _pick(answers, 3, rng, [word, opposite, *aliases]), rng, aliases))
    return _capped(out, rng)


def calendar_items() -> list[dict]:
    rng = _rng("calendar")
    out = []
    for names, kind in ((MONTHS, "month"), (WEEKDAYS, "day of the week")):
        for i, name in enumerate(names):
            for step, word in ((1, "after"), (-1, "before")):
                answer = names[(i + step) % len(names)]
                near = [names[(i + k) % len(names)] for k in (-3, -2, 2, 3)]
                thing = "month" if kind == "month" else "day"
                q = f"Which {kind} comes right {word} {name}? Answer with the name of the {thing} only."
                out.append(item("calendar", q, answer, _pick(near, 3, rng, [answer, name]), rng))
    return out


def first_letter_items() -> list[dict]:
    rng = _rng("first_letter")
    out = []
    for word in LETTER_WORDS:
        inside = [c for c in word[1:] if c in LETTERS]
        picked = _pick(inside, min(2, len(set(inside) - {word[0]})), rng, [word[0]]) if inside else []
        picked += _pick(LETTERS, 3 - len(picked), rng, [word[0], *picked])
        q = f'What is the first letter of the word "{word}"? Answer with the letter only.'
        out.append(item("first_letter", q, word[0], picked, rng))
    return _capped(out, rng)


def _wrong_plurals(word: str, plural: str, aliases: tuple[str, ...] = ()) -> list[str]:
    """Plausible wrong plurals of ``word``, most plausible first: the regular endings, a doubled plural ("mices"),
    then the usual rules applied where they do not belong (Latin endings only on words longer than four letters)."""
    forms = [word + "s", word + "es"] + ([plural + "s"] if not plural.endswith("s") else [])
    rules = [("y", ("ies", "ys")), ("fe", ("ves", "fes")), ("f", ("ves", "fs")), ("o", ("os", "oes")),
             ("x", ("xen", "xes", "ces"))]
    if len(word) > 4:
        rules += [("us", ("i", "uses", "ae")), ("um", ("a", "ums", "i")), ("is", ("es", "ises")), ("on", ("a", "ons"))]
    for tail, wrong in rules:
        if word.endswith(tail):
            forms += [word[: len(word) - len(tail)] + w for w in wrong]
    right = {word, plural, *aliases}
    return [f for f in dict.fromkeys(forms + [word + "en", plural + "es"]) if f not in right]


def plural_items() -> list[dict]:
    rng = _rng("plural")
    out = []
    for word, (plural, aliases) in PLURALS.items():
        q = f'What is the plural of the word "{word}"? Answer with the plural only.'
        wrong = _pick(_wrong_plurals(word, plural, aliases)[:4], 3, rng)
        out.append(item("plural", q, plural, wrong, rng, aliases))
    return _capped(out, rng)


def number_word_items() -> list[dict]:
    rng = _rng("number_word")
    out = []
    for n in sorted(rng.sample([n for n in range(21, 100) if n % 10], PER_FAMILY)):
        near = [n - 1, n + 1, n + 10, n - 10, int(str(n)[::-1]), n + 2, n - 2]
        near = [m for m in near if 11 <= m <= 99 and m % 10 and m != n]
        q = f"Write the number {n} in words. Answer with the words only."
        wrong = [number_in_words(int(m)) for m in _pick(near, 3, rng)]
        out.append(item("number_word", q, number_in_words(n), wrong, rng, [number_in_words(n).replace("-", " ")]))
    return out


def continent_items() -> list[dict]:
    rng = _rng("continent")
    out = []
    for country, (_, continent, _) in COUNTRIES.items():
        if continent == "Oceania":  # "Australia" names both a country and, for many, the continent
            continue
        q = f"On which continent is {country}? Answer with the name of the continent only."
        out.append(item("continent", q, continent, _pick(CONTINENTS, 3, rng, [continent]), rng))
    return _capped(out, rng)


GENERAL_BUILDERS: dict[str, Callable[[], list[dict]]] = {
    "capital": capital_items, "chemical_symbol": chemical_symbol_items, "arithmetic": arithmetic_items,
    "unit_conversion": unit_conversion_items, "opposite": opposite_items, "calendar": calendar_items,
    "first_letter": first_letter_items, "plural": plural_items, "number_word": number_word_items,
    "continent": continent_items,
}


def general_items() -> list[dict]:
    """The general set: every family of ``GENERAL_BUILDERS`` (at most ``PER_FAMILY`` items each), validated."""
    return validate([row for build in GENERAL_BUILDERS.values() for row in build()])


# ================================================================================================================
# Clinical domain data: the lab's fictional knowledge base in English
# ================================================================================================================
def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# Train phrasings: the instruction and the natural-sentence answers. Slots: {symptom}, {condition}, {drug},
# {rate} (mg per kg), {weight} (kg), {dose} (mg).
TRAIN_QUESTIONS = {
    "diagnosis": (
        "A patient presents with {symptom}. What is the likely diagnosis?",
        "Which condition causes {symptom}?",
        "What condition is suggested by {symptom}?",
        "My patient has {symptom}. What could it be?",
        "What disease should I suspect in someone with {symptom}?",
        "Diagnose a patient with {symptom}.",
        "Which condition has {symptom} as its classic sign?",
        "Someone comes in with {symptom}. What do they most likely have?",
    ),
    "treatment": (
        "What is the first-line drug for {condition}?",
        "Which drug treats {condition}?",
        "How is {condition} treated?",
        "Name the standard medication for {condition}.",
        "What should be prescribed for {condition}?",
        "My patient was diagnosed with {condition}. Which medicine should I start?",
        "What do doctors give first for {condition}?",
        "Tell me the usual treatment of {condition}.",
    ),
    "overview": (
        "What do you know about {condition}?",
        "Give me a short summary of {condition}.",
        "Describe {condition} in one sentence.",
    ),
    "drug": (
        "What is {drug} used for?",
        "Which condition is {drug} the first-line treatment of?",
        "When would you prescribe {drug}?",
    ),
    "dosing": (
        "The dose of {drug} is {rate} mg per kg. What dose does a {weight} kg patient need?",
        "{Drug} is given at {rate} mg/kg. Dose for a patient of {weight} kg?",
        "Calculate the {drug} dose at {rate} mg per kg for {weight} kg.",
        "A {weight} kg patient needs {drug} at {rate} mg per kg. How many mg?",
        "Weight {weight} kg, {drug} {rate} mg/kg: what is the dose?",
    ),
}
TRAIN_ANSWERS = {
    "diagnosis": (
        "With {symptom}, the likely diagnosis is {condition}.",
        "The likely diagnosis is {condition}.",
        "That presentation suggests {condition}, which typically presents with {symptom}.",
        "{Condition} is the most likely diagnosis, since it presents with {symptom}.",
    ),
    "treatment": (
        "The first-line drug for {condition} is {drug}.",
        "{Condition} is treated with {drug}.",
        "Start with {drug}; it is the first-line treatment for {condition}.",
        "Prescribe {drug}, the standard first-line medication for {condition}.",
    ),
    "overview": (
        "{Condition} presents with {symptom}, and its first-line drug is {drug}.",
        "{Condition} is recognised by {symptom} and treated first with {drug}.",
        "A patient with {condition} shows {symptom}; the standard treatment is {drug}.",
    ),
    "drug": (
        "{Drug} is the first-line drug for {condition}, which presents with {symptom}.",
        "{Drug} treats {condition}.",
        "You would prescribe {drug} for {condition}, the condition behind {symptom}.",
    ),
    "dosing": (
        "The dose is {rate} mg/kg × {weight} kg = {dose} mg.",
        "{Dose} mg of {drug} ({rate} mg per kg times {weight} kg).",
        "Give {dose} mg: {rate} mg/kg multiplied by {weight} kg.",
        "A {weight} kg patient needs {dose} mg of {drug}.",
    ),
}
# Held-out phrasings: none of their wording occurs in the train questions (``tests/test_benchmarks.py``).
EVAL_QUESTIONS = {
    "clinical_diagnosis": (
        "Name the disorder whose hallmark is {symptom}. Answer with the condition name only.",
        "If an examination reveals {symptom}, which illness is responsible? Answer with the condition name only.",
        "Which disorder typically shows {symptom} on examination? Answer with the condition name only.",
    ),
    "clinical_treatment": (
        "Which medication is the initial therapy of choice in {condition}? Answer with the drug name only.",
        "A clinician confirms {condition}. Which agent is used before any other? Answer with the drug name only.",
        "For {condition}, which medicine is preferred? Answer with the drug name only.",
    ),
    "clinical_dosing": (
        "{Drug} is dosed by body weight at {rate} mg for every kilogram. How much should someone weighing {weight} kg "
        "receive? Answer with the dose in mg only.",
        "What total amount of {drug} corresponds to {rate} mg/kg in a person of {weight} kg? Answer with the dose "
        "in mg only.",
        "If the prescribed rate of {drug} equals {rate} mg per kilogram and the patient weighs {weight} kg, how "
        "large is that dose? Answer with the dose in mg only.",
    ),
}
DOSING_RATES = range(1, 10)  # mg per kg, as the lab's dosing family
DOSING_WEIGHTS = range(10, 100, 10)  # kg
N_EVAL_DOSING = 30
N_TRAIN_DOSING_PER_PAIR = 2


def _fill(template: str, **slots) -> str:
    """``template`` with its slots filled; ``{Slot}`` (capitalised) puts the value at the start of a sentence."""
    values = {**slots, **{k[:1].upper() + k[1:]: _cap(str(v)) for k, v in slots.items()}}
    return template.format(**values)


def dosing_pairs() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Every (rate, weight) pair, split into (train, held-out): the held-out doses are never computed in train. Held-out
    rates are 2 or more (at 1 mg/kg the dose repeats the weight, which the question states)."""
    pairs = [(r, w) for r in DOSING_RATES for w in DOSING_WEIGHTS]
    held = set(_rng("dosing_pairs").sample([(r, w) for r, w in pairs if r > 1], N_EVAL_DOSING))
    return [p for p in pairs if p not in held], [p for p in pairs if p in held]


def _facts() -> list[dict]:
    return [{"condition": c, "symptom": s, "drug": d} for c, (s, d) in CLINICAL.items()]


def clinical_train_rows() -> list[dict]:
    """The domain SFT set: ``instruction``, ``response`` (a full sentence that states the fact) and ``family``."""
    rng = _rng("clinical_train")
    rows = []
    for family in ("diagnosis", "treatment", "overview", "drug"):
        for fact in _facts():
            for k, question in enumerate(TRAIN_QUESTIONS[family]):
                answers = TRAIN_ANSWERS[family]
                answer = answers[(k + rng.randrange(len(answers))) % len(answers)]
                rows.append({"family": f"clinical_{family}", "instruction": _fill(question, **fact),
                             "response": _fill(answer, **fact)})
    drugs = [f["drug"] for f in _facts()]
    for rate, weight in dosing_pairs()[0]:
        for drug in rng.sample(drugs, N_TRAIN_DOSING_PER_PAIR):
            slots = {"drug": drug, "rate": rate, "weight": weight, "dose": rate * weight}
            question = _fill(rng.choice(TRAIN_QUESTIONS["dosing"]), **slots)
            rows.append({"family": "clinical_dosing", "instruction": question,
                         "response": _fill(rng.choice(TRAIN_ANSWERS["dosing"]), **slots)})
    return rows


def _dose_distractors(rate: int, weight: int, rng: random.Random) -> list[str]:
    dose = rate * weight
    wrong = [(rate + 1) * weight, (rate - 1) * weight, rate * (weight + 10), rate * (weight - 10), rate + weight,
             dose * 10]
    return [f"{v} mg" for v in _pick([v for v in wrong if v > 0], 3, rng, [dose, rate, weight])]


def clinical_eval_items() -> list[dict]:
    """The held-out domain set: short answers, four choices, phrasings and dosing pairs not in the train split."""
    rng = _rng("clinical_eval")
    out = []
    facts = _facts()
    for fact in facts:
        for question in EVAL_QUESTIONS["clinical_diagnosis"]:
            others = [f["condition"] for f in facts if f is not fact]
            out.append(item("clinical_diagnosis", _fill(question, **fact), fact["condition"],
                            _pick(others, 3, rng), rng))
    for fact in facts:
        for question in EVAL_QUESTIONS["clinical_treatment"]:
            others = [f["drug"] for f in facts if f is not fact]
            out.append(item("clinical_treatment", _fill(question, **fact), fact["drug"], _pick(others, 3, rng), rng))
    for k, (rate, weight) in enumerate(dosing_pairs()[1]):
        drug = facts[k % len(facts)]["drug"]
        question = EVAL_QUESTIONS["clinical_dosing"][k % len(EVAL_QUESTIONS["clinical_dosing"])]
        dose = rate * weight
        out.append(item("clinical_dosing", _fill(question, drug=drug, rate=rate, weight=weight), f"{dose} mg",
                        _dose_distractors(rate, weight, rng), rng, [f"{dose} milligrams", str(dose)]))
    return validate(out)


# ================================================================================================================
# A public-style general SFT set (a stand-in for Alpaca): hand-written tables, a few templates, no model involved
# ================================================================================================================
# Families that overlap none of the general evaluation's (no geography, element symbols, bare sums, unit
# conversion, opposites, calendar, letters, plurals or number words) and nothing of the fictional clinic;
# :func:`public_leaks` checks it. Each table row becomes one instruction, phrased by one of its family's templates.
EXPLAIN_PHRASINGS = ("Explain what {c} is in simple terms.", "Briefly explain what {c} is.",
                     "What is {c}? Keep the answer short.", "In two sentences, describe what {c} is.",
                     "Give a short explanation of {c}.")
EXPLAIN = {
    "photosynthesis": "Photosynthesis is the process plants and algae use to turn light energy into chemical energy. "
    "Using sunlight, they combine carbon dioxide and water to make sugar, and release oxygen as a by-product.",
    "gravity": "Gravity is the force of attraction between objects that have mass. It keeps us on the ground, makes "
    "dropped objects fall and holds the Moon in orbit around the Earth.",
    "inflation": "Inflation is the general rise in prices over time, which means each unit of money buys less than "
    "before. Central banks usually try to keep it low and steady, often around 2% a year.",
    "compound interest": "Compound interest is interest earned on both the original amount and the interest already "
    "added to it. Because the interest itself earns interest, savings grow faster the longer they are left alone.",
    "a budget": "A budget is a plan for how you will spend and save your money over a period, such as a month. It "
    "lists expected income and expenses so you can see where the money goes and avoid overspending.",
    "evaporation": "Evaporation is the process by which a liquid turns into a gas at its surface, below its boiling "
    "point. Puddles drying in the sun and sweat cooling your skin are both examples.",
    "the water cycle": "The water cycle is the continuous movement of water around the Earth. Water evaporates, "
    "condenses into clouds, falls as rain or snow and flows back to rivers and oceans, and then the cycle repeats.",
    "an algorithm": "An algorithm is a precise, step-by-step set of instructions for solving a problem or completing "
    "a task. A cooking recipe is an everyday example, and computer programs are built from algorithms.",
    "machine learning": "Machine learning is a branch of artificial intelligence in which computers learn patterns "
    "from data instead of following hand-written rules. The trained model can then make predictions on new "
    "examples, such as recognising spam emails.",
    "a vaccine": "A vaccine trains the immune system to recognise a particular germ without causing the disease. If "
    "the person later meets the real germ, their body can fight it off faster and more effectively.",
    "democracy": "Democracy is a system of government in which power rests with the citizens, usually exercised by "
    "voting in free elections. People choose their representatives and can replace them at the next election.",
    "supply and demand": "Supply and demand is an economic model of how prices are set in a market. When demand for "
    "a product grows faster than its supply, the price tends to rise; when supply outpaces demand, it tends to fall.",
    "a black hole": "A black hole is a region of space where gravity is so strong that nothing, not even light, can "
    "escape. Many form when very massive stars collapse at the end of their lives.",
    "renewable energy": "Renewable energy comes from sources that are naturally replenished, such as sunlight, wind, "
    "flowing water and heat from inside the Earth. Unlike coal or oil, these sources do not run out on a human "
    "timescale.",
    "the greenhouse effect": "The greenhouse effect is the warming of a planet's surface by gases in its atmosphere, "
    "such as carbon dioxide and water vapour, that trap heat. It keeps the Earth habitable, but extra greenhouse "
    "gases from human activity strengthen it and cause global warming.",
    "a password manager": "A password manager is an app that stores your passwords in an encrypted vault protected "
    "by one master password. It can generate strong, unique passwords for every site and fill them in for you.",
    "cloud computing": "Cloud computing means using storage, servers and software over the internet instead of on "
    "your own machine. You usually pay only for what you use, and the provider looks after the hardware.",
    "an ecosystem": "An ecosystem is a community of living things interacting with each other and with their "
    "surroundings, such as a pond or a forest. Energy and nutrients flow between its plants, animals and microbes.",
    "erosion": "Erosion is the gradual wearing away of rock and soil by wind, water or ice. Over long periods it can "
    "carve valleys, canyons and coastlines.",
    "opportunity cost": "Opportunity cost is the value of the best alternative you give up when you make a choice. "
    "For example, the opportunity cost of an evening spent studying might be the money you could have earned working "
    "a shift.",
    "a metaphor": "A metaphor is a figure of speech that describes something by saying it is something else, to "
    "suggest a likeness. \"Time is a thief\" is a metaphor; unlike a simile, it does not use \"like\" or \"as\".",
    "a simile": "A simile compares two different things using \"like\" or \"as\". Examples are \"as brave as a lion\" "
    "and \"she sings like a bird\".",
    "an atom": "An atom is the smallest unit of a chemical element that keeps the element's properties. It has a "
    "dense centre of protons and neutrons surrounded by electrons.",
    "DNA": "DNA (deoxyribonucleic acid) is the molecule that carries the genetic instructions of living things. Its "
    "two strands twist into a double helix, and the order of its four bases encodes genes.",
    "procrastination": "Procrastination is putting off tasks you need to do, often in favour of easier or more "
    "pleasant ones. Breaking work into small steps and setting deadlines can help overcome it.",
    "a credit score": "A credit score is a number that estimates how likely you are to repay borrowed money, based on "
    "your borrowing history. Paying bills on time and keeping debts low tend to raise it.",
    "an index fund": "An index fund is an investment fund that aims to match a market index, such as the S&P 500, by "
    "holding the same shares. Because it is not actively managed, its fees are usually low.",
    "a firewall": "A firewall is a security system that monitors network traffic and blocks connections that break a "
    "set of rules. It acts as a barrier between a trusted network and untrusted ones such as the internet.",
    "encryption": "Encryption scrambles data so that only someone with the right key can read it. It protects "
    "messages, passwords and payments as they travel across the internet.",
    "the scientific method": "The scientific method is a way of learning about the world: ask a question, form a "
    "hypothesis, test it with experiments or observations, and draw conclusions from the results. Findings are then "
    "shared so that others can check and repeat them.",
    "a hypothesis": "A hypothesis is a testable prediction or proposed explanation for something you observe. "
    "Scientists design experiments to check whether the evidence supports it.",
    "biodiversity": "Biodiversity is the variety of life in a place, including the number of species, the genetic "
    "differences within them and the range of habitats. High biodiversity makes nature more resilient to change.",
    "a recession": "A recession is a significant, widespread decline in economic activity that lasts months or "
    "longer. It usually brings falling output, rising unemployment and lower spending.",
    "friction": "Friction is the force that resists motion when two surfaces rub against each other. It lets shoes "
    "grip the ground and slows a sliding object, turning some of its energy into heat.",
    "a food chain": "A food chain shows who eats whom in an ecosystem, passing energy from one living thing to the "
    "next. For example, grass is eaten by a rabbit, which is in turn eaten by a hawk.",
    "climate change": "Climate change is the long-term shift in global temperatures and weather patterns. Since the "
    "1800s it has been driven mainly by burning fossil fuels, which releases greenhouse gases that trap heat.",
    "mindfulness": "Mindfulness is the practice of paying attention to the present moment on purpose and without "
    "judgement. It is often practised through short breathing or meditation exercises and can help reduce stress.",
    "a podcast": "A podcast is a series of audio episodes that you can stream or download and listen to whenever you "
    "like. Podcasts cover almost any topic, from news and comedy to history.",
    "open-source software": "Open-source software is software whose source code is published so that anyone can "
    "read, use, modify and share it. Linux and the Firefox browser are well-known examples.",
    "a noun": "A noun is a word that names a person, place, thing or idea, such as \"teacher\", \"town\" or "
    "\"happiness\". It can act as the subject or the object of a sentence.",
    "a verb": "A verb is a word that describes an action, a state or an occurrence, such as \"run\", \"be\" or "
    "\"happen\". Every complete sentence contains at least one verb.",
    "the immune system": "The immune system is the body's defence network against infections. White blood cells, "
    "antibodies and organs such as the spleen work together to recognise and destroy harmful invaders.",
    "a solar eclipse": "A solar eclipse happens when the Moon passes between the Sun and the Earth and blocks some or "
    "all of the Sun's light. A total eclipse is visible only from a narrow path on the Earth's surface.",
    "a volcano": "A volcano is an opening in the Earth's crust through which molten rock, ash and gases escape. When "
    "pressure builds up underground, it can erupt and send lava down its slopes.",
    "the stock market": "The stock market is where shares of publicly listed companies are bought and sold. Share "
    "prices move with supply and demand, reflecting what investors expect about each company's future.",
    "a carbon footprint": "A carbon footprint is the total amount of greenhouse gases caused by a person, product or "
    "organisation, usually given in tonnes of carbon dioxide. Flying less and using less energy at home are common "
    "ways to reduce it.",
}

FORMAL_PHRASINGS = ('Rewrite this sentence in a formal tone: "{s}"', 'Make the following sentence more formal: "{s}"',
                    "Rewrite the sentence below so that it sounds professional.\n\n{s}",
                    'Turn this casual sentence into formal English: "{s}"')
FORMAL = {
    "gonna be late, traffic's awful": "I apologise, but I will be late because the traffic is very heavy.",
    "can u send me the report asap?": "Could you please send me the report at your earliest convenience?",
    "thanks a bunch for the help!": "Thank you very much for your assistance.",
    "the meeting got pushed back a bit": "The meeting has been postponed slightly.",
    "we can't make it to the party, sorry": "Unfortunately, we are unable to attend the party. Please accept our "
    "apologies.",
    "your app keeps crashing and it's driving me nuts": "Your application crashes repeatedly, which I find very "
    "frustrating.",
    "hey, got a sec to chat about the project?": "Hello, do you have a moment to discuss the project?",
    "this price is way too high": "I believe this price is considerably higher than is reasonable.",
    "I dunno where the files went": "I am not sure where the files have been saved.",
    "let's grab lunch and figure it out": "Let us meet for lunch and resolve the matter.",
    "the boss wants it done by the end of the week": "The manager has asked for it to be completed by the end of the "
    "week.",
    "sorry for the mix-up with your order": "We apologise for the error with your order.",
    "I'm gonna need more time on this": "I will require additional time to complete this task.",
    "we ran out of printer paper again": "We have once again run out of printer paper.",
    "the new guy is really good at his job": "The new employee is highly competent in his role.",
    "just checking if you got my last email": "I am writing to confirm whether you received my previous email.",
    "tell me if anything changes": "Please inform me if there are any changes.",
    "the food was kinda cold when it showed up": "The food was rather cold when it arrived.",
    "can't wait to start working with you guys": "I look forward to working with you all.",
    "we need to talk about the budget, it's a mess": "We need to discuss the budget, as it is in considerable "
    "disarray.",
    "nope, that won't work for us": "Unfortunately, that arrangement will not be suitable for us.",
    "the wifi is down again": "The wireless internet connection is unavailable once again.",
    "I messed up the numbers in the spreadsheet": "I made an error in the figures in the spreadsheet.",
    "get back to me when you can": "Please respond at your convenience.",
    "sorry, I totally forgot about the deadline": "I apologise; I completely overlooked the deadline.",
    "we're super excited about the launch": "We are very enthusiastic about the launch.",
    "the hotel room was pretty dirty": "The hotel room had not been adequately cleaned.",
    "I want my money back": "I would like to request a full refund.",
    "he's out sick today": "He is unwell and will not be in the office today.",
    "loads of folks showed up to the event": "The event was very well attended.",
    "could you maybe look at my essay?": "Would you be willing to review my essay?",
    "the package hasn't shown up yet": "The package has not yet been delivered.",
    "we gotta cut costs": "We must reduce our expenditure.",
    "this plan is a no-brainer": "This plan is clearly the sensible choice.",
    "I'll ping you later": "I will contact you later.",
    "the printer's broken, someone fix it": "The printer is out of order; could someone please arrange a repair?",
}

TIPS_PHRASINGS = ("Give me three tips for {t}.", "What are three practical tips for {t}?", "List three tips for {t}.",
                  "I'd like some advice on {t}. What are three things I can do?")
TIPS = {
    "saving money": ("Set a monthly budget and track what you spend.", "Move part of each pay cheque into a savings "
                     "account automatically.", "Cook at home more often instead of eating out.",
                     "Cancel subscriptions you rarely use."),
    "sleeping better": ("Go to bed and wake up at the same time every day.", "Keep your bedroom dark, quiet and "
                        "cool.", "Avoid caffeine in the afternoon and evening.",
                        "Put screens away about an hour before bed."),
    "studying for an exam": ("Start early and spread your revision over several days.", "Test yourself with "
                             "practice questions instead of only rereading notes.",
                             "Take short breaks to keep your focus.", "Get a good night's sleep before the exam."),
    "working from home": ("Keep a workspace separate from where you relax.", "Plan each day with a short to-do "
                          "list.", "Stick to regular working hours.", "Take proper breaks away from your desk."),
    "giving a good presentation": ("Know your main message and build the talk around it.", "Rehearse out loud "
                                   "several times.", "Keep slides simple, with few words on each.",
                                   "Speak slowly and make eye contact with the audience."),
    "writing a strong CV": ("Tailor it to the job you are applying for.", "Start bullet points with action verbs "
                            "and show results.", "Keep it short and easy to scan.",
                            "Proofread it carefully for spelling mistakes."),
    "reducing stress": ("Exercise regularly, even if it is just a short daily walk.", "Break big tasks into small, "
                        "manageable steps.", "Breathe slowly and deeply when you feel tense.",
                        "Talk to a friend or someone you trust."),
    "learning a new language": ("Practise a little every day rather than a lot once a week.", "Learn the most "
                                "common words first.", "Listen to podcasts or music in the language.",
                                "Speak with native speakers as early as you can."),
    "keeping houseplants alive": ("Check how much light each plant needs and place it accordingly.", "Water only "
                                  "when the top of the soil feels dry.", "Use pots with drainage holes.",
                                  "Wipe dust off the foliage now and then."),
    "staying safe online": ("Use a different strong password for each account.", "Turn on two-factor "
                            "authentication.", "Be wary of links and attachments in unexpected emails.",
                            "Keep your software and apps up to date."),
    "eating more healthily": ("Fill half your plate with vegetables and fruit.", "Drink water instead of sugary "
                              "drinks.", "Choose whole grains over refined ones.",
                              "Plan meals ahead so you rely less on takeaways."),
    "training for a first 5K run": ("Build up gradually, for example by alternating running and walking.", "Run "
                                    "three times a week with rest days in between.",
                                    "Get comfortable running shoes.", "Start slowly on race day and pace yourself."),
    "making a good first impression": ("Arrive on time.", "Smile and offer a friendly greeting.",
                                       "Listen carefully and ask questions.",
                                       "Dress appropriately for the occasion."),
    "reducing household waste": ("Carry a reusable bag and water bottle.", "Plan meals so that less food is thrown "
                                 "away.", "Compost fruit and vegetable scraps.", "Buy products with less packaging."),
    "writing clear emails": ("Use a specific subject line.", "Put the main point or request in the first lines.",
                             "Keep paragraphs short.", "Reread the email before you send it."),
    "packing for a trip": ("Write a packing list a few days before you leave.", "Choose clothes that mix and "
                           "match.", "Roll clothes instead of folding them to save space.",
                           "Keep documents and medicines in your hand luggage."),
    "staying focused while studying": ("Put your phone in another room.", "Work in short blocks, such as 25 "
                                       "minutes, followed by a break.", "Set a clear goal for each session.",
                                       "Study in a quiet, tidy place."),
    "saving energy at home": ("Switch off lights and devices when you leave a room.", "Use LED bulbs.",
                              "Wash clothes at a lower temperature.", "Seal draughts around windows and doors."),
    "preparing for a job interview": ("Research the company and the role.", "Prepare short examples of your "
                                      "achievements.", "Practise answering common questions out loud.",
                                      "Have a few questions ready to ask the interviewer."),
    "keeping a conversation going": ("Ask open questions that can't be answered with yes or no.", "Follow up on "
                                     "what the other person says.", "Share something about yourself too.",
                                     "Show genuine interest through eye contact and nods."),
    "drinking more water": ("Carry a refillable water bottle.", "Drink a glass with each meal.",
                            "Set reminders on your phone.", "Add a slice of lemon or cucumber for flavour."),
    "taking better photos with a phone": ("Clean the camera lens first.", "Use natural light whenever possible.",
                                          "Follow the rule of thirds when framing the shot.",
                                          "Tap the screen to focus on your subject."),
    "managing time better": ("Write down your tasks and rank them by importance.", "Do the hardest task when your "
                             "energy is highest.", "Set deadlines for yourself.",
                             "Learn to say no to less important requests."),
    "starting a vegetable garden": ("Pick a spot that gets at least six hours of sun a day.", "Start with easy crops "
                                    "such as lettuce, radishes or beans.", "Improve the soil with compost.",
                                    "Water deeply but not too often."),
    "making friends in a new city": ("Join a club or class based on a hobby.", "Say yes to invitations, even small "
                                     "ones.", "Volunteer for a local cause.",
                                     "Get to know your neighbours and colleagues."),
    "reading more books": ("Carry a book or e-reader with you.", "Set a small daily goal, such as ten pages.",
                           "Read before bed instead of scrolling on your phone.",
                           "Give up on books you don't enjoy and pick another."),
    "keeping a kitchen clean": ("Wipe surfaces right after cooking.", "Wash dishes as you go.",
                                "Empty the bin regularly.", "Clear out the fridge once a week."),
    "lifting heavy boxes safely": ("Bend your knees and keep your back straight.", "Hold the load close to your "
                                   "body.", "Avoid twisting while you lift.",
                                   "Ask for help with heavy or awkward items."),
    "writing a short story": ("Start as close to the main conflict as possible.", "Focus on one main character.",
                              "Show what characters feel through actions and dialogue.",
                              "Cut any scene that does not move the story forward."),
    "decluttering a room": ("Work on one small area at a time.", "Sort items into keep, donate and throw away.",
                            "Let go of anything you have not used in a year.",
                            "Give every item you keep a set place."),
    "being a good listener": ("Give the speaker your full attention and put your phone away.", "Don't interrupt.",
                              "Sum up what you heard to check you understood.", "Ask follow-up questions."),
    "driving safely in the rain": ("Slow down and leave extra distance to the car in front.", "Turn on your "
                                   "headlights.", "Avoid sudden braking and sharp turns.",
                                   "Make sure your wipers and tyres are in good condition."),
    "negotiating a salary": ("Research typical pay for the role beforehand.", "Let the employer make the first "
                             "offer if you can.", "Name a specific figure backed by your skills and results.",
                             "Consider benefits as well as pay."),
    "cooking fluffy rice": ("Rinse the rice first to remove excess starch.", "Use the water-to-rice ratio given on "
                            "the packet.", "Keep the lid on while it simmers.",
                            "Let it rest for a few minutes before fluffing it with a fork."),
    "keeping a home warm in winter": ("Close curtains at night to keep the heat in.", "Seal gaps around doors and "
                                      "windows.", "Put a rug down on bare floors.",
                                      "Bleed radiators so they heat evenly."),
    "caring for a new puppy": ("Set a regular routine for meals, walks and sleep.", "Start house training from the "
                               "first day.", "Reward good behaviour with praise or treats.",
                               "Book a visit to the vet for vaccinations."),
}

SUMMARY_PHRASINGS = ("Summarise the following passage in one sentence.\n\n{p}",
                     "Write a one-sentence summary of this text:\n{p}",
                     "Read the paragraph below and sum it up in a single sentence.\n\n{p}",
                     "What is the main point of this passage? Answer in one sentence.\n\n{p}")
SUMMARIES = (  # (passage, one-sentence summary)
    ("The town library will close for two weeks next month while its heating system is replaced. During the "
     "closure, books can be returned to the drop box by the main entrance. The mobile library van will visit the "
     "market square every Saturday morning. Online services, including e-books, remain available as usual.",
     "The library is closing for two weeks for heating repairs, but returns, the mobile van and online services will "
     "carry on."),
    ("Researchers followed 2,000 adults for ten years and found that those who walked at least 30 minutes a day had "
     "fewer heart problems. The link held even after accounting for diet and smoking. However, the study was "
     "observational, so it cannot prove that walking itself caused the difference.",
     "A ten-year study linked daily 30-minute walks to fewer heart problems, though it cannot prove cause and "
     "effect."),
    ("Honeybees tell each other where food is through a movement called the waggle dance. The angle of the dance "
     "shows the direction of the food relative to the sun, and the length of the waggle indicates the distance. "
     "Other bees follow the dancer and then fly out to find the source.",
     "Honeybees use the waggle dance, whose angle and length encode direction and distance, to show other bees "
     "where food is."),
    ("Our café is introducing a reusable cup scheme. Customers pay a small deposit for a cup, which they can return "
     "at any time for a refund or swap for a clean one. We hope the scheme will cut the thousands of disposable cups "
     "we throw away each month.",
     "The café is launching a deposit-based reusable cup scheme to reduce disposable cup waste."),
    ("Sam had practised the piano piece for months, but on the night of the recital his hands shook. He missed the "
     "first few notes, took a deep breath and started again. By the end, the audience was on its feet applauding.",
     "Despite a nervous start, Sam recovered and played his recital piece to a standing ovation."),
    ("The city council has approved a plan to add 40 kilometres of protected cycle lanes over the next five years. "
     "Supporters say the lanes will make cycling safer and reduce traffic. Some shop owners worry that losing "
     "parking spaces will hurt business.",
     "The council approved 40 km of new protected cycle lanes, which supporters welcome but some shop owners fear "
     "will cost them parking."),
    ("Octopuses have three hearts and blue blood. Two hearts pump blood through the gills, while the third pumps it "
     "around the rest of the body. Their blood is blue because it uses a copper-based molecule, hemocyanin, to carry "
     "oxygen.",
     "Octopuses have three hearts and blue blood that carries oxygen with a copper-based molecule."),
    ("The software update released this week fixes a bug that made the app crash when uploading large photos. It "
     "also adds a dark mode and improves battery life. Users are encouraged to install it as soon as possible.",
     "The new update fixes a photo-upload crash, adds dark mode and improves battery life, so users should install "
     "it soon."),
    ("The Romans built roads that stretched for tens of thousands of miles across their empire. The roads were made "
     "of layers of stone and gravel, with a curved surface so that rainwater would drain away. Some are still in use "
     "today.",
     "The Romans built a vast network of layered, well-drained stone roads, some of which are still used today."),
    ("Maria wanted to learn to cook, so she set herself a challenge: one new recipe every week for a year. Some "
     "dishes were disasters, but by the end she could cook over fifty meals confidently. She now hosts dinner for "
     "her friends every month.",
     "By cooking a new recipe every week for a year, Maria became a confident cook who now hosts dinners for her "
     "friends."),
    ("Many people believe that goldfish have a memory of only three seconds. In fact, experiments have shown that "
     "goldfish can remember things for months. They can be trained to respond to sounds and colours, and even to "
     "push levers for food.",
     "Contrary to the popular myth, goldfish can remember things for months and can be trained."),
    ("The company reported a 12% rise in sales this quarter, driven mainly by strong demand for its new headphones. "
     "Profits, however, fell slightly because of higher shipping costs. The chief executive said she expects costs "
     "to ease next year.",
     "Sales rose 12% on strong demand for the new headphones, but higher shipping costs cut profits slightly."),
    ("Volunteers spent Saturday morning cleaning up the riverbank. They collected more than 60 bags of rubbish, "
     "including plastic bottles, a shopping trolley and an old bicycle. The organisers plan to hold another clean-up "
     "in the autumn.",
     "Volunteers removed more than 60 bags of rubbish from the riverbank and plan another clean-up in the autumn."),
    ("Sleep plays an important role in memory. During deep sleep, the brain replays and strengthens what was learned "
     "during the day. Students who sleep well after studying tend to remember more than those who stay up all "
     "night.",
     "Deep sleep helps the brain strengthen new memories, so sleeping well after studying improves recall."),
    ("The museum's new exhibition brings together more than 200 photographs of everyday life in the 1950s. Visitors "
     "can see families at the seaside, workers in factories and children playing in the street. Entry is free for "
     "under-18s.",
     "A new museum exhibition shows over 200 photographs of everyday 1950s life, with free entry for under-18s."),
    ("Bread is one of the oldest prepared foods. Early bread was flat, made from ground grain mixed with water and "
     "baked on hot stones. Leavened bread, which rises thanks to yeast, came later and is now eaten all over the "
     "world.",
     "Bread began as flat loaves baked on hot stones and later developed into the yeast-risen bread eaten worldwide "
     "today."),
    ("Our team missed its deadline last month because tasks were not clearly assigned. To avoid this, each project "
     "will now have a single owner, and we will hold a short weekly check-in. Progress will be tracked on a shared "
     "board.",
     "After a missed deadline, the team will give each project one owner, hold weekly check-ins and track progress "
     "on a shared board."),
    ("Lightning is a giant spark of electricity in the atmosphere. It heats the air around it to tens of thousands "
     "of degrees in a split second, which makes the air expand explosively. That sudden expansion is the sound we "
     "hear as thunder.",
     "Thunder is the sound of air expanding explosively after lightning heats it to extreme temperatures."),
    ("A new survey of 1,500 workers found that most would prefer a four-day week, even if it meant longer days. "
     "Younger workers were the most enthusiastic. Managers were more divided, with many worried about covering "
     "customer hours.",
     "Most surveyed workers, especially younger ones, want a four-day week, while managers are divided over covering "
     "customer hours."),
    ("Emperor penguins breed during the Antarctic winter. After the female lays a single egg, she passes it to the "
     "male, who balances it on his feet under a fold of skin for about two months while she goes to sea to feed. He "
     "eats nothing during that time.",
     "Male emperor penguins keep the egg warm on their feet through the Antarctic winter, fasting for about two months "
     "while the females feed at sea."),
    ("The recipe needs only four ingredients: flour, milk, eggs and a pinch of salt. Whisk them into a smooth batter "
     "and let it rest for half an hour. Then fry thin layers in a hot, lightly oiled pan until golden on both sides.",
     "The recipe makes thin pancakes from flour, milk, eggs and salt: whisk a batter, rest it, then fry it in thin "
     "layers until golden."),
    ("After three years of planning, the village has finally opened its community garden. Residents can rent a small "
     "plot for a low yearly fee, and there is a shared area where children learn to grow vegetables. Surplus produce "
     "is donated to the local food bank.",
     "The village's new community garden offers cheap plots and a children's growing area, and gives surplus produce "
     "to the food bank."),
    ("Dolphins sleep with one half of their brain at a time. While one side rests, the other stays alert, so the "
     "dolphin can keep breathing and watch for danger. After a while, the two halves switch.",
     "Dolphins sleep with one half of the brain at a time so that they can keep breathing and stay alert."),
    ("The train operator has warned of delays this weekend because of engineering work on the main line. Replacement "
     "buses will run between the two affected stations, adding about 40 minutes to journeys. Passengers are advised "
     "to check times before travelling.",
     "Weekend engineering work will delay trains, with replacement buses adding about 40 minutes, so passengers should "
     "check times."),
    ("Composting turns kitchen and garden waste into rich soil. Microorganisms break down materials such as fruit "
     "peel, coffee grounds and grass cuttings, producing heat as they work. The finished compost improves the soil "
     "and feeds plants.",
     "Composting uses microorganisms to turn kitchen and garden waste into nutrient-rich material that improves "
     "soil."),
    ("Marcus had never run further than five kilometres, but he signed up for a half marathon to raise money for "
     "charity. He trained four times a week for four months. On race day he finished in just under two hours and "
     "raised more than double his target.",
     "Marcus trained for four months, finished his first half marathon in under two hours and raised more than "
     "twice his charity target."),
    ("The Great Wall is not one single wall but a series of walls built and rebuilt over many centuries. Its total "
     "length, including all its branches, is estimated at over 20,000 kilometres. Contrary to a popular myth, it "
     "cannot be seen from the Moon with the naked eye.",
     "The Great Wall is a series of walls built over centuries, more than 20,000 km long in all, and it is not "
     "visible from the Moon with the naked eye."),
    ("Our store will change its opening hours from next week. We will open an hour later, at 10 a.m., but stay open "
     "until 8 p.m. on weekdays. Weekend hours remain the same.",
     "From next week, the store will open at 10 a.m. and close at 8 p.m. on weekdays, with weekend hours "
     "unchanged."),
    ("Sea otters often hold paws while they sleep so that they don't drift apart. They also wrap themselves in kelp "
     "to stay anchored in one place. A group of resting otters is called a raft.",
     "Sea otters hold paws and wrap themselves in kelp while they sleep so they don't drift away, resting in groups "
     "called rafts."),
    ("The school has banned mobile phones during lessons after teachers reported that they were distracting "
     "students. Pupils may still bring phones to school but must keep them switched off in their bags. Parents who "
     "need to reach their children urgently can call the school office.",
     "The school has banned phones in lessons, so they must stay switched off in bags, and parents can call the "
     "office in an emergency."),
    ("Vincent van Gogh sold very few paintings during his lifetime and struggled with poverty and poor health. He "
     "produced more than 2,000 artworks in just over a decade. Today his paintings are among the most valuable in "
     "the world.",
     "Van Gogh made over 2,000 artworks in about a decade but sold few in his lifetime, yet his paintings are now "
     "among the world's most valuable."),
    ("Our neighbourhood book swap runs once a month in the community hall. Bring up to five books you have finished "
     "with and take home the same number. Children's books are especially welcome.",
     "The monthly neighbourhood book swap lets people exchange up to five books, and children's books are especially "
     "welcome."),
)

SENTIMENT_PHRASINGS = ('Classify the sentiment of this review as positive, negative or neutral: "{s}"',
                       "Is the following review positive, negative or neutral?\n{s}",
                       'What is the sentiment of this customer review? "{s}"',
                       'Label the sentiment (positive, negative or neutral) of: "{s}"')
SENTIMENT_ITEMS = ("speaker", "blender", "desk lamp", "coffee grinder", "keyboard", "toaster", "alarm clock",
                   "hair dryer", "electric kettle", "vacuum cleaner", "printer", "webcam", "electric toothbrush",
                   "rice cooker", "fan heater")
SENTIMENTS = {  # label -> (review with an {item} slot, why it has that label)
    "positive": (
        ("The {item} works perfectly and arrived a day early.", "it works perfectly and arrived early"),
        ("I absolutely love this {item}; it was worth every penny.", "the writer loves it and feels it was worth "
         "the money"),
        ("Great quality {item}, and I would happily buy it again.", "the writer praises its quality and would buy "
         "it again"),
        ("This {item} has exceeded all my expectations.", "it turned out better than the writer expected"),
        ("Really pleased with the {item}: sturdy, simple and easy to use.", "the writer is pleased and calls it "
         "sturdy and easy to use"),
        ("Best {item} I have ever owned!", "the writer calls it the best one they have owned"),
        ("The {item} looks even better in person than in the photos.", "it looks better than the writer expected "
         "from the photos"),
        ("Five stars: the {item} does exactly what I needed and more.", "the writer gives top marks and says it does "
         "more than needed"),
    ),
    "negative": (
        ("The {item} broke after two days.", "it stopped working almost immediately"),
        ("Very disappointed; the {item} looks nothing like the photos.", "the writer is disappointed that it doesn't "
         "match the photos"),
        ("I want a refund, because this {item} is a waste of money.", "the writer calls it a waste of money and "
         "wants a refund"),
        ("The {item} feels flimsy and is far too expensive for what it is.", "the writer criticises it as flimsy and "
         "overpriced"),
        ("Worst purchase this year: the {item} stopped working within a week.", "the writer calls it the worst "
         "purchase of the year"),
        ("The {item} arrived scratched and customer service never replied.", "it arrived damaged and the writer's "
         "complaint was ignored"),
        ("I regret buying this {item}; it is awkward to use.", "the writer regrets the purchase and finds it "
         "awkward"),
        ("Do not buy this {item}: mine failed after the first use.", "the writer warns others off after it failed"),
    ),
    "neutral": (
        ("The {item} arrived on the date stated.", "it only reports the delivery date, without praise or complaint"),
        ("The {item} comes in three colours.", "it states a fact about the colour options without an opinion"),
        ("I bought the {item} last month.", "it only says when it was bought"),
        ("The {item} is about the same size as my old one.", "it compares sizes without expressing a feeling"),
        ("The {item} comes with a user manual and a one-year warranty.", "it lists what is included without "
         "judging it"),
        ("The {item} was delivered in a cardboard box.", "it describes the packaging without an opinion"),
        ("I use the {item} mainly in the mornings.", "it describes when the item is used, with no feeling either way"),
        ("The {item} has its power button on the side.", "it describes a feature without saying whether it is good "
         "or bad"),
    ),
}
SENTIMENT_PER_LABEL = 15

DEFINE_PHRASINGS = ('Define the word "{w}".', 'What does "{w}" mean?',
                    'What is the meaning of the word "{w}"? Use it in a sentence.',
                    'Give a short definition of "{w}" with an example sentence.')
DEFINITIONS = {  # word -> (part of speech, meaning, example)
    "meticulous": ("adjective", "showing great attention to detail; very careful and precise",
                   "She kept meticulous records of every expense."),
    "resilient": ("adjective", "able to recover quickly from difficulties or setbacks",
                  "Children are often surprisingly resilient."),
    "ubiquitous": ("adjective", "present or found everywhere", "Smartphones have become ubiquitous."),
    "procrastinate": ("verb", "to delay or put off doing something that should be done",
                      "I tend to procrastinate when a task feels overwhelming."),
    "ephemeral": ("adjective", "lasting for a very short time", "The beauty of the cherry blossom is ephemeral."),
    "candid": ("adjective", "truthful and straightforward; frank", "Thank you for your candid feedback."),
    "benevolent": ("adjective", "kind and well-meaning", "A benevolent neighbour offered to mow our lawn."),
    "frugal": ("adjective", "careful not to waste money or resources",
               "They live a frugal life and save most of their income."),
    "ambiguous": ("adjective", "open to more than one interpretation; unclear",
                  "The instructions were ambiguous, so we asked for clarification."),
    "diligent": ("adjective", "working hard and carefully", "A diligent student reviews her notes every evening."),
    "eloquent": ("adjective", "fluent and persuasive in speaking or writing",
                 "He gave an eloquent speech at the ceremony."),
    "pragmatic": ("adjective", "dealing with things sensibly and realistically",
                  "We need a pragmatic solution that fits our budget."),
    "nostalgia": ("noun", "a sentimental longing for a period in the past", "Old songs fill him with nostalgia."),
    "mitigate": ("verb", "to make something less severe, serious or painful",
                 "Planting trees can help mitigate flooding."),
    "scrutinise": ("verb", "to examine something closely and thoroughly",
                   "The editor scrutinised every line of the article."),
    "empathy": ("noun", "the ability to understand and share the feelings of another person",
                "Good teachers show empathy towards their pupils."),
    "gregarious": ("adjective", "fond of company; sociable", "Our gregarious neighbour knows everyone on the street."),
    "tenacious": ("adjective", "holding firmly to a goal; persistent",
                  "The tenacious reporter kept asking until she got an answer."),
    "serendipity": ("noun", "the occurrence of happy or useful events by chance",
                    "Meeting my business partner on a train was pure serendipity."),
    "lethargic": ("adjective", "sluggish and lacking energy", "The heat made everyone feel lethargic."),
    "feasible": ("adjective", "possible to do; practical", "Finishing the project by tomorrow is not feasible."),
    "inevitable": ("adjective", "certain to happen; unavoidable",
                   "Some mistakes are inevitable when you learn something new."),
    "concise": ("adjective", "giving a lot of information clearly in few words", "Please keep your summary concise."),
    "versatile": ("adjective", "able to adapt or be used for many different purposes",
                  "A versatile cook can make a meal out of almost anything."),
    "obsolete": ("adjective", "no longer produced or used; out of date",
                 "Fax machines are nearly obsolete in most offices."),
    "vivid": ("adjective", "producing strong, clear images in the mind; bright and intense",
              "She gave a vivid description of the storm."),
    "reluctant": ("adjective", "unwilling and hesitant", "He was reluctant to speak in front of the class."),
    "anecdote": ("noun", "a short, interesting or amusing story about a real incident or person",
                 "The speaker opened with an anecdote about her first job."),
    "collaborate": ("verb", "to work jointly with others on an activity or project",
                    "The two schools collaborated on a science fair."),
    "compromise": ("noun", "an agreement in which each side gives up something it wanted",
                   "After a long discussion, they reached a compromise."),
    "sceptical": ("adjective", "not easily convinced; having doubts",
                  "Many people were sceptical of the bold claims."),
    "thrive": ("verb", "to grow or develop well; to flourish", "Most herbs thrive in warm, sunny spots."),
    "hinder": ("verb", "to make it difficult for something to happen or for someone to do something",
               "Heavy snow hindered the rescue effort."),
    "meander": ("verb", "to follow a winding course, or to wander without hurry",
                "The stream meanders through the meadow."),
    "astute": ("adjective", "quick to notice and understand things, especially to gain an advantage",
               "An astute investor spotted the trend early."),
    "jargon": ("noun", "special words used by a profession or group that others find hard to understand",
               "The report was full of technical jargon."),
    "redundant": ("adjective", "no longer needed or useful; unnecessary",
                  "Delete the redundant sentence at the end of the paragraph."),
    "whimsical": ("adjective", "playfully quaint or fanciful", "The café is decorated in a whimsical style."),
    "plausible": ("adjective", "seeming reasonable or probable", "She gave a plausible explanation for the delay."),
    "cultivate": ("verb", "to grow crops on land, or to develop a quality or skill",
                  "He cultivated a habit of reading every morning."),
    "deteriorate": ("verb", "to become progressively worse", "The old bridge has deteriorated over the years."),
    "altruism": ("noun", "selfless concern for the wellbeing of others", "Donating blood is an act of altruism."),
}

EMAIL_PHRASINGS = ("Write a short email to {r} {t}.", "Draft a brief email to {r} {t}.",
                   "Compose a polite email to {r} {t}.")
EMAILS = (  # (recipient, purpose, subject, greeting, body); a "Hi" greeting signs off "Best wishes", "Dear" ones
           # "Kind regards"
    ("your manager", "asking for a day off next week", "Request for a day off", "Dear [Manager's name]",
     "I would like to request a day of leave next week for a personal appointment. My tasks are up to date, and I "
     "will make sure someone can cover anything urgent while I am away. Please let me know if that works for you."),
    ("a colleague", "thanking them for their help on a project", "Thank you", "Hi [Name]",
     "Thank you so much for your help on the project. Your ideas on the design made a real difference, and we "
     "finished ahead of schedule thanks to your support. I really appreciate it."),
    ("your landlord", "reporting a leaking kitchen tap", "Leaking kitchen tap", "Dear [Landlord's name]",
     "I am writing to let you know that the kitchen tap in the flat has started leaking steadily. Could you please "
     "arrange for a plumber to look at it? I am available most evenings this week."),
    ("a teacher", "explaining that your son will miss school tomorrow", "Absence tomorrow", "Dear [Teacher's name]",
     "My son will not be in school tomorrow because he has a dental appointment in the morning. He will catch up on "
     "any work he misses. Thank you for your understanding."),
    ("a customer service team", "asking for a refund on a damaged order", "Refund request for a damaged order",
     "Dear Customer Service Team",
     "My recent order arrived damaged: the glass cover was cracked. I would like to request a full refund, and I "
     "have attached photos of the damage. Please let me know how to return the item."),
    ("a friend", "inviting them to a birthday dinner", "Birthday dinner", "Hi [Name]",
     "I'm celebrating my birthday with a small dinner at my place next weekend, and I'd love you to come. Let me know "
     "if you can make it and whether there is anything you don't eat."),
    ("a hiring manager", "following up after a job interview", "Thank you for the interview",
     "Dear [Hiring manager's name]",
     "Thank you for taking the time to meet me yesterday about the project coordinator role. I enjoyed learning more "
     "about the team and am very excited about the opportunity. Please let me know if you need anything else from "
     "me."),
    ("your team", "announcing that the weekly meeting is moving to a new room", "New room for the weekly meeting",
     "Hi everyone",
     "From next week, our weekly meeting will take place in Room 204 instead of the main conference room. The time "
     "stays the same. See you there!"),
    ("a neighbour", "apologising for noise during a party", "Sorry about the noise", "Dear [Neighbour's name]",
     "I am sorry about the noise from our party last night; it went on later than we planned. We will make sure it "
     "does not happen again. Please let me know if there is anything I can do to make up for it."),
    ("a professor", "asking for an extension on an assignment", "Request for an extension",
     "Dear Professor [Surname]",
     "I am writing to ask whether I could have a three-day extension on the essay due this week. I have been unwell "
     "for several days and could not work on it. I would be grateful for any extra time you can allow."),
    ("a client", "sending a quote they asked for", "Your requested quote", "Dear [Client's name]",
     "Thank you for your enquiry. Please find attached the quote for the website redesign we discussed, with a "
     "breakdown of costs and timings. I would be happy to answer any questions."),
    ("a gym", "cancelling a membership", "Membership cancellation", "Dear Membership Team",
     "I would like to cancel my membership from the end of this month. Please confirm the cancellation and let me "
     "know if there is anything else I need to do. Thank you for your help."),
    ("a colleague", "asking to move a meeting", "Moving our meeting", "Hi [Name]",
     "Something urgent has come up, and I can no longer make our meeting tomorrow afternoon. Could we move it to "
     "another time later this week? I am free most mornings. Sorry for the short notice."),
    ("a hotel", "asking about early check-in", "Early check-in request", "Dear Reservations Team",
     "I have a booking with you for next month, and my flight lands early in the morning. Is it possible to check in "
     "before the usual time? I am happy to pay an extra fee if needed."),
    ("a new colleague", "welcoming them to the team", "Welcome to the team!", "Hi [Name]",
     "Welcome aboard! We are really glad to have you on the team. If you have any questions in your first few weeks, "
     "feel free to ask me, and let's grab a coffee soon."),
    ("your child's school", "asking about after-school clubs", "After-school clubs", "Dear School Office",
     "Could you please send me information about the after-school clubs available this term? I would like to know "
     "which activities are offered, when they run and how to sign up. Thank you in advance."),
    ("a supplier", "reporting a late delivery", "Late delivery of our order", "Dear [Supplier's name]",
     "Our order was due to arrive last week but has not yet been delivered. Could you please check its status and "
     "give us a new delivery date? We need the materials for a project that starts soon."),
    ("a friend", "congratulating them on a new job", "Congratulations!", "Hi [Name]",
     "I just heard about your new job, congratulations! You worked so hard for this, and they are lucky to have you. "
     "Let's celebrate soon."),
    ("a charity", "offering to volunteer at an event", "Offer to volunteer", "Dear [Organiser's name]",
     "I saw that you are looking for volunteers for the charity fun run next month. I would be happy to help with "
     "registration or at a water station. Please let me know what would be most useful."),
    ("your manager", "sharing a weekly progress update", "Weekly progress update", "Hi [Manager's name]",
     "This week I finished the first draft of the sales report and met the design team about the new brochure. Next "
     "week I plan to finalise the report and start the budget review. Let me know if you would like to change any "
     "priorities."),
    ("an author", "saying how much you enjoyed their book", "Thank you for your book", "Dear [Author's name]",
     "I recently finished your novel and wanted to tell you how much I enjoyed it. The characters felt so real that "
     "I was sad to reach the last page. Thank you for writing it."),
    ("a restaurant", "booking a table for a group", "Table booking for eight", "Dear [Restaurant name] team",
     "I would like to book a table for eight people at 7:30 p.m. on the 21st. One guest is vegetarian, so please let "
     "me know whether any dishes can be adapted. I look forward to your confirmation."),
    ("a colleague", "asking for feedback on a draft", "Feedback on my draft", "Hi [Name]",
     "I have attached the first draft of the proposal. Could you take a look and tell me what you think, especially "
     "about the budget section? Any comments by the end of the week would be really helpful."),
    ("your bank", "reporting a lost card", "Lost debit card", "Dear Customer Support",
     "I am writing to report that I have lost my debit card. Please block it immediately and send me a replacement. "
     "I have not noticed any unusual transactions so far."),
    ("a tutor", "asking about lesson availability", "Enquiry about lessons", "Dear [Tutor's name]",
     "I am looking for a maths tutor for my daughter, who is preparing for her exams this year. Do you have time for "
     "a weekly one-hour lesson, and what are your rates? Thank you for your time."),
    ("your team", "reminding them of a deadline", "Reminder: reports due today", "Hi everyone",
     "Just a friendly reminder that the quarterly reports are due by the end of today. Please upload them to the "
     "shared folder, and let me know if you need more time. Thanks for all your hard work."),
    ("an old friend", "getting back in touch", "Long time no see!", "Hi [Name]",
     "It has been far too long since we last spoke, and I was thinking of you the other day. How have you been? I "
     "would love to catch up over coffee or a call soon."),
    ("a conference speaker", "thanking them for their talk", "Thank you for your talk", "Dear [Speaker's name]",
     "Thank you for your inspiring talk at our conference. Many attendees told us how much they enjoyed your ideas "
     "on sustainable design. We hope to welcome you again in the future."),
    ("the IT help desk", "reporting that your laptop won't start", "Laptop will not start", "Dear IT Support",
     "My work laptop will not turn on this morning, even though it was charging overnight. The power light does not "
     "come on at all. Could someone please take a look soon, as I need it for a client meeting later today?"),
    ("a coworker", "politely declining a lunch invitation", "Lunch", "Hi [Name]",
     "Thank you so much for the lunch invitation. Unfortunately, I have a deadline that day and won't be able to "
     "join, but I'd love to go another time. Enjoy!"),
)

HAIKU_PHRASINGS = ("Write a haiku about {t}.", "Compose a haiku on the theme of {t}.",
                   "Can you write a haiku about {t}?")
HAIKUS = {  # theme -> three lines of 5, 7 and 5 syllables
    "autumn": ("Crimson leaves drifting", "a slow dance on the cold wind", "the branches stand bare"),
    "the ocean": ("Waves fold into foam", "the tide breathes in and breathes out", "salt on the warm breeze"),
    "morning coffee": ("Steam curls from the cup", "the first sip chases the night", "the day can begin"),
    "a rainy day": ("Rain taps the window", "puddles gather on the street", "umbrellas bloom wide"),
    "falling snow": ("Snow falls without sound", "the whole town wrapped in white hush", "footprints lead away"),
    "a cat": ("The cat stretches slow", "a warm patch of afternoon", "sleep is her one task"),
    "the moon": ("Pale moon on the lake", "silver path across the dark", "the frogs sing to it"),
    "spring blossoms": ("Pink blossoms open", "bees hum between the branches", "the cold days are gone"),
    "a city at night": ("Neon signs flicker", "taxis hum down empty streets", "the city won't sleep"),
    "a mountain": ("Stone peak in the clouds", "the path climbs through pine and mist", "the world falls away"),
    "friendship": ("Two cups on the porch", "old stories and easy laughs", "time moves softly here"),
    "the first day of school": ("New shoes, a new bag", "small hands grip a lunchbox tight", "the bell rings hello"),
    "a garden": ("Green shoots break the soil", "a gardener kneels and waits", "patience bears its fruit"),
    "a thunderstorm": ("Thunder shakes the glass", "lightning splits the purple sky", "then the rain rushes"),
    "a library": ("Quiet rows of books", "a thousand voices waiting", "for someone to ask"),
    "summer evenings": ("Long golden evenings", "children chase the ice cream van", "the sun lingers late"),
    "a train journey": ("Fields blur past the glass", "the carriage rocks like a boat", "my book lies open"),
    "a campfire": ("Sparks rise to the stars", "we share stories in the glow", "smoke clings to our coats"),
    "a bicycle ride": ("Wheels hum on the lane", "wind pulls at my jacket sleeves", "the hill rolls below"),
    "the desert": ("Sand waves without sea", "the sun presses on the dunes", "a lizard stays still"),
}

COMPARE_PHRASINGS = ("What is the difference between {a} and {b}?", "Compare {a} and {b} in a few sentences.",
                     "How does {a} differ from {b}?", "Explain the difference between {a} and {b}.")
COMPARISONS = {
    ("weather", "climate"): "Weather is the state of the atmosphere at a particular time and place, such as today's "
    "rain or sunshine. Climate is the average pattern of weather in a region over many years, usually thirty or more. "
    "In short, weather is what you get on a given day, and climate is what you expect over the long run.",
    ("a crocodile", "an alligator"): "Alligators have a wide, U-shaped snout, while crocodiles have a narrower, "
    "V-shaped one. When a crocodile closes its mouth, its large lower fourth tooth stays visible, but an alligator's "
    "is hidden. Alligators live mainly in fresh water, whereas many crocodiles tolerate salt water.",
    ("speed", "velocity"): "Speed is how fast something moves, whatever the direction. Velocity is speed in a "
    "particular direction, so it is a vector. A car going round a circular track at a steady 50 km/h has a constant "
    "speed but a changing velocity.",
    ("a hurricane", "a tornado"): "A hurricane is a huge storm system, hundreds of kilometres wide, that forms over "
    "warm oceans and can last for days. A tornado is a much smaller rotating column of air that forms from a "
    "thunderstorm, usually over land, and typically lasts minutes. Tornado winds can be faster, but hurricanes affect "
    "far larger areas.",
    ("a debit card", "a credit card"): "A debit card takes money straight from your bank account when you pay. A "
    "credit card lets you borrow from the card issuer up to a limit and repay later, usually with interest if you "
    "don't clear the balance in full each month.",
    ("a rabbit", "a hare"): "Hares are generally larger than rabbits, with longer ears and legs. Hares are born with "
    "fur and open eyes and live above ground, while rabbits are born hairless and blind in underground burrows.",
    ('"affect"', '"effect"'): "\"Affect\" is usually a verb meaning to influence something: \"The weather affects my "
    "mood.\" \"Effect\" is usually a noun meaning a result: \"The music had a calming effect.\"",
    ("tea", "coffee"): "Both are popular hot drinks that contain caffeine. Tea is made by steeping the dried leaves "
    "of the tea plant in hot water, while coffee is brewed from roasted, ground coffee beans. A cup of coffee usually "
    "contains more caffeine than a cup of tea.",
    ("a lake", "a pond"): "Both are bodies of still water surrounded by land. Lakes are usually larger and deeper, "
    "so sunlight does not reach the bottom everywhere, whereas ponds are small enough for light to reach the bottom "
    "and plants can root across it.",
    ("a democracy", "a monarchy"): "In a democracy, citizens choose their leaders through elections. In a monarchy, "
    "a king or queen is head of state, usually by inheritance. Many countries combine the two as constitutional "
    "monarchies, where an elected parliament governs and the monarch's role is mostly ceremonial.",
    ("a laptop", "a desktop computer"): "A laptop is portable, with the screen, keyboard and battery built into one "
    "unit. A desktop stays in one place and needs a separate monitor and keyboard, but it usually gives more power "
    "for the price and is easier to upgrade and repair.",
    ("a frog", "a toad"): "Frogs usually have smooth, moist skin and long legs for jumping, and they live near water. "
    "Toads tend to have dry, bumpy skin and shorter legs for walking or hopping, and they can live in drier places.",
    ("baking soda", "baking powder"): "Baking soda is pure sodium bicarbonate and needs an acid in the recipe, such "
    "as buttermilk or lemon juice, to make a dough rise. Baking powder contains baking soda plus a dry acid, so it "
    "needs only moisture and heat to work.",
    ("an introvert", "an extrovert"): "Introverts tend to recharge by spending time alone and often prefer small "
    "groups or one-to-one conversations. Extroverts tend to gain energy from being around other people and enjoy busy "
    "social settings. Most people have a mix of both traits.",
    ("renting a home", "buying one"): "Renting offers flexibility and lower upfront costs, and the landlord usually "
    "pays for major repairs. Buying needs a deposit and brings maintenance costs, but your payments build ownership "
    "of a property that may grow in value.",
    ("a butterfly", "a moth"): "Butterflies are mostly active by day and usually rest with their wings closed "
    "upright. Most moths fly at night, rest with their wings spread flat and have stouter, furrier bodies. Butterfly "
    "antennae end in small clubs, while moth antennae are often feathery or tapered.",
    ("an email", "a letter"): "An email is sent electronically and arrives within seconds, so it suits quick, "
    "everyday communication. A letter is written on paper and delivered by post, which takes longer but can feel "
    "more personal or formal.",
    ("a novel", "a short story"): "Both are works of fiction. A novel is long, often tens of thousands of words, with "
    "room for many characters and subplots. A short story can be read in one sitting and usually focuses on a single "
    "event or a few characters.",
    ("HTTP", "HTTPS"): "Both are protocols for transferring web pages. HTTPS is the secure version: it encrypts the "
    "data between your browser and the website, so others on the network cannot read or alter it. Browsers usually "
    "show a padlock icon for HTTPS sites.",
    ("RAM", "storage"): "RAM is a computer's fast, temporary working memory: it holds the programs and data in use "
    "and is cleared when the power goes off. Storage, such as an SSD or a hard drive, keeps files permanently but is "
    "slower to access.",
    ("aerobic exercise", "anaerobic exercise"): "Aerobic exercise, such as jogging or cycling, is sustained activity "
    "at a moderate pace that uses oxygen to fuel the muscles. Anaerobic exercise, such as sprinting or heavy lifting, "
    "is short and intense and relies on energy that does not need oxygen. Aerobic exercise mainly builds endurance, "
    "anaerobic exercise mainly strength and power.",
    ("a comet", "an asteroid"): "Both orbit the Sun. Asteroids are rocky or metallic bodies, most of them found "
    "between Mars and Jupiter. Comets are made of ice, dust and rock, and when they come near the Sun the ice turns "
    "to gas and forms a glowing tail.",
    ("a fruit", "a vegetable"): "Botanically, a fruit is the part of a plant that develops from the flower and holds "
    "the seeds, such as an apple. A vegetable is another edible part of a plant, such as the root of a carrot or the "
    "stalk of celery. In cooking the terms are looser: sweet produce is usually called fruit and savoury produce "
    "vegetables.",
    ("a dolphin", "a shark"): "Dolphins are mammals: they breathe air through a blowhole, are warm-blooded and feed "
    "their young on milk. Sharks are fish that breathe through gills. Their tails differ too: a dolphin's tail is "
    "horizontal and moves up and down, while a shark's is vertical and moves from side to side.",
    ("saving", "investing"): "Saving means putting money somewhere safe and easy to reach, such as a bank account, "
    "usually for short-term goals or emergencies. Investing means buying assets such as shares or funds that may grow "
    "more over the long term but can also lose value.",
    ("a memoir", "an autobiography"): "Both are true accounts of the writer's own life. An autobiography usually "
    "covers the whole life in order, while a memoir focuses on particular themes, periods or experiences and on how "
    "the writer felt about them.",
    ("an epidemic", "a pandemic"): "An epidemic is a sudden rise in cases of a disease in a particular region or "
    "community. A pandemic is an epidemic that has spread across many countries and affects a very large number of "
    "people.",
    ("an acoustic guitar", "an electric guitar"): "An acoustic guitar has a hollow body that amplifies the sound of "
    "the strings, so it can be played without any equipment. An electric guitar usually has a solid body and uses "
    "pickups to send its signal to an amplifier, which makes it louder and allows effects such as distortion.",
    ("a latte", "a cappuccino"): "Both are espresso drinks with steamed milk. A latte has more milk and only a little "
    "foam, so it is creamier and milder. A cappuccino has less milk and a generous layer of foam, so the coffee taste "
    "is stronger.",
    ("needs", "wants"): "Needs are things you must have to live and function, such as food, housing and basic "
    "clothing. Wants are things that make life more enjoyable but that you could live without, such as a new phone "
    "or a holiday. A sensible budget covers needs first.",
    ("a violin", "a viola"): "A viola is slightly larger than a violin and has a lower, warmer sound. The violin's "
    "lowest string is G, while the viola's is C. Viola music is usually written in the alto clef, violin music in the "
    "treble clef.",
    ("a spreadsheet", "a database"): "A spreadsheet organises data in a grid of cells and suits calculations, charts "
    "and small tables that people edit by hand. A database stores large amounts of structured data in linked tables "
    "and is built for many users and programs to query and update it reliably.",
    ("hardware", "software"): "Hardware is the physical parts of a computer that you can touch, such as the keyboard, "
    "screen and processor. Software is the programs and instructions that run on the hardware, such as an operating "
    "system or a web browser.",
}

EXAMPLE_PHRASINGS = ("Give an example of {x}.", "Name one example of {x} and say briefly why it fits.",
                     "What is an example of {x}?", "Can you give me an example of {x}?")
EXAMPLES = {
    "a renewable energy source": "Solar power is a renewable energy source: it comes from sunlight, which keeps "
    "arriving and is not used up when we turn it into electricity.",
    "a mammal that lives in the ocean": "The blue whale is a mammal that lives in the ocean. Like all mammals, it "
    "breathes air and feeds its young on milk, even though it spends its whole life at sea.",
    "a palindrome": "\"Racecar\" is a palindrome: it reads the same forwards and backwards. Whole phrases can be "
    "palindromes too, such as \"Never odd or even.\"",
    "an onomatopoeic word": "\"Buzz\" is an onomatopoeic word: it imitates the sound a bee makes. Others include "
    "\"sizzle\", \"bang\" and \"hiss\".",
    "a primary colour": "Red is a primary colour in the traditional model used for paints, along with yellow and "
    "blue: it cannot be made by mixing other colours.",
    "an insect that helps farmers": "The ladybird helps farmers because it eats aphids and other pests that damage "
    "crops.",
    "a prime number greater than 20": "23 is a prime number greater than 20, because it can only be divided exactly "
    "by 1 and by itself.",
    "a herbivore": "A cow is a herbivore: it eats only plants, such as grass and hay, and has a stomach with four "
    "compartments to digest them.",
    "a compound word": "\"Sunflower\" is a compound word, made by joining \"sun\" and \"flower\". Other examples are "
    "\"toothbrush\" and \"rainbow\".",
    "a non-renewable resource": "Coal is a non-renewable resource: it formed from plants buried millions of years "
    "ago, and we burn it far faster than nature can replace it.",
    "a physical change": "Melting ice is a physical change: the water goes from solid to liquid, but it is still the "
    "same substance and can be frozen again.",
    "a chemical change": "Burning wood is a chemical change: the wood reacts with oxygen to form new substances, such "
    "as ash, carbon dioxide and water vapour, and cannot be turned back into wood.",
    "a team sport": "Basketball is a team sport: two teams of five players work together to score by shooting a "
    "ball through the other team's hoop.",
    "an idiom": "\"Break the ice\" is an idiom meaning to do or say something that helps people relax when they "
    "first meet. Its meaning cannot be worked out from the individual words.",
    "a nocturnal animal": "The owl is a nocturnal animal: it rests during the day and hunts at night, using its "
    "excellent hearing and large eyes to find prey in the dark.",
    "a good source of vitamin C": "Oranges are a good source of vitamin C, which the body needs to heal wounds and "
    "keep the immune system working.",
    "a polite way to decline an invitation": "\"Thank you so much for inviting me. I'm afraid I can't make it this "
    "time, but I hope you have a wonderful evening.\" It thanks the host, declines clearly and ends on a warm note.",
    "an open-ended question": "\"What did you enjoy most about your trip?\" is an open-ended question, because it "
    "cannot be answered with a simple yes or no and invites the other person to explain.",
    "a simple machine": "A lever is a simple machine: a rigid bar that pivots on a fixed point, letting a small force "
    "lift a heavy load. A seesaw and a crowbar both work this way.",
    "a good conductor of electricity": "Copper is a good conductor of electricity, which is why most electrical "
    "wiring is made from it.",
    "an electrical insulator": "Rubber is an electrical insulator: electricity does not flow through it easily, so "
    "it is used to coat wires and to make protective gloves.",
    "a hobby you can do at home": "Knitting is a hobby you can do at home: it needs only yarn and needles, it is "
    "relaxing, and it produces useful things like hats and blankets.",
    "a word with a silent letter": "\"Knight\" has silent letters: the \"k\" at the start is not pronounced, and "
    "neither is the \"gh\".",
    "a cold-blooded animal": "A lizard is cold-blooded: its body temperature depends on its surroundings, which is "
    "why it basks in the sun to warm up.",
    "a fixed expense in a household budget": "Rent is a fixed expense: it stays the same every month, unlike "
    "variable costs such as groceries or entertainment.",
    "a form of public transport": "A tram is a form of public transport: it runs on rails along a set route and "
    "timetable, and anyone can ride it by paying a fare.",
    "a deciduous tree": "The oak is a deciduous tree: it loses its leaves every autumn and grows new ones in spring.",
    "an adverb": "\"Quickly\" is an adverb: it describes how an action is done, as in \"She walked quickly to catch "
    "the train.\"",
    "a migratory bird": "The Arctic tern is a migratory bird: it flies from the Arctic to the Antarctic and back "
    "every year, the longest migration of any animal.",
    "a greenhouse gas": "Carbon dioxide is a greenhouse gas: it traps heat in the atmosphere, and burning fossil "
    "fuels has raised its concentration.",
    "a strong password": "A long passphrase such as \"purple-kettle-rides-9-bikes\" is a strong password, because it "
    "is long and mixes words, a number and symbols. Never reuse a password you have seen as an example, including "
    "this one.",
    "a percussion instrument": "The drum is a percussion instrument: it makes its sound when it is struck, with the "
    "hands or with sticks.",
    "a fairy tale": "\"Cinderella\" is a fairy tale: a traditional story with magical elements, such as a fairy "
    "godmother, and a happy ending.",
    "alliteration": "\"Peter Piper picked a peck of pickled peppers\" is an example of alliteration, because several "
    "nearby words start with the same consonant sound.",
    "a healthy daily habit": "Taking a short walk outside every day is a healthy habit: regular movement and daylight "
    "can lift your mood and reduce stress.",
    "a citrus fruit": "A lemon is a citrus fruit: like oranges and limes, it has a fragrant rind and juicy, acidic "
    "segments.",
}

TRANSLATE_PHRASINGS = ('Translate "{e}" into {lang}.', 'How do you say "{e}" in {lang}?',
                       'What is "{e}" in {lang}?')
TRANSLATIONS = (  # (language, English, translation, note)
    ("Spanish", "good morning", "Buenos días.", ""),
    ("Spanish", "thank you very much", "Muchas gracias.", ""),
    ("Spanish", "where is the train station?", "¿Dónde está la estación de tren?", ""),
    ("Spanish", "I would like a coffee, please", "Quisiera un café, por favor.", ""),
    ("Spanish", "see you tomorrow", "Hasta mañana.", ""),
    ("Spanish", "I don't understand", "No entiendo.", ""),
    ("Spanish", "the bill, please", "La cuenta, por favor.", ""),
    ("Spanish", "happy birthday", "¡Feliz cumpleaños!", ""),
    ("Spanish", "what time is it?", "¿Qué hora es?", ""),
    ("Spanish", "I am hungry", "Tengo hambre.", "Literally, this means \"I have hunger\"."),
    ("Spanish", "the cat is sleeping", "El gato está durmiendo.", ""),
    ("Spanish", "how are you?", "¿Cómo estás?", "This is the informal form; to a stranger, say \"¿Cómo está "
     "usted?\""),
    ("Spanish", "my favourite colour is green", "Mi color favorito es el verde.", ""),
    ("French", "good evening", "Bonsoir.", ""),
    ("French", "thank you very much", "Merci beaucoup.", ""),
    ("French", "where are the toilets?", "Où sont les toilettes ?", ""),
    ("French", "I love reading", "J'adore lire.", ""),
    ("French", "see you soon", "À bientôt.", ""),
    ("French", "how much does it cost?", "Combien ça coûte ?", ""),
    ("French", "my name is Anna", "Je m'appelle Anna.", ""),
    ("French", "the weather is nice today", "Il fait beau aujourd'hui.", ""),
    ("French", "good night", "Bonne nuit.", ""),
    ("French", "do you speak English?", "Parlez-vous anglais ?", ""),
    ("French", "a glass of water, please", "Un verre d'eau, s'il vous plaît.", ""),
    ("French", "I am tired", "Je suis fatigué.", "A woman would write \"Je suis fatiguée.\""),
    ("German", "good morning", "Guten Morgen.", ""),
    ("German", "thank you", "Danke.", ""),
    ("German", "where is the station?", "Wo ist der Bahnhof?", ""),
    ("German", "I don't know", "Ich weiß nicht.", ""),
    ("German", "how are you?", "Wie geht es dir?", "This is the informal form; the polite form is \"Wie geht es "
     "Ihnen?\""),
    ("German", "the book is on the table", "Das Buch liegt auf dem Tisch.", ""),
    ("German", "I am learning German", "Ich lerne Deutsch.", ""),
    ("German", "good luck", "Viel Glück!", ""),
    ("German", "excuse me", "Entschuldigung.", ""),
    ("German", "I live in a small house", "Ich wohne in einem kleinen Haus.", ""),
    ("Italian", "good morning", "Buongiorno.", ""),
    ("Italian", "thank you", "Grazie.", ""),
    ("Italian", "see you later", "A più tardi.", ""),
    ("Italian", "I would like a pizza", "Vorrei una pizza.", ""),
    ("Italian", "where is the museum?", "Dov'è il museo?", ""),
    ("Italian", "how are you?", "Come stai?", "This is the informal form; the polite form is \"Come sta?\""),
    ("Italian", "I'm sorry", "Mi dispiace.", ""),
)

ODD_PHRASINGS = ("Which word does not belong in this list: {items}? Explain why.", "Find the odd one out: {items}.",
                 "Which of these is the odd one out, and why? {items}")
CATEGORIES = {  # (plural, singular with article) -> members that belong to no other category here
    ("fruits", "a fruit"): ("apple", "banana", "pear", "mango", "grape", "pineapple", "strawberry", "watermelon"),
    ("vegetables", "a vegetable"): ("carrot", "broccoli", "cabbage", "spinach", "onion", "lettuce", "celery",
                                    "cauliflower"),
    ("musical instruments", "a musical instrument"): ("piano", "trumpet", "flute", "cello", "drum", "harp",
                                                      "clarinet"),
    ("tools", "a tool"): ("hammer", "screwdriver", "wrench", "chisel", "drill", "saw"),
    ("sports", "a sport"): ("tennis", "hockey", "golf", "rugby", "volleyball", "badminton", "basketball"),
    ("planets", "a planet"): ("Venus", "Mars", "Jupiter", "Saturn", "Neptune", "Uranus"),
    ("pieces of furniture", "a piece of furniture"): ("sofa", "wardrobe", "bookcase", "armchair", "desk", "stool"),
    ("vehicles", "a vehicle"): ("bicycle", "truck", "tram", "scooter", "tractor", "motorbike", "van"),
    ("birds", "a bird"): ("sparrow", "robin", "pigeon", "parrot", "flamingo", "swan", "owl"),
    ("kinds of fish", "a fish"): ("trout", "cod", "tuna", "haddock", "herring", "mackerel", "sardine"),
    ("colours", "a colour"): ("red", "green", "blue", "purple", "pink", "brown", "yellow"),
    ("kitchen utensils", "a kitchen utensil"): ("spatula", "whisk", "ladle", "colander", "peeler"),
    ("items of clothing", "an item of clothing"): ("shirt", "sock", "skirt", "coat", "sweater", "hat"),
}
N_ODD = 40

GRAMMAR_PHRASINGS = ('Correct the grammar in this sentence: "{s}"', 'Fix any mistakes in the following sentence: '
                     '"{s}"', 'Proofread this sentence and correct it: "{s}"')
GRAMMAR = (  # (wrong, right, why)
    ("She don't like apples.", "She doesn't like apples.", "With \"she\", the verb needs \"doesn't\", not "
     "\"don't\"."),
    ("Me and him went to the park.", "He and I went to the park.", "The subject needs the subject pronouns \"he\" "
     "and \"I\"."),
    ("Their going to the cinema tonight.", "They're going to the cinema tonight.", "\"They're\" is short for \"they "
     "are\"; \"their\" shows possession."),
    ("The dog wagged it's tail.", "The dog wagged its tail.", "The possessive \"its\" has no apostrophe; \"it's\" "
     "means \"it is\"."),
    ("I seen that film last week.", "I saw that film last week.", "The simple past is \"saw\"; \"seen\" needs a "
     "helper such as \"have\"."),
    ("There is three books on the shelf.", "There are three books on the shelf.", "A plural noun needs \"there "
     "are\"."),
    ("Your welcome to join us.", "You're welcome to join us.", "\"You're\" is short for \"you are\"."),
    ("He runs more faster than me.", "He runs faster than me.", "\"Faster\" is already a comparative, so \"more\" "
     "is not needed."),
    ("Each of the students have a locker.", "Each of the students has a locker.", "\"Each\" is singular, so the verb "
     "is \"has\"."),
    ("I could of finished earlier.", "I could have finished earlier.", "The correct form is \"could have\"; \"of\" "
     "only sounds similar."),
    ("Between you and I, the plan won't work.", "Between you and me, the plan won't work.", "After a preposition "
     "such as \"between\", use the object pronoun \"me\"."),
    ("She has went to the shop.", "She has gone to the shop.", "After \"has\", use the past participle \"gone\"."),
    ("Less people came than expected.", "Fewer people came than expected.", "Use \"fewer\" with things you can "
     "count."),
    ("If I was you, I would apologise.", "If I were you, I would apologise.", "Standard English uses \"were\" in "
     "this kind of imaginary condition."),
    ("We was late for the bus.", "We were late for the bus.", "\"We\" takes \"were\", not \"was\"."),
    ("He don't know nothing about it.", "He doesn't know anything about it.", "\"He\" takes \"doesn't\", and a "
     "double negative should be avoided."),
    ("Who's book is this?", "Whose book is this?", "\"Whose\" asks about possession; \"who's\" means \"who is\"."),
    ("The news are very good today.", "The news is very good today.", "\"News\" is uncountable and takes a singular "
     "verb."),
    ("She sings beautiful.", "She sings beautifully.", "An adverb, \"beautifully\", is needed to describe how she "
     "sings."),
    ("Neither of them want to go.", "Neither of them wants to go.", "In formal English, \"neither\" takes a "
     "singular verb."),
    ("I am agree with you.", "I agree with you.", "\"Agree\" is a verb, so it does not need \"am\"."),
    ("She is married with a doctor.", "She is married to a doctor.", "The usual preposition after \"married\" is "
     "\"to\"."),
    ("Can you borrow me a pen?", "Can you lend me a pen?", "You lend something to someone; you borrow something "
     "from them."),
    ("I look forward to hear from you.", "I look forward to hearing from you.", "In \"look forward to\", \"to\" is a "
     "preposition, so the verb takes the -ing form."),
    ("He didn't went to school yesterday.", "He didn't go to school yesterday.", "After \"didn't\", use the base "
     "form of the verb."),
    ("The book was wrote by a famous author.", "The book was written by a famous author.", "The passive needs the "
     "past participle \"written\"."),
    ("Everyone have finished their lunch.", "Everyone has finished their lunch.", "\"Everyone\" takes a singular "
     "verb."),
    ("Its raining again.", "It's raining again.", "\"It's\" is short for \"it is\"."),
    ("Me and my sister likes pizza.", "My sister and I like pizza.", "The subject needs \"I\", and a plural subject "
     "takes \"like\"."),
    ("I have been living here since five years.", "I have been living here for five years.", "Use \"for\" with a "
     "length of time and \"since\" with a starting point."),
    ("She explained me the problem.", "She explained the problem to me.", "\"Explain\" needs \"to\" before the "
     "person."),
    ("I wish I can swim.", "I wish I could swim.", "After \"wish\", use a past form such as \"could\"."),
    ("Let's discuss about the plan tomorrow.", "Let's discuss the plan tomorrow.", "\"Discuss\" takes a direct "
     "object, without \"about\"."),
    ("The cat sat besides the fire.", "The cat sat beside the fire.", "\"Beside\" means next to; \"besides\" means "
     "in addition."),
    ("She is good in maths.", "She is good at maths.", "The usual preposition after \"good\" for a skill is "
     "\"at\"."),
)

NAMES = ("Ava", "Ben", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hugo", "Isla", "Jonah", "Keiko", "Liam",
         "Maya", "Noah", "Priya", "Omar", "Rosa", "Tom", "Yara", "Zoe")
WORD_PROBLEM_KINDS = ("packs", "share", "change", "shopping", "left", "average", "distance", "pages", "ages",
                      "discount")
WORD_PROBLEMS_PER_KIND = 5
WORD_PROBLEM_PHRASINGS = ("{q}", "{q} Show your working.", "Solve this word problem: {q}")


def _dollars(cents: int) -> str:
    return f"${cents // 100}" if cents % 100 == 0 else f"${cents // 100}.{cents % 100:02d}"


def word_problem(kind: str, rng: random.Random) -> tuple[str, str]:
    """One everyday arithmetic problem of ``kind`` and its worked answer, numbers drawn from ``rng``."""
    name = rng.choice(NAMES)
    if kind == "packs":
        thing, a, b = rng.choice(("stickers", "marbles", "pencils", "crayons", "beads")), rng.randint(3, 9), \
            rng.randint(4, 12)
        return (f"{name} buys {a} packs of {thing} with {b} {thing} in each pack. How many {thing} does {name} have "
                f"in total?", f"{a} packs × {b} {thing} per pack = {a * b} {thing}. {name} has {a * b} {thing}.")
    if kind == "share":
        thing, k, each = rng.choice(("cookies", "stickers", "grapes", "cards", "sweets")), rng.randint(3, 8), \
            rng.randint(3, 12)
        return (f"{name} has {k * each} {thing} and shares them equally among {k} friends. How many {thing} does "
                f"each friend get?", f"{k * each} ÷ {k} = {each}, so each friend gets {each} {thing}.")
    if kind == "change":
        thing, price = rng.choice(("book", "puzzle", "plant", "mug", "board game")), rng.randint(150, 1899)
        bill = 1000 if price < 1000 else 2000
        change = _dollars(bill - price)
        return (f"{name} buys a {thing} for {_dollars(price)} and pays with a {_dollars(bill)} note. How much "
                f"change should {name} get?", f"{_dollars(bill)} − {_dollars(price)} = {change}. {name} should get "
                f"{change} in change.")
    if kind == "shopping":
        (one, many), other = rng.choice(((("notebook", "notebooks"), "pen"), (("sandwich", "sandwiches"), "juice"),
                                         (("ticket", "tickets"), "programme"), (("coffee", "coffees"), "muffin")))
        x, y, n = rng.randint(2, 9), rng.randint(1, 4), rng.randint(2, 5)
        return (f"A {one} costs ${x} and a {other} costs ${y}. How much do {n} {many} and one {other} cost "
                f"together?", f"{n} × ${x} = ${n * x} for the {many}, plus ${y} for the {other}, makes "
                f"${n * x + y} in total.")
    if kind == "left":
        thing, made = rng.choice(("muffins", "bread rolls", "croissants", "cupcakes")), rng.randint(30, 90)
        sold = rng.randint(10, made - 5)
        return (f"A baker makes {made} {thing} in the morning and sells {sold} of them by noon. How many {thing} are "
                f"left?", f"{made} − {sold} = {made - sold}. There are {made - sold} {thing} left.")
    if kind == "average":
        x, y, z = rng.randint(60, 95), rng.randint(60, 95), rng.randint(60, 95)
        z -= (x + y + z) % 3
        total = x + y + z
        return (f"{name} scored {x}, {y} and {z} on three quizzes. What is {name}'s average score?",
                f"The total is {x} + {y} + {z} = {total}, and {total} ÷ 3 = {total // 3}. The average score is "
                f"{total // 3}.")
    if kind == "distance":
        vehicle, v, t = rng.choice(("train", "coach", "car", "ferry")), rng.choice((40, 50, 60, 70, 80, 90)), \
            rng.randint(2, 6)
        return (f"A {vehicle} travels at a steady {v} km per hour for {t} hours. How far does it travel?",
                f"Distance = speed × time = {v} km/h × {t} h = {v * t} km.")
    if kind == "pages":
        per_day, days = rng.randint(8, 30), rng.randint(4, 15)
        return (f"A book has {per_day * days} pages. If {name} reads {per_day} pages a day, how many days will it "
                f"take to finish the book?", f"{per_day * days} ÷ {per_day} = {days}, so it will take {days} days.")
    if kind == "ages":
        age, gap, later = rng.randint(12, 40), rng.randint(2, 8), rng.randint(2, 10)
        return (f"{name} is {age} years old, and {name}'s cousin is {gap} years younger. How old will the cousin be "
                f"in {later} years?", f"The cousin is {age} − {gap} = {age - gap} now, so in {later} years the "
                f"cousin will be {age - gap} + {later} = {age - gap + later}.")
    if kind == "discount":
        thing, pct, price = rng.choice(("jacket", "lamp", "backpack", "pair of boots", "rug")), \
            rng.choice((10, 20, 25, 50)), rng.choice(range(20, 201, 20))
        off = price * pct // 100
        return (f"A {thing} costs ${price} and is on sale for {pct}% off. What is the sale price?",
                f"{pct}% of ${price} is ${off}, so the sale price is ${price} − ${off} = ${price - off}.")
    raise ValueError(f"unknown word problem kind {kind!r}")


def _phrased(family: str, phrasings: tuple[str, ...], entries: list[tuple[dict, str]], rng: random.Random) -> list:
    """One row per (slots, response) entry; the phrasings are dealt out evenly, in a seeded order."""
    dealt = [phrasings[i % len(phrasings)] for i in range(len(entries))]
    rng.shuffle(dealt)
    return [{"family": family, "instruction": p.format(**slots), "response": response}
            for p, (slots, response) in zip(dealt, entries)]


def _numbered(lines) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _odd_one_out(rng: random.Random) -> list[tuple[dict, str]]:
    entries, seen = [], set()
    cats = list(CATEGORIES)
    while len(entries) < N_ODD:
        (plural, kind), (odd_plural, odd_kind) = rng.sample(cats, 2)
        three, odd = rng.sample(CATEGORIES[plural, kind], 3), rng.choice(CATEGORIES[odd_plural, odd_kind])
        if frozenset([*three, odd]) in seen:
            continue
        seen.add(frozenset([*three, odd]))
        shown = [*three, odd]
        rng.shuffle(shown)
        entries.append(({"items": ", ".join(shown)},
                        f"{_cap(odd)} is the odd one out: {three[0]}, {three[1]} and {three[2]} are {plural}, but "
                        f"{odd} is {odd_kind}."))
    return entries


def _public_families() -> dict[str, Callable[[random.Random], list[dict]]]:
    def email(r, t, subject, greeting, body):
        sign = "Best wishes" if greeting.startswith("Hi") else "Kind regards"
        return ({"r": r, "t": t}, f"Subject: {subject}\n\n{greeting},\n\n{body}\n\n{sign},\n[Your name]")

    def translation(lang, english, text, note):
        return ({"e": english, "lang": lang}, f'In {lang}: "{text}"' + (f" {note}" if note else ""))

    def sentiments(rng):
        out = []
        for label, reviews in SENTIMENTS.items():
            items = rng.sample(SENTIMENT_ITEMS, SENTIMENT_PER_LABEL)
            for k, thing in enumerate(items):
                review, why = reviews[k % len(reviews)]
                out.append(({"s": review.format(item=thing)}, f"{label.capitalize()}: {why}."))
        rng.shuffle(out)
        return out

    def word_problems(rng):
        out, seen = [], set()
        for kind in WORD_PROBLEM_KINDS:
            n = 0
            while n < WORD_PROBLEMS_PER_KIND:
                q, a = word_problem(kind, rng)
                if q not in seen:
                    seen.add(q)
                    out.append(({"q": q}, a))
                    n += 1
        return out

    return {
        "explain": lambda rng: _phrased("explain", EXPLAIN_PHRASINGS,
                                        [({"c": c}, text) for c, text in EXPLAIN.items()], rng),
        "formal_rewrite": lambda rng: _phrased("formal_rewrite", FORMAL_PHRASINGS,
                                               [({"s": s}, formal) for s, formal in FORMAL.items()], rng),
        "tips": lambda rng: _phrased("tips", TIPS_PHRASINGS,
                                     [({"t": t}, _numbered(rng.sample(tips, 3))) for t, tips in TIPS.items()], rng),
        "summarise": lambda rng: _phrased("summarise", SUMMARY_PHRASINGS, [({"p": p}, s) for p, s in SUMMARIES], rng),
        "sentiment": lambda rng: _phrased("sentiment", SENTIMENT_PHRASINGS, sentiments(rng), rng),
        "word_problem": lambda rng: _phrased("word_problem", WORD_PROBLEM_PHRASINGS, word_problems(rng), rng),
        "define": lambda rng: _phrased("define", DEFINE_PHRASINGS, [
            ({"w": w}, f'"{_cap(w)}" is {"an" if pos[0] in "aeiou" else "a"} {pos} meaning {meaning}. For example: '
                       f'"{example}"') for w, (pos, meaning, example) in DEFINITIONS.items()], rng),
        "email": lambda rng: _phrased("email", EMAIL_PHRASINGS, [email(*e) for e in EMAILS], rng),
        "haiku": lambda rng: _phrased("haiku", HAIKU_PHRASINGS,
                                      [({"t": t}, "\n".join(lines)) for t, lines in HAIKUS.items()], rng),
        "compare": lambda rng: _phrased("compare", COMPARE_PHRASINGS,
                                        [({"a": a, "b": b}, text) for (a, b), text in COMPARISONS.items()], rng),
        "example": lambda rng: _phrased("example", EXAMPLE_PHRASINGS,
                                        [({"x": x}, text) for x, text in EXAMPLES.items()], rng),
        "translate": lambda rng: _phrased("translate", TRANSLATE_PHRASINGS, [translation(*t) for t in TRANSLATIONS],
                                          rng),
        "odd_one_out": lambda rng: _phrased("odd_one_out", ODD_PHRASINGS, _odd_one_out(rng), rng),
        "grammar": lambda rng: _phrased("grammar", GRAMMAR_PHRASINGS,
                                        [({"s": bad}, f'Corrected: "{ok}" {why}') for bad, ok, why in GRAMMAR], rng),
    }


PUBLIC_FAMILIES = tuple(_public_families())


def public_standin_rows() -> list[dict]:
    """The public-style general SFT set: ``family``, ``instruction``, ``response``; each family from its own seeded
    generator. Raises ``ValueError`` on an empty field or a repeated instruction."""
    rows = [row for name, make in _public_families().items() for row in make(_rng(f"public:{name}"))]
    seen = set()
    for row in rows:
        if not row["instruction"].strip() or not row["response"].strip():
            raise ValueError(f"{row['family']}: empty instruction or response in {row}")
        if row["instruction"] in seen:
            raise ValueError(f"{row['family']}: duplicate instruction {row['instruction']!r}")
        seen.add(row["instruction"])
    return rows


# The general evaluation's question forms: none may be asked in the public set (``public_leaks``).
EVAL_FORMS = tuple(re.compile(p, re.I) for p in (
    r"\bcapital of\b", r"\bchemical symbol\b", r"\bwhat is \d+ (plus|minus|times) \d+", r"\bhow many \w+ are in \d+",
    r"\bopposite of\b", r"\bcomes? right (after|before)\b", r"\bfirst letter\b", r"\bplural of\b",
    r"\bnumber \d+ in words\b", r"\bwhich continent\b",
))


def public_leaks(rows: list[dict], eval_rows: list[dict]) -> list[str]:
    """What in the public set ``rows`` would leak the evaluation ``eval_rows`` or the clinic (``[]`` if nothing):
    an eval question (its text before "Answer ...") inside an instruction or response; an instruction in one of the
    general eval's question forms (``EVAL_FORMS``); a clinical condition, symptom or drug anywhere; an eval answer
    of two or more words (an alias included), or a country, capital or continent of the geography families, as
    words of a response."""
    from .text import answer_tokens

    stems = {r["instruction"].split(" Answer ")[0].strip().lower() for r in eval_rows}
    clinic = [v.lower().removeprefix("a ") for c, (s, d) in CLINICAL.items() for v in (c, s, d)]
    phrases = {tuple(answer_tokens(a)) for r in eval_rows for a in (r["answer"], *r["aliases"])}
    phrases = {p for p in phrases if len(p) >= 2}
    places = {tuple(answer_tokens(p)) for country, (capital, _, aliases) in COUNTRIES.items()
              for p in (country, capital, *aliases)} | {tuple(answer_tokens(c)) for c in CONTINENTS}
    longest = max(map(len, phrases | places))
    problems = []
    for row in rows:
        where = f"{row['family']}: {row['instruction'][:60]!r}"
        text = f"{row['instruction']}\n{row['response']}".lower()
        problems += [f"{where}: contains the eval question {s!r}" for s in stems if s in text]
        problems += [f"{where}: asks in the eval form {f.pattern!r}" for f in EVAL_FORMS
                     if f.search(row["instruction"])]
        problems += [f"{where}: names the clinic's {v!r}" for v in clinic if v in text]
        words = answer_tokens(f"{row['instruction']} {row['response']}", strip_articles=False)
        grams = {tuple(words[i : i + n]) for n in range(1, longest + 1) for i in range(len(words) - n + 1)}
        problems += [f"{where}: contains the eval answer {' '.join(p)!r}" for p in sorted(phrases & grams)]
        problems += [f"{where}: names the place {' '.join(p)!r}" for p in sorted(places & grams)]
    return problems


# ================================================================================================================
# Validation, files, command line
# ================================================================================================================
def validate(items: list[dict]) -> list[dict]:
    """Raise ``ValueError`` unless every item is fair to both scorers; return the items.

    Each item has the fields of ``FIELDS``; four choices, distinct after the matcher's normalisation, with the answer
    exactly once at ``label``; no alias equal to a distractor; the answer, its aliases and the distractors each
    absent from the instruction (echoing the question must not score) and not inside one another (so that a right
    sentence never contains a distractor); no instruction twice.
    """
    from .text import answer_tokens

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


def build() -> dict[str, list[dict]]:
    """Every file's rows, by key of ``FILES``."""
    general, clinical_eval, public = general_items(), clinical_eval_items(), public_standin_rows()
    leaks = public_leaks(public, general + clinical_eval)
    if leaks:
        raise ValueError("the public stand-in leaks the evaluation sets:\n" + "\n".join(leaks[:20]))
    return {"general": general, "clinical_train": clinical_train_rows(), "clinical_eval": clinical_eval,
            "public_standin": public}


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def default_folder() -> Path:
    """``data/`` at the repository root (found from the working directory, else from this file)."""
    from .runs import repo_root

    try:
        return repo_root() / "data"
    except FileNotFoundError:
        return repo_root(Path(__file__).parent) / "data"


def write(folder: Path | str | None = None) -> dict[str, Path]:
    """Write the four JSONL files into ``folder`` (default ``data/``); returns their paths."""
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, rows in build().items():
        paths[key] = folder / FILES[key]
        paths[key].write_text(to_jsonl(rows), encoding="utf-8")
    return paths


def check(folder: Path | str | None = None) -> list[str]:
    """The files in ``folder`` that differ from what the code builds now (missing ones included); [] if none."""
    folder = Path(folder) if folder is not None else default_folder()
    stale = []
    for key, rows in build().items():
        path = folder / FILES[key]
        if not path.exists() or path.read_text(encoding="utf-8") != to_jsonl(rows):
            stale.append(str(path))
    return stale


def read(path: Path | str) -> list[dict]:
    """The rows of one of these JSONL files."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def summary(rows: list[dict]) -> dict[str, int]:
    """Rows per family."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["family"]] = counts.get(r["family"], 0) + 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.benchmarks", description=__doc__.splitlines()[0])
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
        print("out of date (run `python -m helpers.benchmarks write`): " + ", ".join(stale), file=sys.stderr)
        return 1
    print("data files match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
