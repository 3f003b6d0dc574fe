"""What each comparison arm is, in one table: how notebook 04 builds its rows, how notebook 05 trains it, and how
notebook 06 describes, orders and colours it. No other module decides anything from an arm's name.

To add an arm kind: add an ``Arm`` to ``ARMS`` (its rows come from one of the ``ROWS`` sources), then, if its rows
come from a new source, teach ``mixing.build_arms`` that source. Reports pick it up from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

METHODS = ("sft", "sdft")
# Where an arm's general rows come from (mixing.build_arms): a general pool given to 04, a selection of notebook
# 03's ablation, ours' rows with every cluster at the same share, or a copy of another arm's rows.
ROWS = ("domain", "pool", "selection", "uniform_clusters", "copy", "sweep")


@dataclass(frozen=True)
class Arm:
    name: str
    what: str                          # one line for the reports (the ablation table's "what")
    rows: str                          # one of ROWS
    method: str = "sft"                # how notebook 05 trains it: "sft" or "sdft" (self-distillation)
    source: str = ""                   # rows "pool": the pool's name; "selection": 03's selection; "copy": the arm
    option: str = ""                   # the notebook 04 parameter that turns it on ("" = always built when possible)
    colour: str = "C7"                 # matplotlib colour in the ablation figure
    paper_general: float | None = None  # the paper's ablation table, general average over its benchmarks


# In the order of the paper's ablation table (the reports list arms in this order).
ARMS = {a.name: a for a in [
    Arm("domain_only", "domain data only", "domain", colour="C3"),
    Arm("ours_1x1", "1 model x 1 answer, no filter", "selection", source="1x1", option="ablation", colour="C0",
        paper_general=38.81),
    Arm("ours_1x3_self", "1 model x 3 answers, filtered by itself", "selection", source="1x3_self", option="ablation",
        colour="C0", paper_general=39.06),
    Arm("ours", "M models x k answers, committee-filtered (the method)", "pool", source="ours", colour="C0",
        paper_general=39.21),
    Arm("ours_weak", "our instructions, the weakest generator's answers, no filter", "selection", source="weak",
        option="ablation", colour="C0"),
    Arm("uniform_ours", "our answers, instructions spread evenly over 01's clusters", "uniform_clusters",
        option="ablation", colour="C0"),
    Arm("public_mix", "a public SFT set", "pool", source="public_mix", paper_general=38.81),
    Arm("oracle", "the true hidden mixture (the lab only)", "pool", source="oracle"),
    Arm("sdft", "self-distillation (SDFT) on the domain data, no replay", "copy", method="sdft", source="domain_only",
        option="sdft"),
    Arm("sdft_ours", "self-distillation on the domain data and our general data", "copy", method="sdft",
        source="ours", option="sdft"),
]}
BASE_PAPER_GENERAL = 39.00  # the paper's base model in the same table
_SWEEP = re.compile(r"ours_g(\d+)")


def sweep_name(share: float) -> str:
    """The arm of notebook 04's ratio sweep at general share ``share``: ``ours`` rows at another share."""
    return f"ours_g{round(100 * share)}"


def get(name: str) -> Arm:
    """The arm called ``name``: one of ``ARMS``, or a ratio-sweep arm (``sweep_name``)."""
    if name in ARMS:
        return ARMS[name]
    m = _SWEEP.fullmatch(name)
    if m:
        return Arm(name, f"ours' rows at a general share of {m.group(1)}%", "sweep", source="ours", colour="C0")
    raise KeyError(f"unknown arm {name!r}: the arms are {', '.join(ARMS)} and the ratio sweep's ours_g<percent>")


def with_option(option: str) -> list[Arm]:
    """The arms a notebook-04 option (``ablation``, ``sdft``) turns on, in the table's order."""
    return [a for a in ARMS.values() if a.option == option]


def optional(names) -> bool:
    """Whether ``names`` include an arm beyond the main comparison (an ablation or SDFT arm)."""
    return any(name in ARMS and ARMS[name].option for name in names)
