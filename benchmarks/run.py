"""The order of a run: models, memory, in-process cells, HTTP servers one at a time, report.

Torch (eager timings, baseline builds) and the servers never share the timing process's
moments: baselines are built in subprocesses first, the eager cells run after the ONNX
Runtime cells, and each server is started, loaded and stopped before the next.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import docs, http, plots, report, report_http, targets
from benchmarks.baselines import ModelFiles, prepare_models
from benchmarks.common import check_loopback, loadavg, log, usable_cores
from benchmarks.inprocess import eager_cells, measure, ort_cells, throughput
from benchmarks.memory import measure_memory, rss_over_requests
from benchmarks.profile import profile_under_load
from benchmarks.servers import Server, get, service, service_kind, triton, triton_python
from benchmarks.sessions import DeviceUnavailable, make_session
from benchmarks.wrk import WrkMissing, run_wrk, wrk_path


def _version(cmd: list[str]) -> str | None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (res.stdout or res.stderr).strip().splitlines()
    return text[0].strip() if text else None


def plan_of(args: argparse.Namespace) -> http.HttpPlan:
    return http.HttpPlan(
        connections=args.connections,
        seconds=args.http_seconds,
        batch_images=args.batch_images,
        batch_connections=args.batch_connections,
        trivial_connections=args.trivial_connections,
        paced_fraction=args.paced_fraction,
        warmup_s=args.http_warmup,
        threads=args.wrk_threads,
    )


@contextlib.contextmanager
def _external(url: str, model: str):  # noqa: ANN202
    url = check_loopback(url)
    get(f"{url}/v2/models/{model}/ready")
    yield Server("service", url, [model], metrics_url=f"{url}/metrics")


def _memory(
    args: argparse.Namespace, srv: Server, name: str, bodies: http.Bodies,
    plan: http.HttpPlan, rows: list[dict[str, Any]],
) -> dict[str, Any] | None:
    """RSS of the server's process tree over many requests (None when not asked for)."""
    if srv.pid is None or not args.rss_requests:
        return None
    log(f"memory: {srv.kind} RSS over {args.rss_requests:,} requests")
    top = max(plan.connections)
    rate = max(
        (r["requests_per_s"] or 0 for r in rows
         if r["scenario"] == "single" and r["server"] == srv.kind), default=1,
    )  # fmt: skip
    send = http.memory_sender(srv, name, bodies.single, plan, top, rate)
    return rss_over_requests(srv.pid, send, args.rss_requests, args.rss_chunks, args.rss_warmup)


def _profile(args: argparse.Namespace, srv: Server, name: str, bodies: http.Bodies,
             plan: http.HttpPlan) -> dict[str, Any] | None:  # fmt: skip
    """The py-spy profile of one service process under the top 1-image load."""
    if srv.pid is None or not args.profile:
        return None
    top = max(plan.connections)

    def load() -> dict[str, Any]:
        return run_wrk(srv.infer_url(name), connections=top, seconds=args.profile_seconds,
                       body=bodies.single[0], header_length=bodies.single[1])  # fmt: skip

    prof = {}
    for kind, gil in (("threads", False), ("gil", True)):
        log(f"profile: py-spy ({kind}) on the service for {args.profile_seconds:g} s")
        raw = args.out / "profile" / f"service-{kind}.raw.txt"
        prof[kind] = profile_under_load(srv.pid, load, args.profile_seconds, raw, gil=gil)
    return prof if any(prof.values()) else None


