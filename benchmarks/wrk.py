"""HTTP load from ``wrk``, a compiled load generator (Debian package ``wrk``), and its parsing.

A client written in Python would take as much CPU as the server it measures on two cores;
``wrk`` (C, epoll, one thread by default here) takes a small fraction. Binary KServe v2
bodies go through ``benchmarks/wrk_v2.lua``: the body is written to a file once (JSON header
naming ``artifact_contract``'s input, then the raw little-endian tensor), the script reads
it and sets ``Inference-Header-Content-Length``. Its ``done()`` prints a ``WRK_JSON`` line
with exact percentiles; ``parse_wrk`` reads it, else wrk's own text (``--latency``).

Every run is bounded in time (``-d``; wrk has no request count: a thread that stops early
still leaves its main thread sleeping the full duration) and only ever aimed at loopback
addresses (``common.check_loopback``).
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import INPUT_IMAGE
from benchmarks.common import check_loopback, ratio

LUA = Path(__file__).with_name("wrk_v2.lua")
HEADER_LENGTH = "Inference-Header-Content-Length"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


class WrkMissing(RuntimeError):
    pass


def wrk_path(name: str = "wrk") -> str:
    found = shutil.which(name)
    if not found:
        raise WrkMissing(
            f"{name} not found: install the Debian package (bash scripts/install_system_deps.sh)"
        )
    return found


def v2_body(images: np.ndarray, outputs: Sequence[str] = ()) -> tuple[bytes, int]:
    """A binary-tensor v2 request for ``images`` and its JSON header's length. ``outputs``:
    ask for these outputs only (each binary); by default every output, all binary."""
    blob = np.ascontiguousarray(images, dtype="<f4").tobytes()
    request: dict[str, Any] = {
        "inputs": [
            {
                "name": INPUT_IMAGE,
                "datatype": "FP32",
                "shape": list(images.shape),
                "parameters": {"binary_data_size": len(blob)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    if outputs:
        request["outputs"] = [
            {"name": name, "parameters": {"binary_data": True}} for name in outputs
        ]
    head = json.dumps(request).encode()
    return head + blob, len(head)


def write_body(images: np.ndarray, path: Path, outputs: Sequence[str] = ()) -> tuple[Path, int]:
    body, head_len = v2_body(images, outputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path, head_len


# --- parsing -------------------------------------------------------------------------------------
def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def _from_json(data: dict[str, Any]) -> dict[str, Any]:
    lat = data["latency_us"]
    return {
        "requests": int(data["requests"]),
        "duration_s": data["duration_us"] / 1e6,
        "bytes": int(data["bytes"]),
        "errors": {k: int(v) for k, v in data["errors"].items()},
        **{f"{k}_ms": lat[k] / 1e3 for k in ("p50", "p75", "p90", "p99")},
        "p999_ms": lat["p99.9"] / 1e3,
        "mean_ms": lat["mean"] / 1e3,
        "max_ms": lat["max"] / 1e3,
        "min_ms": lat["min"] / 1e3,
        "stdev_ms": lat["stdev"] / 1e3,
    }


def _from_text(out: str) -> dict[str, Any]:
    m = re.search(r"(\d+) requests in ([0-9.]+\w+), ([0-9.]+\w+) read", out)
    if not m:
        raise ValueError("wrk output has no 'N requests in T' line")
    res: dict[str, Any] = {
        "requests": int(m.group(1)),
        "duration_s": _ms(m.group(2)) / 1e3,
        "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0},
    }
    for q, key in (("50", "p50_ms"), ("75", "p75_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        mm = re.search(rf"^\s*{q}(?:\.000)?%\s+([0-9.]+\w+)\s*$", out, re.M)
        res[key] = _ms(mm.group(1)) if mm else None
    mm = re.search(r"^\s*Latency\s+([0-9.]+\w+)\s+([0-9.]+\w+)\s+([0-9.]+\w+)", out, re.M)
    if mm:
        res["mean_ms"], res["stdev_ms"], res["max_ms"] = (_ms(mm.group(i)) for i in (1, 2, 3))
    mm = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if mm:
        res["errors"].update(
            zip(("connect", "read", "write", "timeout"), map(int, mm.groups()), strict=True)
        )
    mm = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if mm:
        res["errors"]["status"] = int(mm.group(1))
    return res


def parse_wrk(out: str) -> dict[str, Any]:
    """wrk's stdout -> requests, ok, errors, req/s and latency percentiles in ms."""
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_JSON ")), None)
    res = _from_json(json.loads(line[len("WRK_JSON ") :])) if line else _from_text(out)
    mm = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    res["reported_requests_per_s"] = float(mm.group(1)) if mm else None
    errors = res["errors"]
    # wrk counts a non-2xx answer as a request and as a "status" error; the others are not answers
    res["ok"] = max(0, res["requests"] - errors["status"])
    res["errors_total"] = sum(errors.values())
    res["requests_per_s"] = ratio(res["ok"], res["duration_s"])
    return res


# --- running -------------------------------------------------------------------------------------
def run_wrk(
    url: str,
    *,
    connections: int,
    seconds: float,
    body: Path | None = None,
    header_length: int = 0,
    delay_ms: float = 0.0,
    threads: int = 1,
    timeout_s: float = 10.0,
    wrk: str = "wrk",
) -> dict[str, Any]:
    """One wrk run against ``url`` (loopback only); returns ``parse_wrk``'s figures plus the
    command, the client's CPU seconds and its share of the wall time."""
    check_loopback(url)
    threads = max(1, min(threads, connections))
    delay = f"{delay_ms:g}" if delay_ms > 0 else "0"
    cmd = [
        wrk_path(wrk),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(timeout_s))}s",
        "--latency",
        "-s",
        str(LUA),
        url,
        "--",
        str(body) if body is not None else "-",
        str(header_length),
        delay,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise RuntimeError(
            f"wrk failed ({res.returncode}): {' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
        )
    out = parse_wrk(res.stdout)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.update(
        {
            "command": cmd,
            "connections": connections,
            "threads": threads,
            "delay_ms": delay_ms,
            "client_cpu_s": cpu,
            "client_cpu_share": ratio(cpu, out["duration_s"]),
        }
    )
    return out
