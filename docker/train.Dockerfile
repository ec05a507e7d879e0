# syntax=docker/dockerfile:1
# AW-Net training image: PyTorch with CUDA, runs `python -m training train|evaluate|export`.
#
#   docker build -f docker/train.Dockerfile -t awnet-train .         (from the repository root)
#   docker run --rm --gpus all --shm-size=2g \
#       -v "$PWD/runs:/workspace/runs" -v "$PWD/models/repository:/workspace/models/repository" \
#       awnet-train train ...
#
# torch comes from the base image (a CUDA build, what the README's GPU set-up asks for:
# "install the CUDA build of torch first"); everything else from ONE place, the `train`
# extra of pyproject.toml, exactly as the README's local set-up installs it.
#
# BASE_IMAGE: a PyTorch image, the CUDA one by default. Its torch must satisfy the train
# extra's range; REQUIRE_CUDA=0 accepts a CPU build of torch in it (docs/deployment.md,
# "Training in a container").
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="awnet-train" \
      org.opencontainers.image.description="AW-Net training, evaluation and ONNX export (PyTorch + CUDA)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /workspace
COPY pyproject.toml README.md ./
COPY models ./models
COPY training ./training
COPY artifact_contract ./artifact_contract
COPY service ./service

ARG REQUIRE_CUDA=1
# The base image's torch satisfies the extra's range, so pip keeps it (no second torch);
# the check fails the build if a CPU-only torch ever replaced it (unless REQUIRE_CUDA=0).
# Versions are pinned by pyproject.toml (the single source of truth), not here.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[train]" \
 && pip install --no-cache-dir --no-deps "torchattacks==3.5.1" \
 && python -c "import torchattacks" \
 && python -c "import os, torch, training; assert torch.version.cuda or os.environ['REQUIRE_CUDA'] == '0', 'expected a CUDA build of torch'; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

RUN groupadd --system --gid 10001 awnet \
 && useradd --system --uid 10001 --gid awnet --create-home --home-dir /home/awnet \
        --shell /usr/sbin/nologin awnet \
 && mkdir -p /workspace/runs /workspace/models/repository \
 && chown -R 10001:10001 /workspace/runs /workspace/models/repository

USER 10001:10001
# Outputs: training runs under runs/, exported models under models/repository/ (mount both).
VOLUME ["/workspace/runs", "/workspace/models/repository"]

ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]