def http_section(
    args: argparse.Namespace, models: dict[str, ModelFiles], info: dict[str, Any]
) -> dict[str, Any]:
    """Every HTTP figure: the service's scenarios, RSS and profile, then PyTriton's."""
    plan = plan_of(args)
    wrk_path()
    info["wrk"] = (_version(["wrk", "-v"]) or "").removeprefix("wrk ").split(" [")[0] or None
    awnet = models["awnet"]
    name = awnet.manifest.name
    served = [models[k] for k in args.http_models]
    bodies = http.Bodies.write(awnet.input_shape, max(1, plan.batch_images), args.out / "bodies")
    rows: list[dict[str, Any]] = []
    rss_by: dict[str, Any] = {}
    prof = None
    env = dict(kv.split("=", 1) for kv in args.service_env)
    for workers in args.workers:
        kind = service_kind(workers)
        ctx = (
            _external(args.url, name)
            if args.url
            else service(served, args.out / kind, device=args.device, kind=kind,
                         extra_env={**env, "AWNET_WORKERS": str(workers)})  # fmt: skip
        )
        with ctx as srv:
            rows += http.scenarios(srv, name, bodies, plan, pace=True)
            for m in served[1:]:
                rows += http.scenarios(srv, m.manifest.name, bodies, plan, main=False)
            rss_by[srv.kind] = _memory(args, srv, name, bodies, plan, rows)
            if workers == 1:  # py-spy follows one process
                prof = _profile(args, srv, name, bodies, plan)
    if args.triton:
        py = triton_python(args.triton_python)
        if py is None:
            msg = (
                "PyTriton not found: python -m venv .venv-triton && .venv-triton/bin/pip install -e '.[triton]' "
                "(docs/benchmark.md)"
            )
            if args.triton_required:
                raise SystemExit(f"error: --triton: {msg}")
            log(f"warning: {msg}; skipped")
        else:
            info["pytriton"] = _version(
                [
                    str(py),
                    "-c",
                    "import importlib.metadata as m; print(m.version('nvidia-pytriton'))",
                ]
            )
            log(f"starting PyTriton ({py})")
            with triton(
                awnet, args.out / "triton", py, device=args.device, threads=args.threads
            ) as srv:
                rows += http.scenarios(srv, name, bodies, plan, pace=False)
    rss_by = {k: v for k, v in rss_by.items() if v}
    return {"http": rows, "rss_over_requests": next(iter(rss_by.values()), None),
            "rss_by_server": rss_by, "profile": prof, "http_plan": vars(plan)}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    if args.http:
        try:
            wrk_path()
        except WrkMissing as exc:
            raise SystemExit(f"error: {exc} (or --no-http)") from None
    models = prepare_models(args)
    keys = list(models)
    if args.device == "cuda":  # refuse before minutes of measuring
        try:
            make_session(models["awnet"].onnx_path, args.threads, "cuda", args.cuda_device)
        except DeviceUnavailable as exc:
            raise SystemExit(f"error: {exc}") from None
    batches = args.batch_sizes
    load_before = loadavg()
    memory = (
        measure_memory(
            models,
            max(batches),
            args.threads or usable_cores(),
            args.checkpoint if args.eager else None,
        )
        if args.memory
        else None
    )
    import onnxruntime as ort

    try:
        cells, providers = ort_cells(models, batches, args.threads, args.device, args.cuda_device)
    except DeviceUnavailable as exc:
        raise SystemExit(f"error: {exc}") from None
    log(f"timing {len(cells)} cells ({', '.join(keys)} x batch {batches})")
    timing = {
        "seconds": args.seconds,
        "iterations": args.iterations,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "settle_s": args.settle_ms / 1e3,
    }
    measure(cells, desc="onnxruntime", **timing)
    latency = [c.stats() for c in cells]
    eager: list[dict[str, Any]] = []
    torch_version = None
    if args.eager:
        ecells, torch_version = eager_cells(
            args.checkpoint, batches, args.threads or usable_cores(), models["awnet"].input_shape
        )
        measure(ecells, desc="torch eager", **timing)
        eager = [c.stats() for c in ecells]
    machine: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "torch": torch_version,
        "device": args.device,
        "providers": providers,
        "intra_op_threads": args.threads,
        "loadavg_before": load_before,
    }
    section = (
        http_section(args, models, machine)
        if args.http
        else {"http": [], "rss_over_requests": None, "rss_by_server": {}, "profile": None}
    )
    machine["loadavg_after"] = loadavg()
    rows = report.compare(latency, batches, keys)
    summaries = {k: m.summary() for k, m in models.items()}
    size_text, size = report.size_memory_table(summaries, memory)
    report_http.http_ratios(section["http"], latency)
    results: dict[str, Any] = {
        "schema_version": 2,
        "created_at": dt.datetime.now(dt.timezone.utc)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
        "command_line": args.command_line,
        "quick": args.quick,
        "machine": machine,
        "settings": {"batch_sizes": batches, "threads": args.threads, **timing},
        "models": summaries,
        "latency": latency,
        "comparison": rows,
        "mode_spread": {str(b): s for b, s in report.mode_spread(rows, batches).items()},
        "size": size,
        "memory": memory,
        "eager": None,
        **section,
    }
    results["targets"] = targets.targets(results)
    spread = ", ".join(f"{b}: {s:.2f}x" for b, s in report.mode_spread(rows, batches).items())
    tables = [
        ("Targets (issue 9)", targets.targets_table(results["targets"])),
        (
            "Latency per ONNX Runtime call (ms, p50 / p90); ratios of p50; img/s = images / timed seconds",
            report.latency_table(rows, keys)
            + "\nAW-Net modes, slowest p50 / fastest p50 per batch: "
            + spread,
        ),
        ("Size and memory", size_text),
    ]
    if eager:
        text, results["eager"] = report.eager_table(eager, latency)
        tables.append(("PyTorch eager AW-Net forward vs the ONNX Runtime AW-Net graph", text))
    if section["http"]:
        tables.append(
            (
                "HTTP, wrk (binary v2; ratios: req/s vs PyTriton, img/s vs in-process)",
                report_http.http_table(section["http"]),
            )
        )
    for kind, rss in section["rss_by_server"].items():
        tables.append((f"Service RSS over requests ({kind})", report_http.rss_table(rss)))
    for kind, what in (("threads", "every active thread"), ("gil", "the GIL holder only")):
        prof = (section["profile"] or {}).get(kind)
        if prof:
            heading = f"Where the service's time goes (py-spy under load, {what})"
            tables.append((heading, report_http.profile_table(prof)))
    print(f"AW-Net serving benchmark: {docs.machine_line(results)}")
    for k, m in models.items():
        print(
            f"  {k:6s} {m.onnx_path}  ({m.built}; kind {m.manifest.kind}, provider {providers[k]})"
        )
    for heading, text in tables:
        print(f"\n{heading}\n{text}")
    figures = [
        plots.batch_plot(
            latency + eager,
            batches,
            args.out / "batch.png",
            f"{models['awnet'].manifest.name}: ONNX Runtime {args.device}, in process",
        )
    ]
    if section["http"]:
        figures.append(
            plots.latency_throughput_plot(
                section["http"],
                args.out / "latency-throughput.png",
                f"{models['awnet'].manifest.name}: latency vs throughput (wrk, binary v2, 1 image per request)",
                throughput(latency, 1),
            )
        )
    results["figures"] = [str(f) for f in figures]
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    written = [args.out / "results.json", *figures]
    if args.write_docs:
        written += docs.publish(results, tables, figures, args.doc, args.figures_dir)
    print("\nwrote " + ", ".join(str(Path(p)) for p in written))
    return 0
