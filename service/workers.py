"""``AWNET_WORKERS`` > 1: a supervisor and N worker processes serving one port.

Why: one process runs its request handling on one core at a time (the GIL), and the model
call on a second; under load a single process leaves part of a two-core machine idle
(docs/benchmark.md). Each worker is a whole ``python -m service`` (own ONNX Runtime sessions,
batchers and event loop) bound to the port with ``SO_REUSEPORT``, so the kernel spreads the
connections over the workers (a shared listening socket lets whichever worker wakes first
take a whole burst of connections).

The supervisor (Gunicorn's and uvicorn's pattern, with our drain): it empties the
Prometheus multiprocess folder, starts the workers (``spawn``: no ONNX Runtime threads are
ever forked), forwards SIGTERM / SIGINT to them and waits for their drains; a worker that
dies after it started is replaced (at most ``MAX_RESTARTS`` in ``RESTART_WINDOW_S``), a
worker that fails to start stops them all (exit status 1). Workers sit in their own process
group (a terminal's Ctrl-C reaches the supervisor only, which forwards it once) and drain by
themselves when the supervisor disappears.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

from service.metrics import MULTIPROC_ENV
from service.settings import Settings

log = logging.getLogger("service")

MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _worker(index: int, parent_pid: int, started: Event) -> None:
    """One worker process: the same settings (the environment), its own socket and server."""
    os.setpgrp()
    from service.logging import configure_logging
    from service.server import build_server

    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        sock = reuse_port_socket(settings.host, settings.port)
    except OSError as exc:
        log.error("worker %d cannot bind %s:%d: %s", index, settings.host, settings.port, exc)
        sys.exit(3)
    log.info("worker %d (pid %d) starting", index, os.getpid(),
             extra={"worker": index, "pid": os.getpid()})
    # Listens only once its models are loaded: while a (re)started worker loads, the kernel
    # gives every connection to the workers already serving (none is answered "loading").
    server = build_server(settings, parent_pid=parent_pid, on_started=started.set,
                          listen_when_loaded=True)
    server.run(sockets=[sock])
    sys.exit(0 if server.started else 1)


def metrics_folder() -> tuple[Path, bool]:
    """``PROMETHEUS_MULTIPROC_DIR`` emptied of an earlier run's files, or a new temporary
    folder (True: the supervisor removes it at the end)."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return path, False
    return Path(tempfile.mkdtemp(prefix="awnet-metrics-")), True


class Supervisor:
    """Starts, watches, replaces and stops the worker processes."""

    def __init__(self, settings: Settings, metrics_dir: Path) -> None:
        self.settings = settings
        self.metrics_dir = metrics_dir
        self.ctx = multiprocessing.get_context("spawn")
        self.workers: dict[int, SpawnProcess] = {}
        self.started: dict[int, Event] = {}
        self.restarts: list[float] = []
        self.stopping = False
        self.signals = 0
        self.status = 0

    def start(self, index: int) -> None:
        started = self.started[index] = self.ctx.Event()
        proc = self.ctx.Process(target=_worker, args=(index, os.getpid(), started),
                                name=f"awnet-worker-{index}", daemon=False)
        proc.start()
        self.workers[index] = proc

    def handle_signal(self, sig: int, frame: FrameType | None) -> None:
        """First signal: every worker drains. A second SIGINT is forwarded too (forced exit)."""
        self.signals += 1
        if self.signals > 1 and sig != signal.SIGINT:
            return
        if not self.stopping:
            log.info("received %s: stopping %d workers", signal.Signals(sig).name,
                     len(self.workers))
        self.stopping = True
        self.forward(sig)

    def forward(self, sig: int) -> None:
        for proc in self.workers.values():
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, sig)

    def reap(self, index: int, proc: SpawnProcess) -> None:
        """A worker exited: forget its live gauges, then replace it or stop everything."""
        from prometheus_client.multiprocess import mark_process_dead

        del self.workers[index]
        if proc.pid is not None:
            mark_process_dead(proc.pid, str(self.metrics_dir))
        code = proc.exitcode
        if self.stopping:
            # A worker still starting when the stop came dies of the forwarded signal: not
            # a failure (it had not taken any request yet).
            if code not in (0, -signal.SIGTERM, -signal.SIGINT):
                self.status = 1
            return
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW_S]
        early = not self.started[index].is_set()
        if early or len(self.restarts) >= MAX_RESTARTS:
            why = ("it failed while starting" if early else
                   f"{MAX_RESTARTS} restarts within {RESTART_WINDOW_S:g} s")
            log.error("worker %d exited with status %s: stopping every worker (%s)",
                      index, code, why, extra={"worker": index, "exit_code": code})
            self.status = 1
            self.stopping = True
            self.forward(signal.SIGTERM)
            return
        log.error("worker %d exited with status %s: starting a new one", index, code,
                  extra={"worker": index, "exit_code": code})
        self.restarts.append(now)
        self.start(index)

    def run(self) -> int:
        n = self.settings.workers
        previous = {s: signal.signal(s, self.handle_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(n):
                self.start(i)
            log.info("supervisor (pid %d): %d workers on %s:%d", os.getpid(), n,
                     self.settings.host, self.settings.port,
                     extra={"workers": n, "pid": os.getpid()})
            while self.workers:
                by_sentinel = {p.sentinel: i for i, p in self.workers.items()}
                for sentinel in wait(list(by_sentinel), timeout=1.0):
                    index = by_sentinel[sentinel]  # type: ignore[index]
                    proc = self.workers[index]
                    proc.join()
                    self.reap(index, proc)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        return self.status


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` worker processes until they stop; the exit status."""
    path, temporary = metrics_folder()
    os.environ[MULTIPROC_ENV] = str(path)  # read by prometheus_client in every worker
    try:
        return Supervisor(settings, path).run()
    finally:
        if temporary:
            for f in path.glob("*.db"):
                f.unlink()
            path.rmdir()
