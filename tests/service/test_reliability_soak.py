"""Load and soak on loopback: nothing lost under load, memory flat.

``python -m service`` with the shipped model; ``wrk`` (Debian package, installed by
scripts/install_system_deps.sh) sends KServe v2 binary requests to 127.0.0.1 only:

1. saturation: a short closed-loop run with many connections measures the top rate;
2. soak: ``AWNET_SOAK_SECONDS`` (30 in CI; 300 for docs/reliability.md) at 70 % of that rate,
   paced by wrk's ``delay()`` (calibrated in short runs; the share achieved is printed: on a
   machine shared with other jobs it drifts), with 0 failed requests (no socket
   error, no non-2xx answer, no 5xx in the service's own metrics), RSS growth under 5 %, and
   the latency quantiles printed.

Bounded: every wrk run has a duration and a timeout; the server is stopped at the end.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support.images import synthetic_digits
from tests.support.servers import start_process
from tests.support.v2client import metric, scrape

MODEL = "awnet-mnist"
SOAK_SECONDS = float(os.environ.get("AWNET_SOAK_SECONDS", "30"))
TARGET_SHARE = 0.70
LUA = r"""
local f = assert(io.open(os.getenv("AWNET_WRK_BODY"), "rb"))
local body = f:read("*all")
f:close()
local header_length = os.getenv("AWNET_WRK_HEADER_LENGTH")
local pause = tonumber(os.getenv("AWNET_WRK_DELAY_MS") or "0")
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = header_length
function delay()
  return pause
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'AWNET {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, ' ..
    '"p999_ms": %.3f, "max_ms": %.3f, "mean_ms": %.3f}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000,
    latency.mean / 1000))
end
"""


def _body(folder: Path) -> tuple[Path, int]:
    images = synthetic_digits(1).astype("<f4")
    raw = images.tobytes()
    head = json.dumps({"inputs": [{"name": "image", "datatype": "FP32",
                                   "shape": list(images.shape),
                                   "parameters": {"binary_data_size": len(raw)}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                                   {"name": "p_adv", "parameters": {"binary_data": True}}]}
                      ).encode()
    path = folder / "body.bin"
    path.write_bytes(head + raw)
    return path, len(head)


def wrk(url: str, folder: Path, seconds: float, delay_ms: float, connections: int) -> dict:
    script = folder / "soak.lua"
    script.write_text(LUA)
    body, header_length = _body(folder)
    env = {**os.environ, "AWNET_WRK_BODY": str(body), "AWNET_WRK_HEADER_LENGTH": str(header_length),
           "AWNET_WRK_DELAY_MS": f"{delay_ms:.3f}"}
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", "10s", "-s", str(script), f"{url}/v2/models/{MODEL}/infer"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    match = re.search(r"^AWNET (\{.*\})$", done.stdout, re.M)
    assert done.returncode == 0 and match, done.stdout + done.stderr
    out = json.loads(match.group(1))
    out["rate"] = out["requests"] / (out["duration_us"] / 1e6)
    out["connections"] = connections
    out["failed"] = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def paced(url: str, folder: Path, target: float, connections: int,
          service_ms: float) -> tuple[float, dict]:
    """wrk's delay() for ``target`` requests/s on ``connections`` connections, calibrated in
    short runs (rate = connections / (delay + service time))."""
    delay = max(0.1, connections / target * 1e3 - service_ms)
    probe: dict = {}
    for _ in range(6):
        probe = wrk(url, folder, 3, delay, connections)
        if abs(probe["rate"] / target - 1) < 0.05:
            break
        service_ms = max(0.0, connections / probe["rate"] * 1e3 - delay)
        delay = max(0.1, connections / target * 1e3 - service_ms)
    return delay, probe


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed "
                    "(bash scripts/install_system_deps.sh)")
def test_soak_at_70_percent_of_saturation_loses_nothing(shipped_repository, tmp_path):
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1", "AWNET_INTER_OP_THREADS": "1",
           "AWNET_LOG_LEVEL": "WARNING"}
    with start_process(shipped_repository, env) as server:
        pid = server.proc.pid
        # The top of three closed-loop runs (the machine is shared: take its best moment).
        probes = [wrk(server.url, tmp_path, 4, 0.0, c) for c in (8, 16, 32)]
        assert all(p["failed"] == 0 for p in probes), probes
        saturation = max(probes, key=lambda p: p["rate"])
        target = TARGET_SHARE * saturation["rate"]
        connections = saturation["connections"]  # batching needs the concurrency
        delay, probe = paced(server.url, tmp_path, target, connections, saturation["mean_ms"])
        rss_start = rss_mib(pid)
        soak = wrk(server.url, tmp_path, SOAK_SECONDS, delay, connections)
        rss_end = rss_mib(pid)
        samples = scrape(server.url)
        logs = server.logs()
    # (the readiness polls of start-up, 503 while loading, are not requests of the load)
    five_xx = sum(v for (name, labels), v in samples.items()
                  if name == "awnet_requests_total" and dict(labels)["status"][0] == "5"
                  and dict(labels)["endpoint"] != "/v2/health/ready")
    closed = metric(samples, "awnet_requests_total", model=MODEL, status="499")
    ok = metric(samples, "awnet_requests_total", model=MODEL, status="200")
    growth = (rss_end - rss_start) / rss_start
    print(f"\nsaturation {saturation['rate']:.0f} req/s ({saturation['connections']} connections, best of 8/16/32, p50 "
          f"{saturation['p50_ms']:.2f} ms, p99 {saturation['p99_ms']:.2f} ms); soak "
          f"{SOAK_SECONDS:.0f} s at {soak['rate']:.0f} req/s = "
          f"{soak['rate'] / saturation['rate']:.0%} of saturation ({connections} connections, "
          f"delay {delay:.2f} ms): {soak['requests']} requests, {soak['failed']} failed, "
          f"latency p50 {soak['p50_ms']:.2f} / p90 {soak['p90_ms']:.2f} / p99 "
          f"{soak['p99_ms']:.2f} / p99.9 {soak['p999_ms']:.2f} / max {soak['max_ms']:.2f} ms; "
          f"RSS {rss_start:.1f} -> {rss_end:.1f} MiB ({growth:+.2%}); service 5xx {five_xx:.0f}, "
          f"200s {ok:.0f}, 499s (wrk closing its connections at the end of a run) {closed:.0f}")
    assert soak["failed"] == 0, soak
    assert five_xx == 0
    assert ok >= soak["requests"]  # every request wrk counted was answered 200 by the service
    # Paced to 70 %; the machine is shared with other jobs, so the share achieved is
    # only checked to be well below saturation and well above idle.
    assert 0.5 <= soak["rate"] / saturation["rate"] <= 0.95, (soak, saturation)
    assert growth < 0.05, (rss_start, rss_end)
    assert '"level": "ERROR"' not in logs and "Traceback" not in logs, logs[-3000:]
    assert np.isfinite(soak["p99_ms"])
