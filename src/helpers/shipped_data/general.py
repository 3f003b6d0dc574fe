"""``general_eval.jsonl``: ten families of short-answer questions about real-world facts and simple skills, each
drawn from its own seeded generator, at most ``PER_FAMILY`` items a family. The facts are in
``tables/general.json``."""

from __future__ import annotations

from typing import Callable

from .common import PER_FAMILY, capped, item, pick, seeded, table, tuples, validate

_T = table("general")

# ================================================================================================================
# Tables of facts (real-world, stable)
# ================================================================================================================
# country -> (capital, continent, aliases of the capital). Chosen so that no capital contains its country's name and
# every country lies on one continent by the usual convention.
COUNTRIES: dict[str, tuple[str, str, tuple[str, ...]]] = tuples(_T["COUNTRIES"])
CONTINENTS: tuple[str, ...] = tuples(_T["CONTINENTS"])

# element -> symbol: two-letter symbols that are not English words ("He", "As", "In", "Be" left out).
ELEMENTS: dict[str, str] = _T["ELEMENTS"]

# (from unit, to unit, factor): "How many <to> are in <n> <from>?"
CONVERSIONS: tuple[tuple[str, str, int], ...] = tuples(_T["CONVERSIONS"])

# word -> (opposite, aliases): pairs with one usual opposite.
OPPOSITES: dict[str, tuple[str, tuple[str, ...]]] = tuples(_T["OPPOSITES"])

MONTHS: tuple[str, ...] = tuples(_T["MONTHS"])
WEEKDAYS: tuple[str, ...] = tuples(_T["WEEKDAYS"])

# Words for "first letter": none starts with a letter that is also a word or a contraction's tail once
# punctuation is dropped (a, i, o, s, t, d, m), so a sentence answer cannot give a letter by accident.
LETTER_WORDS: list[str] = _T["LETTER_WORDS"]
LETTERS: str = _T["LETTERS"]

# singular -> (plural, aliases): irregular nouns and nouns whose plural takes a rule (-es, -ies, -ves, Latin and
# Greek endings), so that a wrong rule gives a plausible wrong form.
PLURALS: dict[str, tuple[str, tuple[str, ...]]] = tuples(_T["PLURALS"])

_ONES: list[str] = _T["ONES"]
_TENS: list[str] = _T["TENS"]  # by tens digit; 0 and 1 unused


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
# Families
# ================================================================================================================
def capital_items() -> list[dict]:
    rng = seeded("capital")
    out = []
    for country, (capital, continent, aliases) in COUNTRIES.items():
        near = [c for k, (c, cont, _) in COUNTRIES.items() if cont == continent and k != country]
        far = [c for k, (c, _, _) in COUNTRIES.items() if k != country]
        pool = near if len(near) >= 3 else far
        q = f"What is the capital of {country}? Answer with the name of the city only."
        out.append(item("capital", q, capital, pick(pool, 3, rng, [capital, *aliases]), rng, aliases))
    return capped(out, rng)


def chemical_symbol_items() -> list[dict]:
    rng = seeded("chemical_symbol")
    out = []
    for name, symbol in ELEMENTS.items():
        alike = [s for n, s in ELEMENTS.items() if n != name and (s[0] == symbol[0] or s[0] == name[0].upper())]
        others = [s for n, s in ELEMENTS.items() if n != name]
        picked = pick(alike, min(2, len(alike)), rng, [symbol]) if alike else []
        picked += pick(others, 3 - len(picked), rng, [symbol, *picked])
        q = f"What is the chemical symbol for {name}? Answer with the symbol only."
        out.append(item("chemical_symbol", q, symbol, picked, rng))
    return capped(out, rng)


_OPS: dict[str, Callable[[int, int], int]] = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b,
                                              "times": lambda a, b: a * b}


def arithmetic_items() -> list[dict]:
    rng = seeded("arithmetic")
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
        distractors = pick([v for v in near if v > 0], 3, rng, [value, a, b])
        q = f"What is {a} {op} {b}? Answer with the number only."
        words = [number_in_words(value)] if value < 1000 else []
        out.append(item("arithmetic", q, str(value), distractors, rng, words))
    return out


