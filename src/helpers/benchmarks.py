"""Evaluation and domain data for a real model, shipped in ``data/`` and built here from small tables of facts.

Three files, written by :func:`write` (``python -m helpers.benchmarks write [folder]``) and checked against the code
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
import sys
from pathlib import Path
from typing import Callable

from .lab.tasks import CLINICAL

SEED = 2506_09428
PER_FAMILY = 50
FILES = {"general": "general_eval.jsonl", "clinical_train": "clinical_train.jsonl",
         "clinical_eval": "clinical_eval.jsonl"}
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
# Validation, files, command line
# ================================================================================================================
def validate(items: list[dict]) -> list[dict]:
    """Raise ``ValueError`` unless every item is fair to both scorers; return the items.

    Each item has the fields of ``FIELDS``; four choices, distinct after the matcher's normalisation, with the answer
    exactly once at ``label``; no alias equal to a distractor; the answer, its aliases and the distractors each
    absent from the instruction (echoing the question must not score) and not inside one another (so that a right
    sentence never contains a distractor); no instruction twice.
    """
    from .evaluation import answer_tokens

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
    return {"general": general_items(), "clinical_train": clinical_train_rows(),
            "clinical_eval": clinical_eval_items()}


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
    """Write the three JSONL files into ``folder`` (default ``data/``); returns their paths."""
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
