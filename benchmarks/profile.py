"""Where a server's time goes under load: py-spy (``bench`` extra) sampling it during a wrk run.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``); this
module sums them into self time per function, inclusive time per function, and self time
per area (HTTP stack, routing, codec, validation, batching, logging, metrics, the model
call, ...). Idle threads (the event loop waiting in epoll) are left out by py-spy. The
profile runs are separate from the measured ones: sampling slows the server a little. Two
recordings: every active thread (where the wall time of the threads goes), and ``--gil``
(only the thread holding the GIL: where the Python CPU time goes, the scarce resource of
a one-process Python server).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import log

# (area, pattern on the frame's file path): first match wins, so specific before general
AREAS = (
    ("model call (onnxruntime)", r"onnxruntime/"),
    ("service: v2 codec", r"service/codec_v2\.py"),
    ("service: validation (dataplane, images)", r"service/(dataplane|images)\.py"),
    ("service: batching", r"service/batching\.py"),
    ("service: runtime wrapper", r"service/runtime\.py"),
    ("service: access log", r"service/logging\.py|/logging/"),
    ("service: metrics", r"service/metrics\.py|prometheus_client/"),
    ("service: routes and deps", r"service/"),
    ("numpy", r"numpy/"),
    ("json", r"/json/"),
    ("HTTP server (uvicorn, h11, httptools)", r"uvicorn/|h11/|httptools/"),
    ("routing (starlette, fastapi, pydantic, anyio)", r"starlette/|fastapi/|pydantic|anyio/"),
    ("asyncio event loop", r"asyncio/|uvloop/"),
    ("threads, executor", r"concurrent/|threading\.py|queue\.py"),
)
# leaf functions that mean "waiting", whatever py-spy's idle detection made of them
WAITING = re.compile(
    r"^(Condition\.wait|Event\.wait|Queue\.get|\w*Selector\.select|_worker|WorkerThread\.run)$"
)
# (thread, pattern on the whole stack): which thread a sample is from
THREADS = (
    ("anyio threadpool (sync routes and dependencies)", r"WorkerThread\.run \(anyio/"),
    (
        "executor threads (ORT runner, asyncio.to_thread)",
        r"_worker \(concurrent/futures/thread\.py",
    ),
    ("event loop (main thread)", r"^_run_module_as_main|asyncio/base_events\.py"),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_path() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else None


def _split(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    return (m.group("func"), m.group("file")) if m else (frame.strip(), "")


def area_of(path: str, func: str = "") -> str:
    if WAITING.match(func):
        return "waiting (locks, queues, epoll)"
    for name, pat in AREAS:
        if re.search(pat, path):
            return name
    return "other"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return path.split("/work/main/", 1)[-1]


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    """Collapsed stacks -> total samples, top self and inclusive functions, self time by area."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_split(f) for f in stack.split(";") if f.strip()]
        frames = [(fn, fl) for fn, fl in frames if fl]  # drop thread/process labels
        if not frames:
            continue
        fn, fl = frames[-1]
        self_t[f"{fn} ({_short(fl)})"] += n
        areas[area_of(fl, fn)] += n
        threads[
            next((name for name, pat in THREADS if re.search(pat, stack)), "other threads")
        ] += n
        for key in {f"{f} ({_short(p)})" for f, p in frames}:
            incl[key] += n

    def rows(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "share": v / total} for k, v in c.most_common(top)]

    return {
        "samples": total,
        "self": rows(self_t),
        "inclusive": rows(incl),
        "areas": [{"area": k, "samples": v, "share": v / total} for k, v in areas.most_common()],
        "threads": [
            {"thread": k, "samples": v, "share": v / total} for k, v in threads.most_common()
        ],
    }


def profile_under_load(
    pid: int,
    load: Callable[[], dict[str, Any]],
    seconds: float,
    out: Path,
    rate: int = 250,
    gil: bool = False,
) -> dict[str, Any] | None:
    """Record ``pid`` with py-spy for ``seconds`` while ``load()`` runs; None without py-spy.
    ``gil``: only samples of the thread holding the GIL (the Python CPU time; ONNX Runtime
    releases the GIL, so the model call's native work is not in it)."""
    spy = py_spy_path()
    if spy is None:
        log("profile: py-spy not installed (pip install -e '.[bench]'); skipped")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        *(["--gil"] if gil else []),
    ]
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(load()), daemon=True)
    worker.start()
    try:
        spy_out, _ = spy_proc.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        spy_proc.kill()
        spy_out, _ = spy_proc.communicate()
    worker.join(seconds + 120)
    if spy_proc.returncode != 0 or not out.is_file():
        log(f"profile: py-spy failed ({spy_proc.returncode}): {spy_out[-1500:]}")
        return None
    summary = summarize(out.read_text())
    summary.update(
        {
            "raw": str(out),
            "seconds": seconds,
            "rate_hz": rate,
            "command": cmd,
            "load": {
                k: result.get(k) for k in ("connections", "requests_per_s", "p50_ms", "p99_ms")
            },
        }
    )
    return summary
