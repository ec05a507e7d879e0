#!/usr/bin/env bash
# Build an image of ours from its real Dockerfile, with or without a Docker daemon (`make image`).
#
#   bash scripts/build_image.sh [serve|train|train-cpu]    (from anywhere; context = repo root)
#
# Engine (AWNET_IMAGE_ENGINE=auto|docker|buildah, default auto): `docker build` where a Docker
# daemon answers, buildah otherwise (daemonless: --isolation chroot, storage driver vfs).
# Base image: the Dockerfile's default (python:3.11-slim-bookworm for serve) with docker;
# with buildah, unless BASE_IMAGE is set, the local equivalent that
# scripts/build_base_image.sh builds with debootstrap and caches (Docker Hub is not needed).
#   serve      docker/serve.Dockerfile                                  -> awnet-serve:local
#   train      docker/train.Dockerfile on its CUDA PyTorch base          -> awnet-train:local
#              (with buildah, set BASE_IMAGE: that base is not built here)
#   train-cpu  docker/torch-cpu.Dockerfile (Python + the CPU torch pin), then
#              docker/train.Dockerfile on it with REQUIRE_CUDA=0        -> awnet-train:cpu
# Where this machine's pip takes wheels from a folder (PIP_FIND_LINKS, e.g. a CPU torch
# wheel on disk), buildah mounts that folder read-only at /wheels for the torch-cpu step.
#
# Environment (each passed as the build argument of the same name when set):
#   IMAGE         tag (default as above, the names docker-compose.yml uses)
#   CUDA_LIBS     serve: 1 (default) adds NVIDIA's CUDA/cuDNN wheels, 0 leaves them out
#   ONNXRUNTIME   serve: gpu (default) or cpu (ONNX Runtime's CPU package)
#   BASE_IMAGE    base of the image's stages
#   REQUIRE_CUDA  train: 1 (default) fails the build on a CPU torch
#   TORCH_SPEC    train-cpu: the torch requirement (default torch==2.13.0, the Makefile's)
#   DOCKERFILE    another Dockerfile for serve or train (default docker/<which>.Dockerfile)
# Prints the image reference and its size on the last lines.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHICH="${1:-serve}"
ENGINE="${AWNET_IMAGE_ENGINE:-auto}"
DRIVER="${BUILDAH_STORAGE_DRIVER:-vfs}"

log() { echo "build_image: $*" >&2; }

case "$WHICH" in serve|train|train-cpu) ;; *) echo "usage: $0 [serve|train|train-cpu]" >&2; exit 2 ;; esac
if [ "$ENGINE" = auto ]; then
  if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    ENGINE=docker
  elif command -v buildah >/dev/null 2>&1; then
    ENGINE=buildah
  else
    log "no Docker daemon answers and buildah is not installed: run scripts/install_system_deps.sh"
    exit 1
  fi
fi
case "$ENGINE" in docker|buildah) ;; *) log "unknown AWNET_IMAGE_ENGINE=$ENGINE (auto, docker or buildah)"; exit 2 ;; esac

# build DOCKERFILE IMAGE [NAME=VALUE ...]: build arguments from the arguments, then from the
# environment variables listed above; echoes the image reference on the last line.
build() {
  local dockerfile=$1 image=$2 start=$SECONDS size
  shift 2
  local args=() name
  for kv in "$@"; do args+=(--build-arg "$kv"); done
  for name in CUDA_LIBS ONNXRUNTIME REQUIRE_CUDA TORCH_SPEC; do
    if [ -n "${!name:-}" ]; then args+=(--build-arg "$name=${!name}"); fi
  done
  if [ "$ENGINE" = docker ]; then
    log "docker build -f $dockerfile -t $image ${args[*]:-}"
    docker build -f "$dockerfile" -t "$image" "${args[@]}" "$ROOT" >&2
    size="$(( $(docker image inspect --format '{{.Size}}' "$image") / 1000000 )) MB"
  else
    case "$image" in */*) ;; *) image="localhost/$image" ;; esac
    local mounts=()
    if [ "$(basename "$dockerfile")" = torch-cpu.Dockerfile ] && [ -n "${PIP_FIND_LINKS:-}" ] \
       && [ -d "$PIP_FIND_LINKS" ]; then
      mounts=(--volume "$PIP_FIND_LINKS:/wheels:ro")
      args+=(--build-arg PIP_FIND_LINKS=/wheels)
    fi
    log "buildah build -f $dockerfile -t $image ${args[*]:-}"
    # --format docker keeps the HEALTHCHECK (the OCI format has no such field).
    buildah --storage-driver "$DRIVER" build --isolation chroot --format docker --pull-never \
      "${mounts[@]}" -f "$dockerfile" -t "$image" "${args[@]}" "$ROOT" >&2
    # The image this tag pointed to before, and the build stage's leftovers.
    buildah --storage-driver "$DRIVER" rmi --prune >/dev/null 2>&1 || true
    size=$(buildah --storage-driver "$DRIVER" images --format '{{.Size}}' "$image")
  fi
  log "built $image with $ENGINE in $((SECONDS - start)) s, $size"
  echo "image: $image"
  echo "size: $size"
}

# The base the Dockerfile gets: BASE_IMAGE, else its own default (docker), else the local one.
base_args=()
if [ -n "${BASE_IMAGE:-}" ]; then
  base_args=("BASE_IMAGE=$BASE_IMAGE")
elif [ "$ENGINE" = buildah ] && [ "$WHICH" != train ]; then
  base_args=("BASE_IMAGE=$(bash "$ROOT/scripts/build_base_image.sh" | tail -n 1)")
elif [ "$ENGINE" = buildah ]; then
  log "the training image's base (a CUDA PyTorch image) is not built locally: set BASE_IMAGE," \
      "or build train-cpu"
  exit 1
fi

case "$WHICH" in
  serve|train)
    build "${DOCKERFILE:-$ROOT/docker/$WHICH.Dockerfile}" "${IMAGE:-awnet-$WHICH:local}" "${base_args[@]}"
    ;;
  train-cpu)
    torch_base=$(build "$ROOT/docker/torch-cpu.Dockerfile" "${TORCH_CPU_IMAGE:-awnet-torch-cpu:local}" \
                   "${base_args[@]}" | sed -n 's/^image: //p')
    build "$ROOT/docker/train.Dockerfile" "${IMAGE:-awnet-train:cpu}" "BASE_IMAGE=$torch_base" REQUIRE_CUDA=0
    ;;
esac
