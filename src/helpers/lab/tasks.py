"""The lab world's instruction tasks: verifiable families, their phrasings, and a parser.

In the lab, a *family* stands for one kind of request a real instruct model was trained on (maths, rewriting,
knowledge questions, ...). Each family has

* several phrasings (templates with named slots), so the same task is asked in different words,
* a sampler that draws slot values from a seeded ``random.Random``,
* an ``answer`` function that computes the one correct response from the slot values.

Because every phrasing is a template, any instruction can be parsed back into ``(family, slots)``
(:func:`parse_instruction`), and any response can be checked (:func:`verify`). That parser is the lab's ground
truth: only evaluation (and the lab-only sections of the notebooks) may use it to score or label data.

Three groups of families exist:

* ``GENERAL_FAMILIES``: the general skills the base model is trained on (the paper's "general capabilities");
* ``DOMAIN_FAMILIES``: a fictional clinical knowledge base the base model never sees (the paper's medical data);
* ``PUBLIC_FAMILIES``: a public SFT set (the paper's ShareGPT/Alpaca stand-in) covering only some general skills,
  asked with its own phrasings and in its own proportions.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Callable, Iterator

Slots = dict[str, str]

# ----------------------------------------------------------------------------------------------------------------
# Vocabulary of the lab world
# ----------------------------------------------------------------------------------------------------------------
WORDS = (
    "cat dog sun moon tree fish bird star book cake lamp rose ship rain snow leaf frog milk ring bell door hat cup box"
).split()
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4}

# A fixed table of fictional facts: country -> capital.
CAPITALS = {
    "Arvania": "Kelmor",
    "Borduin": "Tasset",
    "Calvoria": "Mirelle",
    "Dostrea": "Varnholm",
    "Elbrith": "Quenby",
    "Fennmark": "Ostrel",
    "Galvos": "Pramhill",
    "Hestoria": "Lunfield",
    "Ivermoor": "Scaldon",
    "Jorvane": "Thessary",
    "Kestrelia": "Wendhaven",
    "Lornwick": "Ambrose",
    "Mavaris": "Coldreach",
    "Nortalia": "Dunmere",
    "Ostvale": "Fairhollow",
    "Pellucia": "Greyport",
}

# A fictional clinical knowledge base: condition -> (presenting symptom, first-line drug).
CLINICAL = {
    "Morrow syndrome": ("blue fingernails", "zelocor"),
    "Tessel fever": ("a ringing cough", "trivane"),
    "Quill rash": ("silver spots", "oxamil"),
    "Brann palsy": ("a drooping eyelid", "brenotil"),
    "Osk disease": ("cold hands", "calvexa"),
    "Lume blight": ("yellow eyes", "dumarol"),
    "Darrow ache": ("a stiff jaw", "fenzadine"),
    "Fenn chills": ("night shivers", "gorlix"),
    "Hale tremor": ("shaking thumbs", "hemavir"),
    "Pike flush": ("red ears", "ketrosin"),
}
DRUGS = tuple(drug for _, drug in CLINICAL.values())


def _words(n_min: int, n_max: int, distinct: bool = True) -> Callable[[random.Random], str]:
    def draw(rng: random.Random) -> str:
        n = rng.randint(n_min, n_max)
        picked = rng.sample(WORDS, n) if distinct else [rng.choice(WORDS) for _ in range(n)]
        return " ".join(picked)

    return draw


# ----------------------------------------------------------------------------------------------------------------
# Family definition, rendering and parsing
# ----------------------------------------------------------------------------------------------------------------
SLOT_PATTERNS = {
    "num": r"\d+",
    "nums": r"\d+(?: \d+)+",
    "words": r"[a-z]+(?: [a-z]+)*",
    "word": r"[a-z]+",
    "op": r"plus|minus|times",
    "count": "|".join(NUMBER_WORDS),
    "country": "|".join(CAPITALS),
    "condition": "|".join(CLINICAL),
    "symptom": "|".join(s for s, _ in CLINICAL.values()),
    "drug": "|".join(DRUGS),
}
_SLOT = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Family:
    """One verifiable task family.

    ``slots`` maps each slot name to a key of :data:`SLOT_PATTERNS` (how the slot looks in text);
    ``sample`` draws slot values; ``answer`` computes the reference response from slot values; ``valid`` says
    whether parsed slot values lie inside what ``sample`` can draw. An instruction outside it ("sort 12 7 7") is
    well-formed (it has the family's form, and its answer is defined) but lies outside what the world ever taught.
    """

    name: str
    group: str  # "general", "domain" or "public"
    phrasings: tuple[str, ...]
    slots: dict[str, str]
    sample: Callable[[random.Random], Slots]
    answer: Callable[[Slots], str]
    description: str = ""
    valid: Callable[[Slots], bool] = lambda slots: True  # is this inside the family's support (what it samples)?
    _regexes: tuple[re.Pattern, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regexes = []
        for phrasing in self.phrasings:
            names = _SLOT.findall(phrasing)
            if sorted(set(names)) != sorted(self.slots):
                raise ValueError(f"family {self.name!r}: phrasing {phrasing!r} must use exactly slots {sorted(self.slots)}")
            pattern, pos = "", 0
            for m in _SLOT.finditer(phrasing):
                pattern += re.escape(phrasing[pos : m.start()])
                pattern += f"(?P<{m.group(1)}>{SLOT_PATTERNS[self.slots[m.group(1)]]})"
                pos = m.end()
            pattern += re.escape(phrasing[pos:])
            regexes.append(re.compile(pattern))
        object.__setattr__(self, "_regexes", tuple(regexes))

    def render(self, slots: Slots, phrasing: int) -> str:
        return self.phrasings[phrasing].format(**slots)

    def draw(self, rng: random.Random) -> "Example":
        slots = self.sample(rng)
        phrasing = rng.randrange(len(self.phrasings))
        return Example(self.name, phrasing, slots, self.render(slots, phrasing), self.answer(slots))

    def match(self, instruction: str, in_support: bool = False) -> tuple[int, Slots] | None:
        """``(phrasing, slots)`` if the instruction has this family's form (and, with ``in_support``, lies inside
        what the family samples), else ``None``."""
        for i, regex in enumerate(self._regexes):
            m = regex.fullmatch(instruction)
            if m and (not in_support or self.valid(m.groupdict())):
                return i, m.groupdict()
        return None


@dataclass(frozen=True)
class Example:
    family: str
    phrasing: int
    slots: Slots
    instruction: str
    response: str

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.instruction}, {"role": "assistant", "content": self.response}]


# ----------------------------------------------------------------------------------------------------------------
# General families (what the base model was trained on; its mixture over them is hidden)
# ----------------------------------------------------------------------------------------------------------------
def _word_list(n_min: int, n_max: int, distinct: bool = True) -> Callable[[Slots], bool]:
    def ok(s: Slots) -> bool:
        w = s["words"].split()
        return n_min <= len(w) <= n_max and all(x in WORDS for x in w) and (not distinct or len(set(w)) == len(w))

    return ok


def _arith_valid(s: Slots) -> bool:
    a, b = int(s["a"]), int(s["b"])
    return a <= 9 and b <= 9 and s["a"] == str(a) and s["b"] == str(b) and (s["op"] != "minus" or a >= b)


def _sort_valid(s: Slots) -> bool:
    n = s["nums"].split()
    return 3 <= len(n) <= 5 and all(len(x) == 1 for x in n) and len(set(n)) == len(n)


def _compare_valid(s: Slots) -> bool:
    return s["a"] != s["b"] and all(len(s[k]) == 2 and s[k][0] != "0" for k in ("a", "b"))


def _sequence_valid(s: Slots) -> bool:
    t = [int(x) for x in s["terms"].split()]
    steps = {b - a for a, b in zip(t, t[1:])}
    return len(t) == 4 and t[0] <= 9 and len(steps) == 1 and 1 <= steps.pop() <= 5 and s["terms"] == " ".join(map(str, t))


def _word_valid(s: Slots) -> bool:
    return s["word"] in WORDS


def _arith_sample(rng: random.Random) -> Slots:
    op = rng.choice(["plus", "minus", "times"])
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if op == "minus" and b > a:
        a, b = b, a
    return {"a": str(a), "op": op, "b": str(b)}


def _arith_answer(s: Slots) -> str:
    a, b = int(s["a"]), int(s["b"])
    return str({"plus": a + b, "minus": a - b, "times": a * b}[s["op"]])


def _sort_sample(rng: random.Random) -> Slots:
    return {"nums": " ".join(str(d) for d in rng.sample(range(10), rng.randint(3, 5)))}


def _compare_sample(rng: random.Random) -> Slots:
    a, b = rng.sample(range(10, 100), 2)
    return {"a": str(a), "b": str(b)}


def _sequence_sample(rng: random.Random) -> Slots:
    start, step = rng.randint(0, 9), rng.randint(1, 5)
    return {"terms": " ".join(str(start + i * step) for i in range(4))}


def _sequence_answer(s: Slots) -> str:
    terms = [int(t) for t in s["terms"].split()]
    return str(terms[-1] + terms[-1] - terms[-2])


GENERAL_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "arithmetic", "general",
            (
                "What is {a} {op} {b}?",
                "Compute {a} {op} {b}.",
                "Calculate {a} {op} {b}.",
                "Tell me what {a} {op} {b} is.",
                "How much is {a} {op} {b}?",
                "Work out {a} {op} {b}.",
            ),
            {"a": "num", "op": "op", "b": "num"}, _arith_sample, _arith_answer,
            "single-digit addition, subtraction and multiplication", _arith_valid,
        ),
        Family(
            "reverse", "general",
            (
                "Reverse the order of these words: {words}",
                "Write these words backwards: {words}",
                "Reverse this list: {words}",
                "Put these words in reverse order: {words}",
                "Say these words from last to first: {words}",
            ),
            {"words": "words"}, lambda r: {"words": _words(3, 5)(r)}, lambda s: " ".join(reversed(s["words"].split())),
            "reverse a list of 3-5 words", _word_list(3, 5),
        ),
        Family(
            "sort", "general",
            (
                "Sort these numbers from smallest to largest: {nums}",
                "Put these numbers in increasing order: {nums}",
                "Arrange in ascending order: {nums}",
                "Order these numbers from low to high: {nums}",
                "Sort ascending: {nums}",
            ),
            {"nums": "nums"}, _sort_sample, lambda s: " ".join(sorted(s["nums"].split(), key=int)),
            "sort 3-5 distinct digits", _sort_valid,
        ),
        Family(
            "capital", "general",
            (
                "What is the capital of {country}?",
                "Name the capital city of {country}.",
                "Which city is the capital of {country}?",
                "Tell me the capital of {country}.",
                "The capital of {country} is which city?",
            ),
            {"country": "country"}, lambda r: {"country": r.choice(list(CAPITALS))}, lambda s: CAPITALS[s["country"]],
            "look up a fact in a fixed table of fictional countries",
        ),
        Family(
            "count", "general",
            (
                "How many words are in this list: {words}",
                "Count the words: {words}",
                "How many items are here: {words}",
                "Tell me the number of words in: {words}",
                "Count how many words follow: {words}",
            ),
            {"words": "words"}, lambda r: {"words": _words(2, 7, distinct=False)(r)}, lambda s: str(len(s["words"].split())),
            "count 2-7 words", _word_list(2, 7, distinct=False),
        ),
        Family(
            "compare", "general",
            (
                "Which is larger, {a} or {b}?",
                "Which number is bigger: {a} or {b}?",
                "Pick the larger number: {a} or {b}",
                "What is the maximum of {a} and {b}?",
                "Between {a} and {b}, which is greater?",
            ),
            {"a": "num", "b": "num"}, _compare_sample, lambda s: str(max(int(s["a"]), int(s["b"]))),
            "the larger of two two-digit numbers", _compare_valid,
        ),
        Family(
            "uppercase", "general",
            (
                "Write in capital letters: {words}",
                "Convert to uppercase: {words}",
                "Make this uppercase: {words}",
                "Rewrite in all caps: {words}",
                "Change these words to upper case: {words}",
            ),
            {"words": "words"}, lambda r: {"words": _words(1, 3)(r)}, lambda s: s["words"].upper(),
            "case conversion of 1-3 words", _word_list(1, 3),
        ),
        Family(
            "sequence", "general",
            (
                "Continue the sequence: {terms}",
                "What number comes next: {terms}",
                "Give the next number in the sequence: {terms}",
                "Find the next term: {terms}",
                "What comes after {terms}?",
            ),
            {"terms": "nums"}, _sequence_sample, _sequence_answer,
            "next term of an arithmetic sequence", _sequence_valid,
        ),
        Family(
            "repeat", "general",
            (
                "Repeat the word {word} {count} times.",
                "Say {word} {count} times.",
                "Write {word} {count} times.",
                "Please repeat {word} {count} times.",
                "Echo the word {word} {count} times.",
            ),
            {"word": "word", "count": "count"},
            lambda r: {"word": r.choice(WORDS), "count": r.choice(list(NUMBER_WORDS))},
            lambda s: " ".join([s["word"]] * NUMBER_WORDS[s["count"]]),
            "repeat a word two to four times", _word_valid,
        ),
        Family(
            "spell", "general",
            (
                "Spell the word {word}.",
                "Spell out {word}.",
                "How do you spell {word}?",
                "Write the letters of {word}.",
                "Give the spelling of {word}.",
            ),
            {"word": "word"}, lambda r: {"word": r.choice(WORDS)}, lambda s: " ".join(s["word"]),
            "spell a word letter by letter", _word_valid,
        ),
    ]
}


# ----------------------------------------------------------------------------------------------------------------
# Domain families: a fictional clinical knowledge base (stands in for the paper's medical data)
# ----------------------------------------------------------------------------------------------------------------
def _dose_sample(rng: random.Random) -> Slots:
    return {"drug": rng.choice(DRUGS), "rate": str(rng.randint(1, 9)), "weight": str(10 * rng.randint(1, 9))}


DOMAIN_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "diagnosis", "domain",
            (
                "A patient presents with {symptom}. What is the likely diagnosis?",
                "Which condition causes {symptom}?",
                "What condition is suggested by {symptom}?",
                "A child has {symptom}. Which disease is this?",
                "Diagnose a patient with {symptom}.",
            ),
            {"symptom": "symptom"},
            lambda r: {"symptom": r.choice([s for s, _ in CLINICAL.values()])},
            lambda s: next(c for c, (sym, _) in CLINICAL.items() if sym == s["symptom"]),
            "symptom to condition",
        ),
        Family(
            "treatment", "domain",
            (
                "What is the first-line drug for {condition}?",
                "Which drug treats {condition}?",
                "How is {condition} treated?",
                "Name the standard medication for {condition}.",
                "What should be prescribed for {condition}?",
            ),
            {"condition": "condition"},
            lambda r: {"condition": r.choice(list(CLINICAL))},
            lambda s: CLINICAL[s["condition"]][1],
            "condition to first-line drug",
        ),
        Family(
            "dosing", "domain",
            (
                "The dose of {drug} is {rate} mg per kg. What dose does a {weight} kg patient need?",
                "{drug} is given at {rate} mg/kg. Dose for a patient of {weight} kg?",
                "Calculate the {drug} dose at {rate} mg per kg for {weight} kg.",
                "A {weight} kg patient needs {drug} at {rate} mg per kg. How many mg?",
                "Weight {weight} kg, {drug} {rate} mg/kg: what is the dose?",
            ),
            {"drug": "drug", "rate": "num", "weight": "num"}, _dose_sample,
            lambda s: f"{int(s['rate']) * int(s['weight'])} mg",
            "weight-based dosing",
            lambda s: 1 <= int(s["rate"]) <= 9 and s["rate"] == str(int(s["rate"])) and s["weight"] in {str(10 * i) for i in range(1, 10)},
        ),
    ]
}


# ----------------------------------------------------------------------------------------------------------------
# Public SFT set: a different task mix and different phrasings (stands in for ShareGPT / Alpaca-like data)
# ----------------------------------------------------------------------------------------------------------------
def _public(name: str, phrasings: tuple[str, ...]) -> Family:
    g = GENERAL_FAMILIES[name]
    return Family(f"public_{name}", "public", phrasings, g.slots, g.sample, g.answer, f"public-set version of {name}",
                  g.valid)


PUBLIC_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        _public("arithmetic", ("Q: {a} {op} {b} = ?", "Solve: {a} {op} {b}", "Find {a} {op} {b}.")),
        _public("reverse", ("Flip the word order: {words}", "Give me {words} reversed", "Invert the sequence {words}")),
        _public("sort", ("Sort: {nums}", "Please sort {nums}", "Rank from least to greatest: {nums}")),
        _public("compare", ("Max of {a}, {b}?", "Larger value among {a} and {b}", "Greater one: {a} vs {b}")),
        _public("uppercase", ("UPPERCASE: {words}", "Capitalise every letter: {words}", "Shout this: {words}")),
        _public("count", ("Number of words in {words}?", "Word count: {words}", "Count these: {words}")),
    ]
}
PUBLIC_MIXTURE = {"public_arithmetic": 0.3, "public_reverse": 0.1, "public_sort": 0.1,
                  "public_compare": 0.2, "public_uppercase": 0.2, "public_count": 0.1}

ALL_FAMILIES: dict[str, Family] = {**GENERAL_FAMILIES, **DOMAIN_FAMILIES, **PUBLIC_FAMILIES}


# ----------------------------------------------------------------------------------------------------------------
# Sampling, parsing, verification
# ----------------------------------------------------------------------------------------------------------------
def sample_examples(mixture: dict[str, float], n: int, seed: int) -> list[Example]:
    """Draw ``n`` examples: a family by ``mixture`` weight, then slots and a phrasing, all from ``seed``."""
    unknown = set(mixture) - set(ALL_FAMILIES)
    if unknown:
        raise KeyError(f"unknown families {sorted(unknown)}; known: {sorted(ALL_FAMILIES)}")
    rng = random.Random(seed)
    names, weights = list(mixture), list(mixture.values())
    return [ALL_FAMILIES[name].draw(rng) for name in rng.choices(names, weights, k=n)]


def iter_examples(mixture: dict[str, float], seed: int, chunk: int = 4096) -> Iterator[Example]:
    """An endless stream of examples (chunks drawn with seeds derived from ``seed``)."""
    i = 0
    while True:
        yield from sample_examples(mixture, chunk, seed * 1_000_003 + i)
        i += 1


def uniform(families: dict[str, Family]) -> dict[str, float]:
    return {name: 1.0 / len(families) for name in families}


def parse_instruction(instruction: str, families: dict[str, Family] | None = None,
                      in_support: bool = False) -> tuple[str, Slots] | None:
    """Map an instruction to ``(family, slots)`` if it is a well-formed lab instruction, else ``None``.

    Well-formed: it matches one of a family's phrasings. ``in_support=True`` also requires the slot values to lie
    inside what the family samples. By default only general and domain families are tried: public-set phrasings
    are not part of the world the base model lives in.
    """
    families = families if families is not None else {**GENERAL_FAMILIES, **DOMAIN_FAMILIES}
    text = instruction.strip()
    for name, family in families.items():
        hit = family.match(text, in_support)
        if hit is not None:
            return name, hit[1]
    return None


def reference_answer(instruction: str, families: dict[str, Family] | None = None) -> str | None:
    parsed = parse_instruction(instruction, families)
    if parsed is None:
        return None
    name, slots = parsed
    return ALL_FAMILIES[name].answer(slots)


def verify(instruction: str, response: str, families: dict[str, Family] | None = None) -> bool:
    """Exact match of ``response`` (whitespace-stripped) against the reference answer computed from the instruction."""
    ref = reference_answer(instruction, families)
    return ref is not None and response.strip() == ref
