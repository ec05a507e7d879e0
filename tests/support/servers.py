"""The service under test, three ways.

* ``app_client(repo, **settings)``: FastAPI's ``TestClient`` around ``create_app(Settings)``
  (no socket, lifespan run): for API, codec, error and metrics tests.
* ``start_server(repo, **settings)``: real uvicorn in a thread of the test process, on a free
  local port (fast to start; several can run at once thanks to per-app metrics registries):
  where a real socket matters (tritonclient, timing, loading).
* ``start_process(repo, env)``: ``python -m service`` in a subprocess (signals, exit codes,
  logs, other processes such as Prometheus or the benchmark scraping it).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.paths import ROOT
from tests.support.processes import Process, python_env, wait_until

READY = "/v2/health/ready"
LIVE = "/v2/health/live"


@dataclass
class Server:
    url: str
    settings: Any = None
    app: Any = None
    process: Process | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def target(self) -> str:
        """host:port (a Prometheus target, tritonclient's address)."""
        return self.url.removeprefix("http://")

    @property
    def proc(self):
        return self.process.proc if self.process is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.process.log_path if self.process is not None else None

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 30.0), **kw)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def bound_socket() -> socket.socket:
    """A TCP socket bound to a free local port (uvicorn serves on it as it is)."""
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
    # (proto 0 means 40 ms delayed-ACK stalls per request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


def free_port() -> int:
    with contextlib.closing(bound_socket()) as sock:
        return sock.getsockname()[1]


def _answers_200(target: str | httpx.Client, path: str) -> bool:
    try:
        if isinstance(target, httpx.Client):
            return target.get(path).status_code == 200
        return httpx.get(target + path, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def wait_for(
    target: str | httpx.Client,
    path: str = READY,
    timeout: float = 60.0,
    process: Process | None = None,
) -> None:
    """Poll ``path`` until it answers 200; fail (with the server's log) otherwise."""

    def ok() -> bool:
        if process is not None:
            process.fail_if_dead()
        return _answers_200(target, path)

    where = target if isinstance(target, str) else str(target.base_url)
    log = f" (server log: {process.log_path})" if process is not None else ""
    wait_until(ok, timeout, interval=0.05, what=f"{where}{path} == 200{log}")


def _settings(repository: Path, **overrides: Any):
    from service.settings import Settings

    return Settings(model_repository=repository, **overrides)


@contextlib.contextmanager
def app_client(repository: Path, wait: str | None = "ready", **overrides: Any) -> Iterator[Any]:
    """A ``TestClient`` of ``create_app(Settings(model_repository=repository, **overrides))``,
    lifespan started (and stopped at the end); waits for readiness unless ``wait`` is None."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    app = create_app(_settings(repository, **overrides))
    with TestClient(app) as client:
        if wait:
            wait_for(client, READY if wait == "ready" else LIVE)
        yield client


@contextlib.contextmanager
def start_server(repository: Path, wait: str = "ready", **overrides: Any) -> Iterator[Server]:
    """uvicorn + create_app(Settings(...)) in a background thread, on a free port."""
    import uvicorn

    from service.app import create_app

    sock = bound_socket()
    port = sock.getsockname()[1]
    settings = _settings(repository, host="127.0.0.1", port=port, **overrides)
    app = create_app(settings)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, READY if wait == "ready" else LIVE)
        yield Server(url=url, settings=settings, app=app, extra={"uvicorn": server})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def start_process(
    repository: Path | None,
    env: dict[str, str] | None = None,
    wait: str | None = "ready",
    log_path: Path | None = None,
    timeout: float = 90.0,
    *,
    port: int | None = None,
    command: Callable[[dict[str, str]], list[str]] | None = None,
) -> Iterator[Server]:
    """``python -m service`` on a free port (or ``port``), configured by AWNET_* variables (none
    inherited from this process); stopped with SIGTERM at the end. Its output goes to
    ``log_path`` (a temporary file, removed at the end, when not given).

    ``command(settings)``: another command line serving the same way, given the AWNET_*
    settings it is to pass on itself (e.g. ``buildah run --env ... <container> -- <CMD>``:
    a container does not inherit the environment); by default ``python -m service``.
    """
    if port is None:
        port = free_port()
    full_env = python_env(AWNET_PORT=str(port), AWNET_HOST="127.0.0.1", PYTHONUNBUFFERED="1")
    if repository is not None:
        full_env["AWNET_MODEL_REPOSITORY"] = str(repository)
    full_env.update(env or {})
    if command is None:
        cmd = [sys.executable, "-m", "service"]
    else:
        cmd = command({k: v for k, v in full_env.items() if k.startswith("AWNET_")})
    own_log = log_path is None
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"awnet-serve-{port}-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    process = Process("service", cmd, log_path, env=full_env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        if wait:
            wait_for(url, READY if wait == "ready" else LIVE, timeout=timeout, process=process)
        yield Server(url=url, process=process)
    finally:
        process.stop(timeout=30)
        if own_log:
            log_path.unlink(missing_ok=True)
