"""The HTTP load scenarios, run by ``wrk`` against one server at a time.

Per server (the service, then PyTriton; never both at once, so neither takes the other's
cores), after a short unrecorded warm-up:

* ``trivial``: ``GET /v2/health/live`` (no model, no body): what the HTTP stack alone
  answers, the ceiling of any infer figure;
* ``single``: 1-image binary v2 infer at each ``--connections`` level (the latency vs
  throughput curve);
* ``batch``: ``--batch-images``-image requests from ``--batch-connections`` connections
  (compared with the in-process throughput at that batch);
* ``paced`` (service): 1-image requests at ``--paced-fraction`` (70 %) of the best
  ``single`` rate, from as many connections, each waiting a fixed time before each request
  (wrk's ``delay()``); the wait is calibrated in short runs (at most 6) until the rate is
  within 5 % of the target (15 % let a run measure 78 % of saturation as "70 %").

Each row also has the mean batch per model call (the server's own metrics), the server's CPU
seconds per request (its whole process tree, from /proc) and the client's CPU share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import cpu_seconds, log, ratio
from benchmarks.servers import Server
from benchmarks.sessions import random_images
from benchmarks.wrk import run_wrk, write_body

PACED_TOLERANCE = 0.05
PACED_CALIBRATIONS = 6


@dataclass
class HttpPlan:
    connections: Sequence[int] = (1, 8, 32)
    seconds: float = 10.0
    batch_images: int = 32
    batch_connections: int = 8
    trivial_connections: int = 32
    paced_fraction: float = 0.7  # 0: skip
    warmup_s: float = 2.0
    threads: int = 1
    timeout_s: float = 10.0


@dataclass
class Bodies:
    single: tuple[Path, int]
    batch: tuple[Path, int]

    @classmethod
    def write(cls, shape: Sequence[int], batch_images: int, folder: Path) -> Bodies:
        return cls(
            write_body(random_images(1, shape), folder / "body-1.bin"),
            write_body(random_images(batch_images, shape), folder / f"body-{batch_images}.bin"),
        )


def level(
    server: Server,
    model: str,
    scenario: str,
    *,
    connections: int,
    seconds: float,
    body: tuple[Path, int] | None,
    images: int,
    plan: HttpPlan,
    delay_ms: float = 0.0,
) -> dict[str, Any]:
    """One wrk run, with the server's mean batch and CPU per request over it."""
    url = server.infer_url(model) if body is not None else f"{server.url}/v2/health/live"
    counters = body is not None
    before = server.batch_counters(model) if counters else (0.0, 0.0)
    pids = server.pids()
    cpu0 = cpu_seconds(pids)
    res = run_wrk(
        url,
        connections=connections,
        seconds=seconds,
        body=body[0] if body else None,
        header_length=body[1] if body else 0,
        delay_ms=delay_ms,
        threads=plan.threads,
        timeout_s=plan.timeout_s,
    )
    cpu = cpu_seconds(pids) - cpu0 if pids else None  # None: a server we did not start (--url)
    after = server.batch_counters(model) if counters else (0.0, 0.0)
    inputs, calls = after[0] - before[0], after[1] - before[1]
    res.update(
        {
            "server": server.kind,
            "model": model if counters else "-",
            "scenario": scenario,
            "images_per_request": images,
            "images_per_s": (res["requests_per_s"] or 0.0) * images,
            "model_calls": int(calls),
            "mean_batch": ratio(inputs, calls),
            "server_cpu_s": cpu,
            "server_cpu_ms_per_request": ratio(cpu * 1e3, res["ok"]) if pids else None,
            "server_cpu_share": ratio(cpu, res["duration_s"]),
        }
    )
    return res


