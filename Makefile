# The two commands a newcomer needs:
#   make serve   set up, then serve the bundled model on http://127.0.0.1:8000
#   make test    set up, then run the whole test suite (what CI runs)
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build of PyTorch for CI and development; GPU users install their CUDA build first
# (see README, "GPU").
TORCH_SPEC ?= torch==2.13.0
# Packages installed without their declared dependencies: pyproject.toml's
# [tool.awnet-serve] no-deps (torchattacks, which declares torchvision).
NO_DEPS = $(BIN)/python -c "import sys; t = __import__('tomllib' if sys.version_info >= (3, 11) else 'pip._vendor.tomli', fromlist=['x']); print(' '.join(t.load(open('pyproject.toml', 'rb'))['tool']['awnet-serve']['no-deps']))"
STAMP := $(VENV)/.setup-stamp
SETTING ?= mnist-eps0.3
SEED ?= 0

.PHONY: setup serve test test-fast lint model chain clean-venv system-deps reproduce report

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[train,serve,dev]"
	$(BIN)/python -m pip install -q --no-deps $$($(NO_DEPS))
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/python -m service

# Debian packages the tests use for real: prometheus/promtool, docker-compose (config check).
system-deps:
	bash scripts/install_system_deps.sh

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: setup system-deps
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .

# Retrain the bundled default model from scratch on the embedded data and re-export it.
model: setup
	bash scripts/make_default_model.sh

# Train six methods on one setting, evaluate them with the same attacks, rewrite
# docs/results.md from every seed under results/ (SETTING=..., SEED=n; scripts/reproduce.sh).
reproduce: setup
	SETTING=$(SETTING) SEED=$(SEED) bash scripts/reproduce.sh

report: setup
	$(BIN)/python -m training report --results results --out docs/results.md

clean-venv:
	rm -rf $(VENV)
