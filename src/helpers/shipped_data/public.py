"""``public_standin.jsonl``: a stand-in for a public general SFT set such as Alpaca, for the ``public_mix`` arm where
no hub is reachable. In its first families each row of a hand-written table in ``tables/public.json`` becomes one
instruction, phrased by one of its family's templates, with a short, correct answer; the families after them
(``public_rules``, and more word problems here) draw many instructions from small tables and compute their answers
by rule, so that the set is large enough for every mixed arm (2,000 rows and more); no model is involved.
:func:`public_leaks` checks that it asks nothing of the evaluation sets and names nothing of the clinic or of
Velish."""

from __future__ import annotations

import random
import re
from typing import Callable

from ..lab.tasks import CLINICAL
from ..text import answer_tokens
from . import public_rules as R
from .common import cap, seeded, table, tuples
from .general import CONTINENTS, COUNTRIES, MONTHS, PLURALS, WEEKDAYS
from .velish import velish_words

_T = table("public")

# Families that overlap none of the general evaluation's (no geography, element symbols, bare sums, unit
# conversion, opposites, calendar, letters, plurals or number words) and nothing of the fictional clinic;
# :func:`public_leaks` checks it. Each table row becomes one instruction, phrased by one of its family's templates.
EXPLAIN_PHRASINGS: tuple[str, ...] = tuples(_T["EXPLAIN_PHRASINGS"])
EXPLAIN: dict[str, str] = _T["EXPLAIN"]  # concept -> explanation

FORMAL_PHRASINGS: tuple[str, ...] = tuples(_T["FORMAL_PHRASINGS"])
FORMAL: dict[str, str] = _T["FORMAL"]  # casual sentence -> formal rewrite

TIPS_PHRASINGS: tuple[str, ...] = tuples(_T["TIPS_PHRASINGS"])
TIPS: dict[str, tuple[str, ...]] = tuples(_T["TIPS"])  # topic -> four tips (three are drawn)

SUMMARY_PHRASINGS: tuple[str, ...] = tuples(_T["SUMMARY_PHRASINGS"])
SUMMARIES: tuple[tuple[str, str], ...] = tuples(_T["SUMMARIES"])  # (passage, one-sentence summary)

SENTIMENT_PHRASINGS: tuple[str, ...] = tuples(_T["SENTIMENT_PHRASINGS"])
SENTIMENT_ITEMS: tuple[str, ...] = tuples(_T["SENTIMENT_ITEMS"])
# label -> (review with an {item} slot, why it has that label)
SENTIMENTS: dict[str, tuple[tuple[str, str], ...]] = tuples(_T["SENTIMENTS"])
SENTIMENT_PER_LABEL = 15

DEFINE_PHRASINGS: tuple[str, ...] = tuples(_T["DEFINE_PHRASINGS"])
# word -> (part of speech, meaning, example)
DEFINITIONS: dict[str, tuple[str, str, str]] = tuples(_T["DEFINITIONS"])

EMAIL_PHRASINGS: tuple[str, ...] = tuples(_T["EMAIL_PHRASINGS"])
# (recipient, purpose, subject, greeting, body); a "Hi" greeting signs off "Best wishes", "Dear" ones "Kind regards"
EMAILS: tuple[tuple[str, str, str, str, str], ...] = tuples(_T["EMAILS"])

HAIKU_PHRASINGS: tuple[str, ...] = tuples(_T["HAIKU_PHRASINGS"])
# theme -> three lines of 5, 7 and 5 syllables
HAIKUS: dict[str, tuple[str, str, str]] = tuples(_T["HAIKUS"])

COMPARE_PHRASINGS: tuple[str, ...] = tuples(_T["COMPARE_PHRASINGS"])
# (a, b) -> how they differ; the file lists [a, b, text]
COMPARISONS: dict[tuple[str, str], str] = {(a, b): text for a, b, text in _T["COMPARISONS"]}

EXAMPLE_PHRASINGS: tuple[str, ...] = tuples(_T["EXAMPLE_PHRASINGS"])
EXAMPLES: dict[str, str] = _T["EXAMPLES"]  # what to give an example of -> the example and why it fits

TRANSLATE_PHRASINGS: tuple[str, ...] = tuples(_T["TRANSLATE_PHRASINGS"])
# (language, English, translation, note)
TRANSLATIONS: tuple[tuple[str, str, str, str], ...] = tuples(_T["TRANSLATIONS"])

