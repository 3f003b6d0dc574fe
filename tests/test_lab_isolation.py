"""The lab must not leak: only the world builder (00) and evaluation (06, with its services for the held-out sets and
scoring) may read the hidden mixture or score with the task parser. Stages 01-05 see what a third party sees. Notebook cells tagged ``lab-only`` (clearly marked
measurements against ground truth) are exempt.
"""
import re

import nbformat

from tests.conftest import ROOT

FORBIDDEN = re.compile(
    r"hidden_mixture|HIDDEN_MIXTURE|lab\.evaluate|lab import evaluate|\bparse_instruction\b|\breference_answer\b"
    r"|\bverify\b|\bexact_match\b|\bheldout_examples\b|\bheldout\b"
)
ALLOWED = {
    "src/helpers/lab/tasks.py",  # defines the parser and verifier
    "src/helpers/lab/zoo.py",  # builds the world: trains base on the hidden mixture
    "src/helpers/lab/evaluate.py",
    "src/helpers/lab_world.py",  # stage 00: builds and measures the world
    "notebooks/00_lab_world.ipynb",
    "src/helpers/evaluation.py",  # stage 06
    "src/helpers/heldout.py",  # 06's held-out sets: the lab's come from its task families
    "src/helpers/scoring.py",  # 06's (and 00's) scorers: exact_match against the references
    "src/helpers/baseline.py",  # the evaluation CLI: one model on the held-out files
    "notebooks/06_evaluation.ipynb",
}


def sources():
    for path in sorted((ROOT / "src" / "helpers").rglob("*.py")):
        yield path.relative_to(ROOT).as_posix(), path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells
                         if c.cell_type == "code" and "lab-only" not in c.metadata.get("tags", []))
        yield path.relative_to(ROOT).as_posix(), code


def test_only_builder_and_evaluation_touch_ground_truth():
    leaks = {name: sorted(set(FORBIDDEN.findall(text))) for name, text in sources()
             if name not in ALLOWED and FORBIDDEN.search(text)}
    assert not leaks, f"ground truth used outside the world builder and evaluation: {leaks}"


def test_the_check_catches_a_leak():
    assert FORBIDDEN.search("from helpers.lab.zoo import hidden_mixture")
    assert FORBIDDEN.search("from helpers.lab import evaluate")
    assert FORBIDDEN.search("ok = tasks.verify(instr, resp)")
    assert FORBIDDEN.search("from helpers import heldout") and FORBIDDEN.search("from .heldout import held_out")
