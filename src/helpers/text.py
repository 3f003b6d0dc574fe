"""Text normalisation, one place for every stage: the dedup key (01, 03, 04) and the answer matcher's words (06 and
the shipped-data builder's leak checks)."""

from __future__ import annotations

import re
import unicodedata


def normalise(text: str) -> str:
    """Lower-cased, whitespace-folded text: the key for exact dedup (01, 03 and 04)."""
    return re.sub(r"\s+", " ", text.strip().lower())


_ARTICLES = frozenset({"a", "an", "the"})
_WORD = re.compile(r"\d+(?:\.\d+)*|[^\W\d_]+")


def answer_tokens(text: str, strip_articles: bool = True) -> list[str]:
    """``text`` as the answer matcher sees it: a list of lower-case words and numbers (``scoring.answer_matches``)."""
    t = unicodedata.normalize("NFKD", str(text))
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", t)  # 3,000 -> 3000
    words = _WORD.findall(t)
    if strip_articles:
        stripped = list(words)
        while stripped and stripped[0] in _ARTICLES:
            stripped.pop(0)
        words = stripped or words  # an answer that is only an article keeps it
    return words


def normalise_answer(text: str) -> str:
    """The matcher's normal form of ``text``: "The  Capital, Bogotá!" -> "capital bogota"."""
    return " ".join(answer_tokens(text))
