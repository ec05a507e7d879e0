"""Small helpers every part of the benchmark shares: paths, formatting, ratios, /proc reads."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
SHIPPED_MODEL, SHIPPED_VERSION = "awnet-mnist", "3"  # the bundled default (scripts/make_default_model.sh)
DEFAULT_MODEL_DIR = ROOT / "models/repository" / SHIPPED_MODEL / SHIPPED_VERSION
DEFAULT_CHECKPOINT = ROOT / "models/checkpoints" / f"{SHIPPED_MODEL}-{SHIPPED_VERSION}.pt"
DEFAULT_OUT = ROOT / "runs/benchmark"
DOC = ROOT / "docs/benchmark.md"
FIGURES = ROOT / "docs/figures"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- numbers and tables --------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_num(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def fmt_ms(p50: float | None, p90: float | None = None) -> str:
    if p50 is None:
        return "-"
    return f"{fmt_num(p50)} / {fmt_num(p90 if p90 is not None else p50)}"


def fmt_int(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def format_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A plain-text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(c) for c in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)
        )

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- the machine ----------------------------------------------------------------------------------
def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, as in a container), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def proc_status_bytes(key: str, pid: int | str = "self") -> int | None:
    """``VmHWM``/``VmRSS`` of a process from /proc (Linux), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def peak_rss_bytes() -> int:
    """Peak resident set of this process: VmHWM, else getrusage (KiB on Linux, bytes on macOS)."""
    hwm = proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Triton's server binary is a child of PyTriton)."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += _children(p)
    return seen


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes so far (0 for those gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def tree_rss_bytes(pid: int) -> int:
    return sum(proc_status_bytes("VmRSS", p) or 0 for p in process_tree(pid))


# --- network ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_loopback(url: str) -> str:
    """Only loopback services: this is a load generator, never point it at someone else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"error: --url {url!r} must look like http://127.0.0.1:8000")
    infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    addrs = {info[4][0] for info in infos}
    if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise SystemExit(
            f"error: --url {url!r} resolves to {sorted(addrs)}: loopback addresses only"
        )
    return url.rstrip("/")