ODD_PHRASINGS: tuple[str, ...] = tuples(_T["ODD_PHRASINGS"])
# (plural, singular with article) -> members that belong to no other category here; the file lists
# [plural, singular, members]
CATEGORIES: dict[tuple[str, str], tuple[str, ...]] = {(plural, kind): tuple(members)
                                                      for plural, kind, members in _T["CATEGORIES"]}
N_ODD = 40

GRAMMAR_PHRASINGS: tuple[str, ...] = tuples(_T["GRAMMAR_PHRASINGS"])
GRAMMAR: tuple[tuple[str, str, str], ...] = tuples(_T["GRAMMAR"])  # (wrong, right, why)

NAMES: tuple[str, ...] = tuples(_T["NAMES"])  # the people of the word problems
WORD_PROBLEM_KINDS = ("packs", "share", "change", "shopping", "left", "average", "distance", "pages", "ages",
                      "discount")
WORD_PROBLEMS_PER_KIND = 5
WORD_PROBLEM_PHRASINGS: tuple[str, ...] = tuples(_T["WORD_PROBLEM_PHRASINGS"])
# word_problem_more: further problems of each kind above, none asked or answered there, and of these kinds
MORE_WORD_PROBLEM_KINDS = ("savings", "split_bill", "unit_price", "opening_hours", "end_time")
MORE_WORD_PROBLEMS_PER_KIND, NEW_WORD_PROBLEMS_PER_KIND = 10, 16


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
    return _more_word_problem(kind, name, rng)


def _more_word_problem(kind: str, name: str, rng: random.Random) -> tuple[str, str]:
    """The kinds of ``MORE_WORD_PROBLEM_KINDS`` (times on a clock stay within the hour: no unit is converted)."""
    if kind == "savings":
        x, n = rng.randint(3, 25), rng.randint(3, 12)
        return (f"{name} saves ${x} every week. How much will {name} have saved after {n} weeks?",
                f"{n} × ${x} = ${n * x}. {name} will have saved ${n * x}.")
    if kind == "split_bill":
        k, each = rng.randint(2, 6), rng.randint(8, 35)
        return (f"{k} friends share a restaurant bill of ${k * each} equally. How much does each friend pay?",
                f"${k * each} ÷ {k} = ${each}, so each friend pays ${each}.")
    if kind == "unit_price":
        (one, many), k, price = rng.choice((("towel", "towels"), ("mug", "mugs"), ("poster", "posters"),
                                            ("cushion", "cushions"), ("notebook", "notebooks"))), \
            rng.randint(2, 8), rng.randint(2, 15)
        return (f"{name} pays ${k * price} for {k} {many}, all at the same price. How much does one {one} cost?",
                f"${k * price} ÷ {k} = ${price}. One {one} costs ${price}.")
    if kind == "opening_hours":
        place, start, end = rng.choice(("shop", "library", "café", "museum", "swimming pool")), rng.randint(7, 11), \
            rng.randint(15, 21)
        return (f"A {place} opens at {start}:00 and closes at {end}:00 (24-hour clock). For how many hours is it "
                f"open?", f"{end} − {start} = {end - start}. The {place} is open for {end - start} hours.")
    if kind == "end_time":
        event, h, m = rng.choice(("lesson", "meeting", "swimming class", "yoga session", "rehearsal")), \
            rng.randint(8, 20), rng.choice(range(0, 46, 5))
        d = rng.choice(range(10, 60 - m, 5))
        return (f"A {event} starts at {h}:{m:02d} and lasts {d} minutes. At what time does it end?",
                f"{m} + {d} = {m + d}, so it ends at {h}:{m + d:02d}.")
    raise ValueError(f"unknown word problem kind {kind!r}")


def _phrased(family: str, phrasings: tuple[str, ...], entries: list[tuple[dict, str]], rng: random.Random) -> list:
    """One row per (slots, response) entry; the phrasings are dealt out evenly, in a seeded order."""
    dealt = [phrasings[i % len(phrasings)] for i in range(len(entries))]
    rng.shuffle(dealt)
    return [{"family": family, "instruction": p.format(**slots), "response": response}
            for p, (slots, response) in zip(dealt, entries)]


def _numbered(lines) -> str:
    return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))


