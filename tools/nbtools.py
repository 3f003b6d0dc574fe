"""Notebook hygiene: strip outputs and execution counts, set the kernelspec to python3.

    python tools/nbtools.py strip notebooks/*.ipynb     # rewrite in place
    python tools/nbtools.py check notebooks/*.ipynb     # exit 1 if any notebook is not clean
"""

from __future__ import annotations

import sys

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def clean(nb) -> bool:
    """Strip in place; return True if anything changed."""
    changed = nb.metadata.get("kernelspec") != KERNELSPEC
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for key in ("papermill", "widgets"):
        changed |= nb.metadata.pop(key, None) is not None
    for cell in nb.cells:
        changed |= cell.metadata.pop("papermill", None) is not None
        changed |= cell.metadata.pop("execution", None) is not None
        if cell.cell_type == "code":
            changed |= bool(cell.outputs) or cell.execution_count is not None
            cell.outputs, cell.execution_count = [], None
    return changed


def main(argv: list[str]) -> int:
    cmd, paths = argv[0], argv[1:]
    dirty = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        if clean(nb):
            dirty.append(path)
            if cmd == "strip":
                nbformat.write(nb, path)
    if cmd == "check" and dirty:
        print("not stripped (run `make strip`):", *dirty, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
