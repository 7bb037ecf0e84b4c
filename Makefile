# Set-up and everyday commands. From a fresh clone:
#   make demo   # create .venv, install, run the main job (hf-logscale compare) on the embedded default, offline
#   make test   # create .venv, install, run the test suite (+ core exactness on the oldest supported transformers)
# TORCH selects the torch requirement installed first, e.g. TORCH="torch==2.13.0" or
# TORCH="torch --index-url https://download.pytorch.org/whl/cpu"; an importable torch is kept as is.

PYTHON ?= python3
VENV ?= .venv
COMPAT_VENV ?= .venv-compat
TORCH ?= torch
OLDEST_TRANSFORMERS ?= transformers==4.57.6
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo test test-main test-compat lint bench clean

$(BIN)/hf-logscale: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/hf-logscale

demo: setup
	$(BIN)/hf-logscale compare --out runs/compare

test: test-main test-compat

test-main: setup
	$(BIN)/python -m pytest -q

$(COMPAT_VENV)/bin/pytest: pyproject.toml
	$(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -c "import torch" 2>/dev/null || $(COMPAT_VENV)/bin/python -m pip install -q $(TORCH)
	$(COMPAT_VENV)/bin/python -m pip install -q -e ".[dev]" "$(OLDEST_TRANSFORMERS)"
	touch $@

test-compat: $(COMPAT_VENV)/bin/pytest
	$(COMPAT_VENV)/bin/python -c "import transformers; print('core exactness tests on transformers', transformers.__version__)"
	$(COMPAT_VENV)/bin/python -m pytest -q -m core

lint: setup
	$(BIN)/ruff check hf_logscale tests scripts eval_tasks
	$(BIN)/ruff format --check hf_logscale tests scripts eval_tasks
	$(BIN)/lint-imports

bench: setup
	$(BIN)/python scripts/bench_overhead.py
	$(BIN)/python scripts/bench_perplexity.py --out runs/bench_perplexity.md

clean:
	rm -rf $(VENV) $(COMPAT_VENV) runs