def _word_problems(kinds: tuple[str, ...], per_kind: int, rng: random.Random, seen: set | None = None) -> list:
    """``per_kind`` problems of each kind, none whose question or answer is in ``seen`` (which gains theirs)."""
    out, seen = [], set() if seen is None else seen
    for kind in kinds:
        n = 0
        while n < per_kind:
            q, a = word_problem(kind, rng)
            if q not in seen and a not in seen:
                seen |= {q, a}
                out.append(({"q": q}, a))
                n += 1
    return out


def _more_word_problems(rng: random.Random) -> list:
    seen: set = set()
    _word_problems(WORD_PROBLEM_KINDS, WORD_PROBLEMS_PER_KIND, seeded("public:word_problem"), seen)
    return (_word_problems(WORD_PROBLEM_KINDS, MORE_WORD_PROBLEMS_PER_KIND, rng, seen)
            + _word_problems(MORE_WORD_PROBLEM_KINDS, NEW_WORD_PROBLEMS_PER_KIND, rng, seen))


def all_categories() -> dict[tuple[str, str], tuple[str, ...]]:
    """``CATEGORIES`` and ``public_rules.MORE_CATEGORIES``: what the list families draw from."""
    return {**CATEGORIES, **R.MORE_CATEGORIES}


def _odd_one_out(rng: random.Random, categories: dict | None = None, n: int = N_ODD,
                 seen: set | None = None) -> list[tuple[dict, str]]:
    """``n`` lists of three members of a category and one of another (default ``CATEGORIES``), none whose four items
    are in ``seen`` (which gains theirs)."""
    categories = CATEGORIES if categories is None else categories
    entries, seen = [], set() if seen is None else seen
    cats = list(categories)
    while len(entries) < n:
        (plural, kind), (odd_plural, odd_kind) = rng.sample(cats, 2)
        three, odd = rng.sample(categories[plural, kind], 3), rng.choice(categories[odd_plural, odd_kind])
        if frozenset([*three, odd]) in seen:
            continue
        seen.add(frozenset([*three, odd]))
        shown = [*three, odd]
        rng.shuffle(shown)
        entries.append(({"items": ", ".join(shown)},
                        f"{cap(odd)} is the odd one out: {three[0]}, {three[1]} and {three[2]} are {plural}, but "
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

    def odd_more(rng):
        seen: set = set()
        _odd_one_out(seeded("public:odd_one_out"), seen=seen)
        return _odd_one_out(rng, all_categories(), R.N_ODD_MORE, seen)

    return {
        "explain": lambda rng: _phrased("explain", EXPLAIN_PHRASINGS,
                                        [({"c": c}, text) for c, text in EXPLAIN.items()], rng),
        "formal_rewrite": lambda rng: _phrased("formal_rewrite", FORMAL_PHRASINGS,
                                               [({"s": s}, formal) for s, formal in FORMAL.items()], rng),
        "tips": lambda rng: _phrased("tips", TIPS_PHRASINGS,
                                     [({"t": t}, _numbered(rng.sample(tips, 3))) for t, tips in TIPS.items()], rng),
        "summarise": lambda rng: _phrased("summarise", SUMMARY_PHRASINGS, [({"p": p}, s) for p, s in SUMMARIES], rng),
        "sentiment": lambda rng: _phrased("sentiment", SENTIMENT_PHRASINGS, sentiments(rng), rng),
        "word_problem": lambda rng: _phrased("word_problem", WORD_PROBLEM_PHRASINGS,
                                              _word_problems(WORD_PROBLEM_KINDS, WORD_PROBLEMS_PER_KIND, rng), rng),
        "define": lambda rng: _phrased("define", DEFINE_PHRASINGS, [
            ({"w": w}, f'"{cap(w)}" is {"an" if pos[0] in "aeiou" else "a"} {pos} meaning {meaning}. For example: '
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
        # made by rule, for size (after the families above, which they leave as they were)
        "list_format": lambda rng: _phrased("list_format", R.LIST_PHRASINGS, R.list_format(rng, all_categories()),
                                            rng),
        "category_pick": lambda rng: _phrased("category_pick", R.PICK_PHRASINGS,
                                              R.category_pick(rng, all_categories()), rng),
        "odd_one_out_more": lambda rng: _phrased("odd_one_out_more", ODD_PHRASINGS, odd_more(rng), rng),
        "title_case": lambda rng: _phrased("title_case", R.TITLE_PHRASINGS, R.title_entries(rng), rng),
        "join_sentences": lambda rng: _phrased("join_sentences", R.JOIN_PHRASINGS, R.join_entries(), rng),
        "past_tense": lambda rng: _phrased("past_tense", R.PAST_PHRASINGS, R.past_entries(rng, NAMES), rng),
        "make_question": lambda rng: _phrased("make_question", R.QUESTION_PHRASINGS, R.question_entries(rng, NAMES),
                                              rng),
        "make_negative": lambda rng: _phrased("make_negative", R.NEGATIVE_PHRASINGS, R.negative_entries(rng, NAMES),
                                              rng),
        "sentiment_more": lambda rng: _phrased("sentiment_more", SENTIMENT_PHRASINGS, R.sentiment_entries(
            rng, {label: SENTIMENTS[label] + R.MORE_SENTIMENTS[label] for label in SENTIMENTS}), rng),
        "word_problem_more": lambda rng: _phrased("word_problem_more", WORD_PROBLEM_PHRASINGS, _more_word_problems(rng),
                                                  rng),
        "sort_numbers": lambda rng: _phrased("sort_numbers", R.SORT_PHRASINGS, R.sort_entries(rng), rng),
    }


PUBLIC_FAMILIES = tuple(_public_families())


def public_standin_rows() -> list[dict]:
    """The public-style general SFT set: ``family``, ``instruction``, ``response``; each family from its own seeded
    generator. Raises ``ValueError`` on an empty field or a repeated instruction."""
    rows = [row for name, make in _public_families().items() for row in make(seeded(f"public:{name}"))]
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
    """What in the public set ``rows`` would leak the evaluation ``eval_rows``, the clinic or Velish (``[]`` if
    nothing):
    an eval question (its text before "Answer ...") inside an instruction or response; an instruction in one of the
    general eval's question forms (``EVAL_FORMS``); a clinical condition, symptom or drug anywhere; a Velish word
    (``velish.velish_words``), an eval answer of two or more words (an alias included), or a country, capital or
    continent of the geography families, as words of a response; a plural that the plural family asks for (its
    ``general.PLURALS``) taught: in a row that speaks of plurals, or in a response to an instruction that holds only
    the singular (a list written out with its nouns made plural); two neighbours of the calendar family's months or
    weekdays (what it asks is which comes right after or before)."""
    stems = {r["instruction"].split(" Answer ")[0].strip().lower() for r in eval_rows}
    clinic = [v.lower().removeprefix("a ") for c, (s, d) in CLINICAL.items() for v in (c, s, d)]
    phrases = {tuple(answer_tokens(a)) for r in eval_rows for a in (r["answer"], *r["aliases"])}
    phrases = {p for p in phrases if len(p) >= 2}
    places = {tuple(answer_tokens(p)) for country, (capital, _, aliases) in COUNTRIES.items()
              for p in (country, capital, *aliases)} | {tuple(answer_tokens(c)) for c in CONTINENTS}
    longest = max(map(len, phrases | places))
    velish = {(w,) for w in velish_words()}
    plural_of = {singular: {plural, *aliases} for singular, (plural, aliases) in PLURALS.items()}
    eval_plurals = set().union(*plural_of.values())
    neighbours = [(names[k], names[(k + 1) % len(names)]) for names in (MONTHS, WEEKDAYS) for k in range(len(names))]
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
        problems += [f"{where}: uses the Velish word {p[0]!r}" for p in sorted(velish & grams)]
        asked = set(answer_tokens(row["instruction"], strip_articles=False))
        told = set(answer_tokens(row["response"], strip_articles=False)) - asked
        problems += [f"{where}: turns {s!r} into its plural {p!r}" for s, forms in plural_of.items() if s in asked
                     for p in sorted(forms & told)]
        if {"plural", "plurals"} & set(words):
            problems += [f"{where}: speaks of plurals and shows {p!r}" for p in sorted(eval_plurals & set(words))]
        named = set(re.findall(r"[A-Z][a-z]+", f"{row['instruction']}\n{row['response']}"))
        problems += [f"{where}: names {a} and {b}, neighbours in the calendar" for a, b in neighbours
                     if a in named and b in named]
    return problems
