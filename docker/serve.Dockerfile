# syntax=docker/dockerfile:1
# AW-Net Serve: the serving image (FastAPI + ONNX Runtime, no torch).
#
#   docker build -f docker/serve.Dockerfile -t awnet-serve .        (from the repository root)
#   docker run -p 8000:8000 -v "$PWD/models/repository:/models:ro" awnet-serve
#   docker run --gpus all ...                                         (same image, on a GPU)
#
# Dependencies come from ONE place, the `serve` extra of pyproject.toml, exactly as the
# README's local set-up installs them. onnxruntime-gpu (in that extra) runs on the CPU
# anywhere; to use a GPU it needs the CUDA and cuDNN user-space libraries, which are NOT
# part of the driver that `--gpus` mounts. CUDA_LIBS=1 (the default) adds them as the
# optional extras of that same onnxruntime-gpu distribution (NVIDIA's wheels, same
# resolved version, no other package); CUDA_LIBS=0 builds a CPU-only image about 1.5 GB
# smaller that still runs everywhere.
#
# ONNXRUNTIME=cpu builds on ONNX Runtime's CPU package instead (same resolved version, the
# GPU package removed before it is installed: never both in one image; CUDA_LIBS ignored).
#
# BASE_IMAGE: both stages' base, python:3.11-slim-bookworm by default. Where Docker Hub
# cannot be pulled, scripts/build_image.sh (`make image`) builds a local equivalent
# (scripts/build_base_image.sh: Debian bookworm + python3, with the machine's CA bundle)
# and passes it here; see docs/deployment.md.
#
# onnxruntime-gpu publishes x86-64 Linux wheels only: build and run for linux/amd64.
ARG BASE_IMAGE=python:3.11-slim-bookworm

########################################################################### build stage
FROM ${BASE_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what the wheel of the serving part needs: the service and the artifact contract it
# shares with training/ (artifact_contract/, torch-free). The service never imports torch,
# training/ or models/ (docs/contracts.md), so they stay out of this image.
COPY pyproject.toml README.md ./
COPY artifact_contract ./artifact_contract
COPY service ./service

ARG CUDA_LIBS=1
ARG ONNXRUNTIME=gpu
# Versions are pinned by pyproject.toml (the single source of truth), not here.
# hadolint ignore=DL3013
RUN if [ "$CUDA_LIBS" = "1" ] && [ "$ONNXRUNTIME" != "cpu" ]; then set -- "onnxruntime-gpu[cuda,cudnn]"; else set --; fi \
 && pip install --no-cache-dir ".[serve]" "$@" \
 && if [ "$ONNXRUNTIME" = "cpu" ]; then \
      v=$(python -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))') \
      && pip uninstall --yes onnxruntime-gpu \
      && pip install --no-cache-dir "onnxruntime==$v"; \
    fi \
 && python -c "import onnxruntime, service; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())" \
 && ! python -c "import torch" 2>/dev/null

######################################################################### runtime stage
FROM ${BASE_IMAGE} AS runtime

LABEL org.opencontainers.image.title="awnet-serve" \
      org.opencontainers.image.description="AW-Net image classification service (KServe v2 API on ONNX Runtime)" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    AWNET_HOST=0.0.0.0 \
    AWNET_PORT=8000 \
    AWNET_MODEL_REPOSITORY=/models

RUN groupadd --system --gid 10001 awnet \
 && useradd --system --uid 10001 --gid awnet --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin awnet \
 && mkdir -p /models

COPY --from=build /opt/venv /opt/venv
COPY docker/healthcheck.py /usr/local/bin/awnet-healthcheck

# Let the dynamic loader find the CUDA/cuDNN libraries of NVIDIA's wheels (if any were
# installed), so ONNX Runtime's CUDA provider loads them without LD_LIBRARY_PATH.
RUN python -c "import glob, os; dirs = sorted({os.path.dirname(p) for p in glob.glob('/opt/venv/lib/python3*/site-packages/nvidia/**/lib*.so*', recursive=True)}); open('/etc/ld.so.conf.d/awnet-nvidia-wheels.conf', 'w').write(''.join(d + chr(10) for d in dirs))" \
 && ldconfig \
 && chmod 0755 /usr/local/bin/awnet-healthcheck

WORKDIR /app
USER 10001:10001
EXPOSE 8000

# Healthy = ready (every model loaded); python's urllib because the slim image has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/bin/awnet-healthcheck"]

CMD ["python", "-m", "service"]
