"""The layers of docs/architecture.md, checked: services at the bottom import no stage; a stage imports services and,
from the stages before it, only their artifact loaders; 06 does not import 05; modules stay under 500 lines;
notebook cells stay short (the parameters cell aside)."""
import ast

import nbformat
import pytest

from tests.conftest import ROOT

SRC = ROOT / "src" / "helpers"
STAGES = ["lab_world", "reconstruct_distribution", "multi_model_generation", "filtering", "mixing",
          "qlora_training", "evaluation"]  # 00 .. 06, in order
MAX_LINES = 500
MAX_CELL_LINES = 15


def helper_modules():
    return {p.relative_to(SRC).with_suffix("").as_posix().replace("/", "."): p
            for p in SRC.rglob("*.py") if p.name != "__init__.py"}


def imports_of(path):
    """``{module: names}`` this module takes from sibling modules of helpers (``from .x import a``, ``from . import
    x`` then ``x.a``); names are "*" when the whole module is imported."""
    tree = ast.parse(path.read_text())
    found: dict[str, set[str]] = {}
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.setdefault(node.module, set()).update(a.name for a in node.names)
            else:
                for a in node.names:
                    found.setdefault(a.name, set())
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):  # x.attr for modules imported whole
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            found[aliases[node.value.id]].add(node.attr)
    return found


def is_loader(name: str) -> bool:
    return name.startswith("load_") or name in ("STAGE", "general_rows_from_selected", "cluster_shares_sampled")


def test_services_import_no_stage():
    bad = {m: sorted(set(imports_of(p)) & set(STAGES)) for m, p in helper_modules().items()
           if m not in STAGES and m != "pipeline" and set(imports_of(p)) & set(STAGES)}
    assert not bad, f"services importing stage modules: {bad}"


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_takes_only_artifact_loaders_from_earlier_stages(stage):
    for other, names in imports_of(SRC / f"{stage}.py").items():
        if other not in STAGES:
            continue
        assert STAGES.index(other) < STAGES.index(stage), f"{stage} imports the later stage {other}"
        assert all(is_loader(n) for n in names), f"{stage} takes {sorted(names)} from stage {other}"


def test_evaluation_does_not_import_training():
    assert "qlora_training" not in imports_of(SRC / "evaluation.py")
    code = "\n".join(c.source for c in nbformat.read(ROOT / "notebooks" / "06_evaluation.ipynb", as_version=4).cells
                     if c.cell_type == "code")
    assert "qlora_training" not in code


def test_modules_stay_under_500_lines():
    long = {m: n for m, p in helper_modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern; data tables go to data files): {long}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_cells_are_short(path):
    nb = nbformat.read(path, as_version=4)
    long = [(i, len(c.source.splitlines())) for i, c in enumerate(nb.cells) if c.cell_type == "code"
            and "parameters" not in c.metadata.get("tags", []) and len(c.source.splitlines()) > MAX_CELL_LINES]
    assert not long, f"{path.name}: code cells over {MAX_CELL_LINES} lines (cell, lines): {long}; move logic to helpers"


def test_the_check_sees_imports():
    found = imports_of(SRC / "mixing.py")
    assert "load_instructions" in found["reconstruct_distribution"] and "arms" in found
