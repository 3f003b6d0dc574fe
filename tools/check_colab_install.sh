#!/usr/bin/env bash
# The Colab path, as far as a machine without Colab can check it: a fresh venv that already has a torch other than
# the pinned one (Colab ships its own CUDA build), then the notebooks' setup cell exactly as written (it installs
# this repository's helpers from REPO without constraints.txt), then: torch untouched, and the end-to-end tests of
# the lab and of the real track in that venv.
#
#   bash tools/check_colab_install.sh [TORCH_VERSION]      # default 2.14.1 (a CUDA build; it runs on the CPU too)
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=${1:-2.14.1}
VENV=${VENV:-/tmp/colab-venv}
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
# the first code cell of notebook 00, with REPO pointing at this checkout
"$VENV/bin/python" - "$PWD" <<'PY'
import json, sys
cell = next(c for c in json.load(open("notebooks/00_lab_world.ipynb"))["cells"] if c["cell_type"] == "code")
source = "".join(cell["source"]).replace('REPO = "/content/sft-forgetting"', f"REPO = {sys.argv[1]!r}")
exec(source)
import helpers  # importable in the same process, without a restart
print("setup cell: helpers from", helpers.__file__)
PY
"$VENV/bin/python" -c "import torch; v = torch.__version__; print('torch', v); assert v.startswith('$TORCH_VERSION'), v"
"$VENV/bin/python" -m pip install -q pytest
"$VENV/bin/python" -m pip list --format=freeze | grep -iE "^(torch|transformers|trl|peft|bitsandbytes|datasets|numpy|pandas)=="
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_install.py \
    "tests/test_notebooks.py::test_notebooks_run_end_to_end_under_papermill" \
    "tests/test_notebooks.py::test_the_real_track_runs_end_to_end_on_real_smollm2"