def paced(
    server: Server, model: str, body: tuple[Path, int], plan: HttpPlan, saturation: dict[str, Any]
) -> dict[str, Any] | None:
    """1-image load at ``plan.paced_fraction`` of ``saturation``'s rate (see the docstring)."""
    target = plan.paced_fraction * (saturation["requests_per_s"] or 0.0)
    conns = int(saturation["connections"])
    if target <= 0:
        return None
    service_ms = saturation["p50_ms"] * 0.5  # a first guess; the runs below correct it
    delay = max(0.1, conns / target * 1e3 - service_ms)
    calib_s = max(1.0, plan.seconds / 3)
    for _ in range(PACED_CALIBRATIONS):
        probe = level(
            server,
            model,
            "paced-calibration",
            connections=conns,
            seconds=calib_s,
            body=body,
            images=1,
            plan=plan,
            delay_ms=delay,
        )
        rate = probe["requests_per_s"] or 0.0
        if rate and abs(rate / target - 1) <= PACED_TOLERANCE:
            break
        if rate:
            service_ms = max(0.0, conns / rate * 1e3 - delay)
        delay = max(0.1, conns / target * 1e3 - service_ms)
    res = level(
        server,
        model,
        "paced",
        connections=conns,
        seconds=plan.seconds,
        body=body,
        images=1,
        plan=plan,
        delay_ms=delay,
    )
    res.update(
        {
            "target_requests_per_s": target,
            "saturation_requests_per_s": saturation["requests_per_s"],
            "load_fraction": ratio(res["requests_per_s"], saturation["requests_per_s"]),
        }
    )
    return res


def scenarios(
    server: Server,
    model: str,
    bodies: Bodies,
    plan: HttpPlan,
    *,
    main: bool = True,
    pace: bool = False,
) -> list[dict[str, Any]]:
    """Every scenario for ``model`` on ``server`` (``main=False``: the single levels only)."""
    rows: list[dict[str, Any]] = []
    top = max(plan.connections)
    log(f"http {server.kind} {model}: warm-up {plan.warmup_s:g} s")
    level(
        server,
        model,
        "warmup",
        connections=top,
        seconds=plan.warmup_s,
        body=bodies.single,
        images=1,
        plan=plan,
    )
    if main:
        log(f"http {server.kind}: trivial endpoint, {plan.trivial_connections} connections")
        rows.append(
            level(
                server,
                model,
                "trivial",
                connections=plan.trivial_connections,
                seconds=plan.seconds,
                body=None,
                images=0,
                plan=plan,
            )
        )
    for c in plan.connections:
        log(f"http {server.kind} {model}: 1 image per request, {c} connection(s)")
        rows.append(
            level(
                server,
                model,
                "single",
                connections=c,
                seconds=plan.seconds,
                body=bodies.single,
                images=1,
                plan=plan,
            )
        )
    if main and plan.batch_images > 1:
        log(
            f"http {server.kind} {model}: {plan.batch_images} images per request, "
            f"{plan.batch_connections} connections"
        )
        rows.append(
            level(
                server,
                model,
                "batch",
                connections=plan.batch_connections,
                seconds=plan.seconds,
                body=bodies.batch,
                images=plan.batch_images,
                plan=plan,
            )
        )
    if main and pace and plan.paced_fraction > 0:
        singles = [r for r in rows if r["scenario"] == "single" and r["requests_per_s"]]
        if singles:
            best = max(singles, key=lambda r: r["requests_per_s"])
            log(
                f"http {server.kind} {model}: paced at {plan.paced_fraction:.0%} of "
                f"{best['requests_per_s']:.0f} req/s ({best['connections']} connections)"
            )
            row = paced(server, model, bodies.single, plan, best)
            if row is not None:
                rows.append(row)
    return rows


def memory_sender(
    server: Server,
    model: str,
    body: tuple[Path, int],
    plan: HttpPlan,
    connections: int,
    rate: float,
):  # noqa: ANN201
    """``send(n)`` for ``memory.rss_over_requests``: about n 1-image requests. wrk has no
    request count, so each part lasts n / rate seconds, the rate being the last part's."""
    state = {"rate": max(1.0, rate)}

    def send(n: int) -> dict[str, Any]:
        res = run_wrk(
            server.infer_url(model),
            connections=connections,
            seconds=min(600.0, max(1.0, n / state["rate"])),
            body=body[0],
            header_length=body[1],
            threads=1,
            timeout_s=plan.timeout_s,
        )
        state["rate"] = max(1.0, res["requests_per_s"] or state["rate"])
        return res

    return send
