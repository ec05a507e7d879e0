"""docker-compose.yml (and the GPU override) as docker-compose itself reads them."""

from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest
import yaml

from tests.support.monitoring import SERVICE_JOB, load_yaml
from tests.support.paths import (
    COMPOSE_FILE,
    COMPOSE_GPU_FILE,
    DASHBOARD,
    GRAFANA_PROVISIONING,
    PROMETHEUS_CONFIG,
    ROOT,
    RULES_DIR,
)
from tests.support.processes import run, tool

SERVICE = "awnet"


def compose_config(*files, **env_overrides) -> dict:
    """`docker-compose -f ... config`, parsed; environment without AWNET_*/GRAFANA_* overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWNET_", "GRAFANA_", "PROMETHEUS_", "COMPOSE_"))}
    env.update(env_overrides)
    args = [tool("docker-compose")]
    for f in files:
        args += ["-f", str(f)]
    proc = run([*args, "config"], env=env)
    return yaml.safe_load(proc.stdout)


@pytest.fixture(scope="module")
def config() -> dict:
    return compose_config(COMPOSE_FILE)


def mounts(service: dict) -> dict[str, dict]:
    """{container path: {'source': host path, 'read_only': bool}} of a service's volumes."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = {"source": parts[0], "read_only": len(parts) > 2 and "ro" in parts[2]}
        else:
            out[v["target"]] = {"source": v.get("source"), "read_only": bool(v.get("read_only"))}
    return out


def test_compose_file_is_valid(config):
    assert {SERVICE, "prometheus", "grafana"} <= set(config["services"])


def test_service_runs_the_serving_image_on_the_cpu_by_default(config):
    svc = config["services"][SERVICE]
    assert svc["build"]["dockerfile"] == "docker/serve.Dockerfile"
    assert PurePosixPath(svc["build"]["context"]) == PurePosixPath(ROOT)
    assert "deploy" not in svc, "GPU reservations belong in docker-compose.gpu.yml (opt-in)"
    assert "container_name" not in svc, "a fixed container_name prevents --scale"
    env = svc["environment"]
    assert env["AWNET_HOST"] == "0.0.0.0"
    assert env["AWNET_PORT"] == "8000"
    assert env["AWNET_MODEL_REPOSITORY"] == "/models"
    # Pass-through settings must stay unset when the shell does not set them (an empty
    # string would be an invalid value for the service's settings).
    assert all(v is None for k, v in env.items()
               if k not in {"AWNET_HOST", "AWNET_PORT", "AWNET_MODEL_REPOSITORY"})
    models = mounts(svc)["/models"]
    assert models["read_only"], "the model repository must be mounted read-only"
    assert PurePosixPath(models["source"]) == PurePosixPath(ROOT / "models" / "repository")
    assert [p["target"] for p in svc["ports"]] == [8000]


def test_service_can_scale_with_one_host_port_per_replica():
    svc = compose_config(COMPOSE_FILE, AWNET_PORTS="8000-8002")["services"][SERVICE]
    assert [(str(p["published"]), p["target"]) for p in svc["ports"]] == [("8000-8002", 8000)]


def test_gpu_override_reserves_nvidia_gpus():
    cfg = compose_config(COMPOSE_FILE, COMPOSE_GPU_FILE)
    for name in (SERVICE, "train"):
        devices = cfg["services"][name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia"
        assert "gpu" in devices[0]["capabilities"]
    # same image as on the CPU: the override only adds the reservation
    base = compose_config(COMPOSE_FILE)["services"][SERVICE]
    assert cfg["services"][SERVICE]["build"] == base["build"]
    assert cfg["services"][SERVICE]["image"] == base["image"]


def test_training_service_is_opt_in(config):
    train = config["services"]["train"]
    assert train["profiles"] == ["train"]
    assert train["build"]["dockerfile"] == "docker/train.Dockerfile"
    assert {"/workspace/runs", "/workspace/models/repository"} <= set(mounts(train))


def test_prometheus_gets_the_config_and_rules_it_references(config):
    prom = config["services"]["prometheus"]
    m = mounts(prom)
    config_flag = next(a for a in prom["command"] if a.startswith("--config.file="))
    config_path = PurePosixPath(config_flag.split("=", 1)[1])
    assert m[str(config_path)]["read_only"]
    assert PurePosixPath(m[str(config_path)]["source"]) == PurePosixPath(PROMETHEUS_CONFIG)
    # every rule_files entry (relative to the config file) lands in the mounted rules folder
    rules_target = next(t for t, v in m.items()
                        if PurePosixPath(v["source"]) == PurePosixPath(RULES_DIR))
    assert m[rules_target]["read_only"]
    for pattern in load_yaml(PROMETHEUS_CONFIG)["rule_files"]:
        assert str(PurePosixPath(config_path.parent, pattern).parent) == rules_target


def test_prometheus_discovers_every_replica_by_dns(config):
    job = next(j for j in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"] if j["job_name"] == SERVICE_JOB)
    sd = job["dns_sd_configs"]
    assert len(sd) == 1 and sd[0]["names"] == [SERVICE] and sd[0]["type"] == "A"
    container_port = config["services"][SERVICE]["ports"][0]["target"]
    assert sd[0]["port"] == container_port
    assert "static_configs" not in job


def test_grafana_is_provisioned(config):
    graf = config["services"]["grafana"]
    m = mounts(graf)
    prov = m["/etc/grafana/provisioning"]
    assert prov["read_only"] and PurePosixPath(prov["source"]) == PurePosixPath(GRAFANA_PROVISIONING)
    providers = load_yaml(GRAFANA_PROVISIONING / "dashboards" / "awnet.yml")["providers"]
    dash_path = providers[0]["options"]["path"]
    assert m[dash_path]["read_only"]
    assert PurePosixPath(m[dash_path]["source"]) == PurePosixPath(DASHBOARD.parent)
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dash_path}/{DASHBOARD.name}"
    assert graf["environment"]["GF_SECURITY_ADMIN_PASSWORD"], "documented default password"
    datasources = load_yaml(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")["datasources"]
    assert datasources[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in config["services"]


def test_images_are_pinned(config):
    for name in ("prometheus", "grafana"):
        image = config["services"][name]["image"]
        assert ":" in image and not image.endswith(":latest"), image
