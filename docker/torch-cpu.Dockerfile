# syntax=docker/dockerfile:1
# A CPU stand-in for the training image's base (pytorch/pytorch:...-cuda...): Python with pip
# and the CPU build of torch that `make setup` pins, in a virtual environment on PATH.
#
#   bash scripts/build_image.sh train-cpu      (builds this, then docker/train.Dockerfile on it
#                                               with REQUIRE_CUDA=0: see docs/deployment.md)
#
# Where the CPU wheel comes from: the PyTorch CPU index (PIP_INDEX_URL or PIP_EXTRA_INDEX_URL
# build arguments, e.g. https://download.pytorch.org/whl/cpu), or a folder of wheels that
# scripts/build_image.sh mounts at /wheels when this machine's pip has one (PIP_FIND_LINKS).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# The CPU pin of the Makefile (TORCH_SPEC); pyproject.toml's train extra takes any torch>=2.4.
ARG TORCH_SPEC=torch==2.13.0
ARG PIP_FIND_LINKS
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
# The pin is TORCH_SPEC's (torch==2.13.0 by default), a build argument hadolint cannot read.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir "$TORCH_SPEC" \
 && python -c "import torch; assert not torch.version.cuda, 'expected the CPU build'; print('torch', torch.__version__)"
