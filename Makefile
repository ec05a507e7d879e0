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
SETTING ?= mnist1k-eps0.3-w8
SEED ?= 0

.PHONY: setup serve test test-fast lint model chain clean-venv system-deps reproduce report image image-test benchmark benchmark-quick triton-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[train,serve,dev,bench]"
	$(BIN)/python -m pip install -q --no-deps $$($(NO_DEPS))
	touch $(STAMP)

setup: $(STAMP)

serve: setup
	$(BIN)/python -m service

# Debian packages the tests use for real: prometheus/promtool, docker-compose (config check),
# buildah and debootstrap (the image test, `make image` without a Docker daemon), chromium and
# its driver (the page at / in a headless browser).
system-deps:
	bash scripts/install_system_deps.sh

test: setup system-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: setup system-deps
	$(BIN)/python -m pytest -q -m "not slow"

# The serving image (docs/deployment.md): `docker build` where a Docker daemon answers,
# buildah on a local debootstrap base otherwise. Build arguments from the environment or
# the command line: make image CUDA_LIBS=0 ONNXRUNTIME=cpu IMAGE=awnet-serve:cpu
image: system-deps
	bash scripts/build_image.sh serve

# Build the CPU image and run it as compose does (tests/deploy/test_image.py; in `make test` too).
image-test: setup system-deps
	$(BIN)/python -m pytest -q -m image tests/deploy/test_image.py

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

# The serving benchmark (docs/benchmark.md): the full run writes its tables into
# docs/benchmark.md and its plots into docs/figures/; run it on an idle machine.
benchmark: setup system-deps
	$(BIN)/python -m benchmarks --write-docs

# Tiny settings, about a minute: checks that the benchmark runs (its figures mean nothing).
benchmark-quick: setup system-deps
	$(BIN)/python -m benchmarks --quick --out runs/benchmark-quick

# PyTriton beside the service in the benchmark. nvidia-pytriton pins numpy<2, so it gets a
# venv of its own (the benchmark finds .venv-triton by itself).
TRITON_VENV ?= .venv-triton
triton-venv:
	test -x $(TRITON_VENV)/bin/python || $(PY) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install -q -e ".[triton]"

clean-venv:
	rm -rf $(VENV)
