"""The public stand-in's families made by rule (``public_standin.jsonl``, after the hand-written families of
``public``): each draws many distinct instructions from small tables in ``tables/public_rules.json`` and computes its
answer by a rule that a test can recompute (list the items, pick out a category's members, put a title in title
case, join two sentences with a connective, put a sentence into the past tense, a question or the negative, sort
numbers) or takes it from a table that labels it (a review's sentiment). Like the first families they ask nothing
the general evaluation asks and name nothing of the clinic or of Velish; ``public.public_leaks`` checks the rows.

Each generator returns ``(slots, response)`` entries, at most one per instruction and per response, that
``public`` phrases with the family's phrasings."""

from __future__ import annotations

import random
from typing import Callable

from .common import cap, table, tuples

_T = table("public_rules")

# (plural, singular with article) -> members: categories beside ``public.CATEGORIES``; no member in two categories of
# either table (``tests/test_shipped_data.py``), so that each list has one right answer. The file lists
# [plural, singular, members].
MORE_CATEGORIES: dict[tuple[str, str], tuple[str, ...]] = {(plural, kind): tuple(members)
                                                           for plural, kind, members in _T["MORE_CATEGORIES"]}

LIST_PHRASINGS: tuple[str, ...] = tuples(_T["LIST_PHRASINGS"])  # slots {style}, {items}
LIST_STYLES = ("numbered", "bulleted")
N_LIST = 200

PICK_PHRASINGS: tuple[str, ...] = tuples(_T["PICK_PHRASINGS"])  # slots {plural}, {items}
N_PICK = 200
N_ODD_MORE = 150  # odd-one-out items over both tables of categories (``public`` phrases them)

TITLE_PHRASINGS: tuple[str, ...] = tuples(_T["TITLE_PHRASINGS"])  # slot {t}
# Titles, lower case, with slots {hobby}, {adj}, {thing}, {place}; their only small words are the minor words below,
# which title case leaves in lower case unless first or last (the usual styles agree on these; longer prepositions,
# on which they differ, are not used)
TITLE_TEMPLATES: tuple[str, ...] = tuples(_T["TITLE_TEMPLATES"])
TITLE_MINOR_WORDS: tuple[str, ...] = tuples(_T["TITLE_MINOR_WORDS"])
HOBBIES: tuple[str, ...] = tuples(_T["HOBBIES"])
TITLE_ADJECTIVES: tuple[str, ...] = tuples(_T["TITLE_ADJECTIVES"])
TITLE_THINGS: tuple[str, ...] = tuples(_T["TITLE_THINGS"])
TITLE_PLACES: tuple[str, ...] = tuples(_T["TITLE_PLACES"])
N_TITLE = 150

JOIN_PHRASINGS: tuple[str, ...] = tuples(_T["JOIN_PHRASINGS"])  # slots {c} (the connective), {a}, {b}
# (cause, effect) and (fact, contrasting fact): sentences without their full stop, each starting with a word that is
# lower-cased inside a sentence (no name, no "I")
JOIN_CAUSES: tuple[tuple[str, str], ...] = tuples(_T["JOIN_CAUSES"])
JOIN_CONTRASTS: tuple[tuple[str, str], ...] = tuples(_T["JOIN_CONTRASTS"])

# (base, third person singular, past, complements): verbs whose past is not their base form, regular ones with no
# doubled consonant
VERBS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = tuples(_T["VERBS"])
SUBJECTS: dict[str, tuple[str, ...]] = tuples(_T["SUBJECTS"])  # by number; names (``public.NAMES``) are singular
PAST_PHRASINGS: tuple[str, ...] = tuples(_T["PAST_PHRASINGS"])  # slot {s}
QUESTION_PHRASINGS: tuple[str, ...] = tuples(_T["QUESTION_PHRASINGS"])
NEGATIVE_PHRASINGS: tuple[str, ...] = tuples(_T["NEGATIVE_PHRASINGS"])
N_PAST, N_QUESTION, N_NEGATIVE = 180, 180, 150
PLURAL_SUBJECT_SHARE = 0.3

SORT_PHRASINGS: tuple[str, ...] = tuples(_T["SORT_PHRASINGS"])  # slots {order}, {numbers}
SORT_ORDERS = ("from smallest to largest", "from largest to smallest")
N_SORT = 100

