"""The servers under load: the service (``python -m service``) and PyTriton, started and stopped.

Both bind 127.0.0.1 on free ports, log to files in the run's folder, and are stopped with
SIGTERM (SIGKILL after 30 s). ``Server.batch_counters()`` reads the server's own metrics:
inputs and model calls so far (the service's ``awnet_batch_size`` histogram, Triton's
``nv_inference_count`` / ``nv_inference_exec_count``), whose ratio over a load level is the
mean batch the dynamic batcher formed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.baselines import ModelFiles
from benchmarks.common import ROOT, free_port, process_tree

TRITON_VENV_PYTHON = ROOT / ".venv-triton/bin/python"


@dataclass
class Server:
    kind: str  # "service", "service-wN" (N workers: service_kind) or "triton"
    url: str
    models: list[str]
    proc: subprocess.Popen[bytes] | None = None
    metrics_url: str = ""
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def pids(self) -> list[int]:
        return process_tree(self.pid) if self.pid is not None else []

    def infer_url(self, model: str) -> str:
        return f"{self.url}/v2/models/{model}/infer"

    def batch_counters(self, model: str) -> tuple[float, float]:
        """(inputs, model calls) so far for ``model``, from the server's metrics."""
        text = get(self.metrics_url)
        if self.kind.startswith("service"):
            return (metric_sum(text, "awnet_batch_size_sum", model),
                    metric_sum(text, "awnet_batch_size_count", model))  # fmt: skip
        return metric_sum(text, "nv_inference_count", model), metric_sum(
            text, "nv_inference_exec_count", model
        )


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback URLs we built
        return r.read().decode()


def metric_sum(text: str, name: str, model: str) -> float:
    """Sum of a Prometheus series over every label set with ``model="<model>"``."""
    total = 0.0
    pat = re.compile(rf"^{re.escape(name)}\{{(?P<labels>[^}}]*)\}}\s+(?P<value>\S+)$")
    for line in text.splitlines():
        m = pat.match(line)
        if m and f'model="{model}"' in m.group("labels"):
            total += float(m.group("value"))
    return total


def _wait_ready(server: Server, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    paths = [f"/v2/models/{m}/ready" for m in server.models] or ["/v2/health/ready"]
    while True:
        if server.proc is not None and server.proc.poll() is not None:
            tail = server.log_path.read_text()[-3000:] if server.log_path else ""
            raise RuntimeError(
                f"{server.kind} exited with {server.proc.returncode} while starting:\n{tail}"
            )
        try:
            for p in paths:
                get(server.url + p, timeout=2.0)
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{server.kind} not ready on {server.url} after {timeout_s:.0f} s "
                    f"(log: {server.log_path})"
                ) from None
            time.sleep(0.25)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def _launched(
    server: Server, cmd: Sequence[str], env: Mapping[str, str], timeout_s: float
) -> Iterator[Server]:
    assert server.log_path is not None
    server.log_path.parent.mkdir(parents=True, exist_ok=True)
    with server.log_path.open("wb") as logf:
        server.proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=dict(env), stdout=logf, stderr=subprocess.STDOUT
        )
        try:
            _wait_ready(server, timeout_s)
            yield server
        finally:
            _stop(server.proc)


def repository_of(models: Sequence[ModelFiles], root: Path) -> Path:
    """A model repository of symlinks ``<name>/<version>`` -> each model's folder."""
    for m in models:
        link = root / m.manifest.name / m.manifest.version
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(m.dir.resolve(), target_is_directory=True)
    return root


def service_kind(workers: int) -> str:
    """The service's name in the tables: ``service`` with one worker, ``service-wN`` with N."""
    return "service" if workers == 1 else f"service-w{workers}"


@contextlib.contextmanager
def service(
    models: Sequence[ModelFiles],
    workdir: Path,
    *,
    kind: str = "service",
    device: str = "cpu",
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> Iterator[Server]:
    """``python -m service`` serving ``models`` with its defaults (plus ``extra_env``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
    awnet = {
        "AWNET_HOST": "127.0.0.1",
        "AWNET_PORT": str(port),
        "AWNET_PROVIDERS": device,
        "AWNET_MODEL_REPOSITORY": str(repository_of(models, workdir / "repository")),
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    server = Server(
        kind,
        url,
        [m.manifest.name for m in models],
        metrics_url=f"{url}/metrics",
        log_path=workdir / "service.log",
        env=awnet,
    )
    with _launched(server, [sys.executable, "-m", "service"], {**env, **awnet}, timeout_s) as s:
        yield s


def triton_python(given: Path | None) -> Path | None:
    """The interpreter with pytriton: ``given``, else .venv-triton's, else this one if it has it."""
    candidates = [given] if given is not None else [TRITON_VENV_PYTHON, Path(sys.executable)]
    for py in candidates:
        if py is not None and py.exists():
            res = subprocess.run(
                [str(py), "-c", "import pytriton, onnxruntime"], capture_output=True, timeout=120
            )
            if res.returncode == 0:
                return py
    return None


@contextlib.contextmanager
def triton(
    model: ModelFiles,
    workdir: Path,
    python: Path,
    *,
    device: str = "cpu",
    max_batch: int = 32,
    delay_us: int = 2000,
    threads: int = 0,
    timeout_s: float = 300.0,
) -> Iterator[Server]:
    """PyTriton (``benchmarks.triton_server``) serving ``model`` with the same ONNX session."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [
        str(python),
        "-m",
        "benchmarks.triton_server",
        "--model-dir",
        str(model.dir),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--max-batch",
        str(max_batch),
        "--delay-us",
        str(delay_us),
        "--threads",
        str(threads),
        "--device",
        device,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("VIRTUAL_ENV", None)
    server = Server(
        "triton",
        f"http://127.0.0.1:{http}",
        [model.manifest.name],
        metrics_url=f"http://127.0.0.1:{metrics}/metrics",
        log_path=workdir / "triton.log",
    )
    with _launched(server, cmd, env, timeout_s) as s:
        yield s