def unit_conversion_items() -> list[dict]:
    rng = seeded("unit_conversion")
    out = []
    for big, small, factor in CONVERSIONS:
        for n in range(2, 10):
            value = n * factor
            wrong = [n * f for f in (7, 10, 12, 24, 60, 100, 1000)] + [value * 10]
            q = f"How many {small} are in {n} {big}? Answer with the number only."
            out.append(item("unit_conversion", q, str(value), pick(wrong, 3, rng, [value, n]), rng))
    return capped(out, rng)


def opposite_items() -> list[dict]:
    rng = seeded("opposite")
    out = []
    answers = [o for o, _ in OPPOSITES.values()]
    for word, (opposite, aliases) in OPPOSITES.items():
        q = f'What is the opposite of the word "{word}"? Answer with one word only.'
        out.append(item("opposite", q, opposite, pick(answers, 3, rng, [word, opposite, *aliases]), rng, aliases))
    return capped(out, rng)


def calendar_items() -> list[dict]:
    rng = seeded("calendar")
    out = []
    for names, kind in ((MONTHS, "month"), (WEEKDAYS, "day of the week")):
        for i, name in enumerate(names):
            for step, word in ((1, "after"), (-1, "before")):
                answer = names[(i + step) % len(names)]
                near = [names[(i + k) % len(names)] for k in (-3, -2, 2, 3)]
                thing = "month" if kind == "month" else "day"
                q = f"Which {kind} comes right {word} {name}? Answer with the name of the {thing} only."
                out.append(item("calendar", q, answer, pick(near, 3, rng, [answer, name]), rng))
    return out


def first_letter_items() -> list[dict]:
    rng = seeded("first_letter")
    out = []
    for word in LETTER_WORDS:
        inside = [c for c in word[1:] if c in LETTERS]
        picked = pick(inside, min(2, len(set(inside) - {word[0]})), rng, [word[0]]) if inside else []
        picked += pick(LETTERS, 3 - len(picked), rng, [word[0], *picked])
        q = f'What is the first letter of the word "{word}"? Answer with the letter only.'
        out.append(item("first_letter", q, word[0], picked, rng))
    return capped(out, rng)


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
    rng = seeded("plural")
    out = []
    for word, (plural, aliases) in PLURALS.items():
        q = f'What is the plural of the word "{word}"? Answer with the plural only.'
        wrong = pick(_wrong_plurals(word, plural, aliases)[:4], 3, rng)
        out.append(item("plural", q, plural, wrong, rng, aliases))
    return capped(out, rng)


def number_word_items() -> list[dict]:
    rng = seeded("number_word")
    out = []
    for n in sorted(rng.sample([n for n in range(21, 100) if n % 10], PER_FAMILY)):
        near = [n - 1, n + 1, n + 10, n - 10, int(str(n)[::-1]), n + 2, n - 2]
        near = [m for m in near if 11 <= m <= 99 and m % 10 and m != n]
        q = f"Write the number {n} in words. Answer with the words only."
        wrong = [number_in_words(int(m)) for m in pick(near, 3, rng)]
        out.append(item("number_word", q, number_in_words(n), wrong, rng, [number_in_words(n).replace("-", " ")]))
    return out


def continent_items() -> list[dict]:
    rng = seeded("continent")
    out = []
    for country, (_, continent, _) in COUNTRIES.items():
        if continent == "Oceania":  # "Australia" names both a country and, for many, the continent
            continue
        q = f"On which continent is {country}? Answer with the name of the continent only."
        out.append(item("continent", q, continent, pick(CONTINENTS, 3, rng, [continent]), rng))
    return capped(out, rng)


GENERAL_BUILDERS: dict[str, Callable[[], list[dict]]] = {
    "capital": capital_items, "chemical_symbol": chemical_symbol_items, "arithmetic": arithmetic_items,
    "unit_conversion": unit_conversion_items, "opposite": opposite_items, "calendar": calendar_items,
    "first_letter": first_letter_items, "plural": plural_items, "number_word": number_word_items,
    "continent": continent_items,
}


def general_items() -> list[dict]:
    """The general set: every family of ``GENERAL_BUILDERS`` (at most ``PER_FAMILY`` items each), validated."""
    return validate([row for build in GENERAL_BUILDERS.values() for row in build()])