# Reviews of products the first sentiment family never names, in that family's reviews and in these; label ->
# (review with an {item} slot, why it has that label)
MORE_SENTIMENT_ITEMS: tuple[str, ...] = tuples(_T["MORE_SENTIMENT_ITEMS"])
MORE_SENTIMENTS: dict[str, tuple[tuple[str, str], ...]] = tuples(_T["MORE_SENTIMENTS"])
N_SENTIMENT_PER_LABEL = 50


def joined(items) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _distinct(n: int, draw: Callable[[], tuple[str, tuple[dict, str]]], seen: set | None = None) -> list:
    """``n`` entries from ``draw`` (which returns a key and an entry), none with a key already seen."""
    seen = set() if seen is None else seen
    out = []
    for _ in range(200 * n):
        if len(out) == n:
            return out
        key, entry = draw()
        if key not in seen:
            seen.add(key)
            out.append(entry)
    raise ValueError(f"only {len(out)} distinct entries of the {n} asked for")


# ================================================================================================================
# Lists: format them, pick out a category's members
# ================================================================================================================
def list_format(rng: random.Random, categories: dict, n: int = N_LIST) -> list[tuple[dict, str]]:
    """Items of ``categories`` (three to six, any mix) to be written as a numbered or bulleted list, in their order."""
    pool = [m for members in categories.values() for m in members]

    def draw():
        style, items = LIST_STYLES[rng.randrange(2)], rng.sample(pool, rng.randint(3, 6))
        lines = [f"{k}. {x}" if style == "numbered" else f"- {x}" for k, x in enumerate(items, 1)]
        return f"{style}:{items}", ({"style": style, "items": ", ".join(items)}, "\n".join(lines))

    return _distinct(n, draw)


def category_pick(rng: random.Random, categories: dict, n: int = N_PICK) -> list[tuple[dict, str]]:
    """Two or three members of one category among one member each of three or four others: which are of the
    first? The answer names them in the list's order."""
    cats = list(categories)

    def draw():
        target = rng.choice(cats)
        chosen = rng.sample(categories[target], rng.randint(2, 3))
        items = chosen + [rng.choice(categories[c]) for c in rng.sample([c for c in cats if c != target],
                                                                          rng.randint(3, 4))]
        rng.shuffle(items)
        plural = target[0]
        response = f"The {plural} in the list are {joined(x for x in items if x in chosen)}."
        return response, ({"plural": plural, "items": ", ".join(items)}, response)

    return _distinct(n, draw)


# ================================================================================================================
# Titles and sentences
# ================================================================================================================
def title_case(title: str) -> str:
    """``title`` with every word capitalised but the minor words (``TITLE_MINOR_WORDS``) inside it."""
    words = title.split()
    return " ".join(w if w in TITLE_MINOR_WORDS and 0 < k < len(words) - 1 else cap(w) for k, w in enumerate(words))


def title_entries(rng: random.Random, n: int = N_TITLE) -> list[tuple[dict, str]]:
    def draw():
        title = rng.choice(TITLE_TEMPLATES).format(hobby=rng.choice(HOBBIES), adj=rng.choice(TITLE_ADJECTIVES),
                                                   thing=rng.choice(TITLE_THINGS), place=rng.choice(TITLE_PLACES))
        return title, ({"t": title}, title_case(title))

    return _distinct(n, draw)


def _low(sentence: str) -> str:
    return sentence[:1].lower() + sentence[1:]


def join_entries() -> list[tuple[dict, str]]:
    """Every pair of ``JOIN_CAUSES`` joined with "so" and with "because", every pair of ``JOIN_CONTRASTS`` with "but"
    and with "although"."""
    out = []
    for a, b in JOIN_CAUSES:
        out.append(({"c": "so", "a": f"{a}.", "b": f"{b}."}, f"{a}, so {_low(b)}."))
        out.append(({"c": "because", "a": f"{a}.", "b": f"{b}."}, f"{b} because {_low(a)}."))
    for a, b in JOIN_CONTRASTS:
        out.append(({"c": "but", "a": f"{a}.", "b": f"{b}."}, f"{a}, but {_low(b)}."))
        out.append(({"c": "although", "a": f"{a}.", "b": f"{b}."}, f"Although {_low(a)}, {_low(b)}."))
    return out


