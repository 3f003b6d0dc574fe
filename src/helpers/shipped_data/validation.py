"""``general_val.jsonl``: a validation split of the general set, for choosing training settings (learning rate,
rank, general share...) without reading the held-out set that the README reports.

It holds only what the held-out set leaves unused, so that set does not shrink. Every family draws again under
another label (:func:`common.redrawn`). A family capped from a longer table then picks other items from it, and a
generated family (arithmetic, numbers in words) makes new questions. Any question the held-out set asks, or any
training file contains as an instruction, is then removed, as are repeats. Families whose whole table is in the
held-out set (the calendar) are left out."""

from __future__ import annotations

from ..text import normalise
from .common import redrawn, validate
from .general import GENERAL_BUILDERS


def general_validation_items(held_out: list[dict], training: list[dict]) -> list[dict]:
    """The validation rows: ``general_eval.jsonl``'s families drawn again, minus every instruction of ``held_out``
    and of ``training`` (rows of the training files), without repeats."""
    with redrawn("validation"):
        drawn = [row for build in GENERAL_BUILDERS.values() for row in build()]
    taken = {normalise(r["instruction"]) for r in held_out + training}
    out = []
    for row in drawn:
        key = normalise(row["instruction"])
        if key not in taken:
            taken.add(key)
            out.append(row)
    return validate(out)
