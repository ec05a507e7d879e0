"""Fixtures for the service tests: real uvicorn servers on free local ports.

* ``start_server(repo, **settings)``: a context manager running uvicorn in a thread of the
  test process (fast to start; several can run at once thanks to per-app metrics registries).
* ``start_process(repo, env)``: ``python -m service`` in a subprocess (signals, exit codes).
* ``post_tensors(url, model, images, ...)``: a KServe v2 binary-tensor request, returning the
  outputs as numpy arrays - e.g. for clean-vs-PGD tests against the shipped model.
* ``scrape(url)``: the parsed ``/metrics`` of a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from tests.service.fake_model import build_model, model_bytes, write_model_version

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_REPOSITORY = PROJECT_ROOT / "models" / "repository"
SHIPPED_MODEL = "awnet-mnist"
SHIPPED_VERSION_DIR = SHIPPED_REPOSITORY / SHIPPED_MODEL / "1"
FAKE_MODEL = "awnet-fake"
HEADER_LENGTH = "Inference-Header-Content-Length"


# --- servers ---------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    settings: Any = None
    app: Any = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def _bound_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (proto 0 means 40 ms delayed-ACK stalls per request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    with contextlib.closing(_bound_socket()) as sock:
        return sock.getsockname()[1]


def wait_for(url: str, path: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {path} answered 200")
        try:
            r = httpx.get(url + path, timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:300]}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url}{path} did not answer 200 within {timeout}s (last: {last})")


@contextlib.contextmanager
def start_server(repository: Path, wait: str = "ready", **overrides: Any) -> Iterator[Server]:
    """uvicorn + create_app(Settings(...)) in a background thread, on a free port."""
    from service.app import create_app
    from service.settings import Settings

    sock = _bound_socket()
    port = sock.getsockname()[1]
    settings = Settings(model_repository=repository, host="127.0.0.1", port=port, **overrides)
    app = create_app(settings)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, "/v2/health/ready" if wait == "ready" else "/v2/health/live")
        yield Server(url=url, settings=settings, app=app, extra={"uvicorn": server})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def start_process(
    repository: Path | None, env: dict[str, str] | None = None, wait: str = "ready",
    log_path: Path | None = None,
) -> Iterator[Server]:
    """``python -m service`` in a subprocess; stops it with SIGTERM at the end."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
    full_env.update({"AWNET_PORT": str(port), "AWNET_HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    if repository is not None:
        full_env["AWNET_MODEL_REPOSITORY"] = str(repository)
    full_env.update(env or {})
    own_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"awnet-serve-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "service"], cwd=PROJECT_ROOT, env=full_env,
        stdout=log_file, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    server = Server(url=url, proc=proc, log_path=log_path)
    try:
        if wait:
            try:
                wait_for(url, "/v2/health/ready" if wait == "ready" else "/v2/health/live",
                         proc=proc)
            except Exception as exc:
                raise RuntimeError(f"{exc}\n--- server log ---\n{server.logs()}") from exc
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_file.close()
        if own_log:
            log_path.unlink(missing_ok=True)


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fake_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one fake model version: awnet-fake/1 (1x28x28, 10 classes, t=0.5)."""
    repo = tmp_path_factory.mktemp("repo")
    write_model_version(repo, FAKE_MODEL, "1")
    return repo


@pytest.fixture(scope="session")
def repository(fake_repository: Path) -> Path:
    """The repository most tests run against (a fixture so it can be swapped)."""
    return fake_repository


@pytest.fixture(scope="session")
def slow_layer_seconds() -> float:
    """Measured time of one slow-chain layer (single ORT thread), to size slow models."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes(build_model(slow_layers=8)), so,
                                providers=["CPUExecutionProvider"])
    feeds = {"image": np.zeros((1, 1, 28, 28), np.float32),
             "mix_override": np.full((1,), -1.0, np.float32)}
    sess.run(None, feeds)
    best = min(_timed(sess, feeds) for _ in range(3))
    return max(best / 8, 1e-4)


def _timed(sess: Any, feeds: dict[str, np.ndarray]) -> float:
    t0 = time.perf_counter()
    sess.run(None, feeds)
    return time.perf_counter() - t0


def slow_layers_for(seconds: float, per_layer: float) -> int:
    return max(1, round(seconds / per_layer))


@pytest.fixture(scope="session")
def shipped_repository() -> Path:
    if not (SHIPPED_VERSION_DIR / "manifest.json").is_file():
        pytest.skip(f"the shipped model is not there yet ({SHIPPED_VERSION_DIR} has no "
                    "manifest.json): these tests run once training exports it")
    return SHIPPED_REPOSITORY


# --- helpers -------------------------------------------------------------------------------------
def post_tensors(
    url: str,
    model: str,
    images: np.ndarray,
    mix_override: np.ndarray | None = None,
    *,
    version: str | None = None,
    binary: bool = True,
    outputs: tuple[str, ...] = ("logits", "p_adv", "mix", "probabilities", "adversarial"),
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
    client: httpx.Client | None = None,
) -> dict[str, np.ndarray]:
    """Send float32 ``images`` [N, C, H, W] (and optionally ``mix_override`` [N]) to
    ``/v2/models/{model}[/versions/{v}]/infer``; return the outputs as numpy arrays.

    Raises ``httpx.HTTPStatusError`` on a non-200 answer.
    """
    images = np.ascontiguousarray(images, dtype="<f4")
    tensors = [("image", images)]
    if mix_override is not None:
        tensors.append(("mix_override", np.ascontiguousarray(mix_override, dtype="<f4")))
    req: dict[str, Any] = {"inputs": [], "outputs": [
        {"name": n, "parameters": {"binary_data": binary}} for n in outputs]}
    blobs = []
    for name, arr in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": "FP32", "shape": list(arr.shape)}
        if binary:
            blob = arr.tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = arr.ravel().tolist()
        req["inputs"].append(entry)
    head = json.dumps(req).encode()
    hdrs = dict(headers or {})
    if binary:
        hdrs[HEADER_LENGTH] = str(len(head))
        hdrs["Content-Type"] = "application/octet-stream"
    else:
        hdrs["Content-Type"] = "application/json"
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    post = client.post if client is not None else httpx.post
    r = post(url + path, content=head + b"".join(blobs), headers=hdrs, timeout=timeout)
    r.raise_for_status()
    return decode_v2_response(r)


def decode_v2_response(r: httpx.Response) -> dict[str, np.ndarray]:
    dtypes = {"FP32": "<f4", "BOOL": "?", "INT64": "<i8", "FP64": "<f8"}
    length = r.headers.get(HEADER_LENGTH)
    body = r.content
    head = json.loads(body[: int(length)] if length else body)
    offset = int(length) if length else 0
    result: dict[str, np.ndarray] = {}
    for out in head["outputs"]:
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw = body[offset:offset + size]
            offset += size
            if out["datatype"] == "BYTES":
                items, i = [], 0
                while i < len(raw):
                    n = int.from_bytes(raw[i:i + 4], "little")
                    items.append(raw[i + 4:i + 4 + n])
                    i += 4 + n
                arr = np.array(items, dtype=object)
            else:
                arr = np.frombuffer(raw, dtype=dtypes[out["datatype"]])
        else:
            arr = np.array(out["data"], dtype=object if out["datatype"] == "BYTES"
                           else dtypes[out["datatype"]])
        result[out["name"]] = arr.reshape(out["shape"])
    return result


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """``/metrics`` as {(sample name, frozenset(labels.items())): value}."""
    text = httpx.get(url + "/metrics", timeout=10).text
    samples: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def metric(samples: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))
