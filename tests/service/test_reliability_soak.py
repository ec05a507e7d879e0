"""Load and soak on loopback: nothing lost under load, memory flat.

``python -m service`` with the shipped model; ``wrk`` (Debian package, installed by
scripts/install_system_deps.sh) sends KServe v2 binary requests to 127.0.0.1 only, driven
through ``benchmarks.wrk`` (its ``wrk_v2.lua`` script, its output parsing):

1. saturation: a short closed-loop run with many connections measures the top rate;
2. soak: ``AWNET_SOAK_SECONDS`` (30 in CI; 300 for docs/reliability.md) at 70 % of that rate,
   paced by wrk's ``delay()`` (calibrated in short runs; the share achieved is printed: on a
   machine shared with other jobs it drifts), with 0 failed requests (no socket
   error, no non-2xx answer, no 5xx in the service's own metrics), RSS growth under 5 %, and
   the latency quantiles printed.

Bounded: every wrk run has a duration and a timeout; the server is stopped at the end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.wrk import WrkMissing, run_wrk, write_body, wrk_path
from tests.support.images import synthetic_digits
from tests.support.servers import start_process
from tests.support.v2client import metric, scrape

MODEL = "awnet-mnist"
SOAK_SECONDS = float(os.environ.get("AWNET_SOAK_SECONDS", "30"))
TARGET_SHARE = 0.70
OUTPUTS = ("probabilities", "p_adv")


def _have_wrk() -> bool:
    try:
        wrk_path()
    except WrkMissing:
        return False
    return True


def wrk(url: str, body: tuple[Path, int], seconds: float, delay_ms: float,
        connections: int) -> dict:
    """One wrk run through ``benchmarks.wrk`` (its script and parsing): ``rate`` is the
    answered requests per second, ``failed`` the socket errors and non-2xx answers."""
    path, header_length = body
    out = run_wrk(f"{url}/v2/models/{MODEL}/infer", connections=connections, seconds=seconds,
                  body=path, header_length=header_length, delay_ms=delay_ms, timeout_s=10.0)
    return {**out, "rate": out["requests_per_s"], "failed": out["errors_total"]}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def paced(url: str, body: tuple[Path, int], target: float, connections: int,
          service_ms: float) -> tuple[float, dict]:
    """wrk's delay() for ``target`` requests/s on ``connections`` connections, calibrated in
    short runs (rate = connections / (delay + service time))."""
    delay = max(0.1, connections / target * 1e3 - service_ms)
    probe: dict = {}
    for _ in range(6):
        probe = wrk(url, body, 3, delay, connections)
        if abs(probe["rate"] / target - 1) < 0.05:
            break
        service_ms = max(0.0, connections / probe["rate"] * 1e3 - delay)
        delay = max(0.1, connections / target * 1e3 - service_ms)
    return delay, probe


@pytest.mark.slow
@pytest.mark.skipif(not _have_wrk(), reason="wrk not installed "
                    "(bash scripts/install_system_deps.sh)")
def test_soak_at_70_percent_of_saturation_loses_nothing(shipped_repository, tmp_path):
    env = {"AWNET_PROVIDERS": "cpu", "AWNET_INTRA_OP_THREADS": "1", "AWNET_INTER_OP_THREADS": "1",
           "AWNET_LOG_LEVEL": "WARNING"}
    body = write_body(synthetic_digits(1), tmp_path / "body.bin", OUTPUTS)
    with start_process(shipped_repository, env) as server:
        pid = server.proc.pid
        # The top of three closed-loop runs (the machine is shared: take its best moment).
        probes = [wrk(server.url, body, 4, 0.0, c) for c in (8, 16, 32)]
        assert all(p["failed"] == 0 for p in probes), probes
        saturation = max(probes, key=lambda p: p["rate"])
        target = TARGET_SHARE * saturation["rate"]
        connections = saturation["connections"]  # batching needs the concurrency
        delay, probe = paced(server.url, body, target, connections, saturation["mean_ms"])
        rss_start = rss_mib(pid)
        soak = wrk(server.url, body, SOAK_SECONDS, delay, connections)
        rss_end = rss_mib(pid)
        # Saturation once more, warm: the first probes run straight after start-up and have been
        # seen 5 % under what the paced soak then sustained (1,741 vs 1,654 req/s at p50 16 vs 7 ms).
        again = wrk(server.url, body, 4, 0.0, connections)
        assert again["failed"] == 0, again
        saturation = max([*probes, again], key=lambda p: p["rate"])
        samples = scrape(server.url)
        logs = server.logs()
    # (the readiness polls of start-up, 503 while loading, are not requests of the load)
    five_xx = sum(v for (name, labels), v in samples.items()
                  if name == "awnet_requests_total" and dict(labels)["status"][0] == "5"
                  and dict(labels)["endpoint"] != "/v2/health/ready")
    closed = metric(samples, "awnet_requests_total", model=MODEL, status="499")
    ok = metric(samples, "awnet_requests_total", model=MODEL, status="200")
    growth = (rss_end - rss_start) / rss_start
    print(f"\nsaturation {saturation['rate']:.0f} req/s ({saturation['connections']} connections, best of 8/16/32 and a warm re-run, p50 "
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
