"""Where things are: the project, the shipped model and checkpoint, the deployment files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The shipped model (`make model`): served by default and mounted by the compose stack.
SHIPPED_REPOSITORY = ROOT / "models" / "repository"
SHIPPED_MODEL = "awnet-mnist"
SHIPPED_VERSION = "3"
SHIPPED_VERSION_DIR = SHIPPED_REPOSITORY / SHIPPED_MODEL / SHIPPED_VERSION
SHIPPED_CHECKPOINT = ROOT / "models" / "checkpoints" / f"{SHIPPED_MODEL}-{SHIPPED_VERSION}.pt"
EMBEDDED_DIGITS = ROOT / "training" / "data" / "embedded" / "mnist5k.npz"

# Deployment and monitoring files (tests/deploy).
DOCKER = ROOT / "docker"
SERVE_DOCKERFILE = DOCKER / "serve.Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_GPU_FILE = ROOT / "docker-compose.gpu.yml"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
RULES_DIR = DOCKER / "prometheus" / "rules"
PROMTOOL_TESTS_DIR = DOCKER / "prometheus" / "tests"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "awnet.json"
GRAFANA_PROVISIONING = DOCKER / "grafana" / "provisioning"
CONTRACTS = ROOT / "docs" / "contracts.md"
INSTALL_SCRIPT = ROOT / "scripts" / "install_system_deps.sh"
IMAGE_BUILD_SCRIPT = ROOT / "scripts" / "build_image.sh"  # what `make image` runs


def shipped_model_available() -> bool:
    return (SHIPPED_VERSION_DIR / "manifest.json").is_file()


def shipped_checkpoint_available() -> bool:
    return SHIPPED_CHECKPOINT.is_file()