def _clause(rng: random.Random, names: tuple[str, ...]) -> tuple[str, bool, tuple[str, str, str], str]:
    """A subject (a name, or a singular or plural noun phrase), whether it is singular, a verb's (base, third person,
    past) and one of its complements."""
    singular = rng.random() >= PLURAL_SUBJECT_SHARE
    subject = rng.choice(names + SUBJECTS["singular"] if singular else SUBJECTS["plural"])
    base, third, past, complements = rng.choice(VERBS)
    return subject, singular, (base, third, past), rng.choice(complements)


def past_entries(rng: random.Random, names: tuple[str, ...], n: int = N_PAST) -> list[tuple[dict, str]]:
    """A sentence in the present simple, and the same sentence in the past simple."""
    def draw():
        subject, singular, (base, third, past), rest = _clause(rng, names)
        statement = f"{cap(subject)} {third if singular else base} {rest}."
        return statement, ({"s": statement}, f"{cap(subject)} {past} {rest}.")

    return _distinct(n, draw)


def _statement_and_aux(rng: random.Random, names: tuple[str, ...]) -> tuple[str, str, str, str, str]:
    """A statement in the present or the past simple, and what its question and negative are made of: the auxiliary
    ("does", "do" or "did"), the subject, the base form and the complement."""
    subject, singular, (base, third, past), rest = _clause(rng, names)
    if rng.random() < 0.5:
        verb, aux = (third, "does") if singular else (base, "do")
    else:
        verb, aux = past, "did"
    return f"{cap(subject)} {verb} {rest}.", aux, subject, base, rest


def question_entries(rng: random.Random, names: tuple[str, ...], n: int = N_QUESTION) -> list[tuple[dict, str]]:
    """A statement and its yes/no question: "Maya walks to the station." -> "Does Maya walk to the station?"."""
    def draw():
        statement, aux, subject, base, rest = _statement_and_aux(rng, names)
        return statement, ({"s": statement}, f"{cap(aux)} {subject} {base} {rest}?")

    return _distinct(n, draw)


def negative_entries(rng: random.Random, names: tuple[str, ...], n: int = N_NEGATIVE) -> list[tuple[dict, str]]:
    """A statement and its negative: "Maya walked to the station." -> "Maya did not walk to the station."."""
    def draw():
        statement, aux, subject, base, rest = _statement_and_aux(rng, names)
        return statement, ({"s": statement}, f"{cap(subject)} {aux} not {base} {rest}.")

    return _distinct(n, draw)


# ================================================================================================================
# Numbers and reviews
# ================================================================================================================
def sort_entries(rng: random.Random, n: int = N_SORT) -> list[tuple[dict, str]]:
    """Four to seven different numbers below 1000, to be sorted one way or the other."""
    def draw():
        numbers, order = rng.sample(range(1, 1000), rng.randint(4, 7)), rng.choice(SORT_ORDERS)
        ordered = sorted(numbers, reverse=order == SORT_ORDERS[1])
        shown = ", ".join(map(str, numbers))
        return f"{order}:{shown}", ({"order": order, "numbers": shown},
                                    f"{cap(order)}: {', '.join(map(str, ordered))}.")

    return _distinct(n, draw)


def sentiment_entries(rng: random.Random, reviews: dict[str, tuple[tuple[str, str], ...]],
                      n_per_label: int = N_SENTIMENT_PER_LABEL) -> list[tuple[dict, str]]:
    """``n_per_label`` reviews of each label: a review of ``reviews`` (the first family's and ``MORE_SENTIMENTS``)
    about an item of ``MORE_SENTIMENT_ITEMS``, each pair at most once, in a seeded order."""
    out = []
    for label, templates in reviews.items():
        pairs = [(review, why, thing) for review, why in templates for thing in MORE_SENTIMENT_ITEMS]
        out += [({"s": review.format(item=thing)}, f"{label.capitalize()}: {why}.")
                for review, why, thing in rng.sample(pairs, n_per_label)]
    rng.shuffle(out)
    return out
