"""``--graph-compare ARCH ...``: the AW-Net graph against the plain backbone, nothing else.

Issue 9's graph targets (ResNet-18 at CIFAR size: AW-Net throughput at batch 32 at least
0.95x the plain backbone's, latency at batch 1 at most 1.10x) need no trained model and no
server, so this mode runs alone: for each backbone ``benchmarks.build_graphs`` (a subprocess:
torch stays out of this process) exports ``awnet_ARCH`` as the exporter ships it (folded),
optionally the unfolded graph (the "before"), and the plain backbone with the same
convolutions; weights from ``--checkpoint`` when it holds ``awnet_ARCH`` (the shipped small
CNN), else a random init (timing only, and the table says so). The graphs are cached in
``<cache>/graphs/`` under a key of the weights and the exporter's source files.

All sessions of all backbones are then timed by ``benchmarks.inprocess.measure`` in one
interleaved run (a busy moment slows every graph alike), in router mode, at
``--batch-sizes`` (default 1 32 here). Tables: per (backbone, batch) the three graphs and
the ratios, and the targets; ``graph-compare.json`` in ``--out``; ``--write-docs`` puts the
tables into docs/benchmark.md between their own markers (the full run's section stays).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks import docs
from benchmarks.common import ROOT, fmt_int, fmt_ms, fmt_ratio, format_table, loadavg, log, ratio
from benchmarks.inprocess import Cell, measure
from benchmarks.sessions import HostRunner, feeds, make_session, random_images
from benchmarks.targets import targets_table

GRAPHS = ("awnet", "awnet-unfolded", "plain")
THROUGHPUT_BATCH, THROUGHPUT_MIN = 32, 0.95
LATENCY_BATCH, LATENCY_MAX = 1, 1.10
TARGET_ARCH = "resnet18"  # the backbone issue 9 sets the targets for; others are reported
# the code that decides what the exported AW-Net graph computes: a change rebuilds the cache
SOURCES = ("models/awnet.py", "models/folding.py", "models/layers.py", "models/perturb.py", "models/router.py",
           "training/export/graph.py", "benchmarks/build_graphs.py", "benchmarks/build_plain.py")  # fmt: skip
BEGIN = "<!-- graph-compare:begin (python -m benchmarks --graph-compare ... --write-docs) -->"
END = "<!-- graph-compare:end -->"


def cache_key(arch: str, checkpoint: Path | None, unfolded: bool) -> str:
    h = hashlib.sha256(f"{arch}|{unfolded}".encode())
    if checkpoint is not None and checkpoint.is_file():
        h.update(checkpoint.read_bytes())
    for src in SOURCES:
        h.update((ROOT / src).read_bytes())
    return h.hexdigest()[:16]


def build(
    arch: str, cache: Path, checkpoint: Path | None, unfolded: bool, rebuild: bool
) -> dict[str, Any]:
    """The graphs of one backbone (built by the subprocess, or from the cache)."""
    out = cache / "graphs" / f"{arch}-{cache_key(arch, checkpoint, unfolded)}"
    info_path = out / "graphs.json"
    if not info_path.is_file() or rebuild:
        cmd = [sys.executable, "-m", "benchmarks.build_graphs", "--arch", arch, "--out", str(out)]
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        cmd += ["--unfolded"] if unfolded else []
        log(f"exporting the {arch} graphs: {' '.join(cmd[1:])}")
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(
                f"error: building the {arch} graphs failed:\n{res.stdout}\n{res.stderr[-3000:]}"
            )
        built = "built"
    else:
        built = "cached"
    info = json.loads(info_path.read_text())
    info.update(dir=str(out), built=built)
    return info


def cells(sets: list[dict[str, Any]], batches: list[int], threads: int) -> list[Cell]:
    """One cell per (backbone, graph, batch); the AW-Net graphs in router mode (-1)."""
    out = []
    for info in sets:
        sessions = {
            k: make_session(Path(info["dir"]) / v["file"], threads)
            for k, v in info["graphs"].items()
        }
        for b in batches:
            image = random_images(b, info["input_shape"])
            for key, sess in sessions.items():
                out.append(Cell(f"{info['arch']}:{key}", "router" if key != "plain" else "-", b,
                                HostRunner(sess, feeds(image))))  # fmt: skip
    return out


def compare(
    sets: list[dict[str, Any]], latency: list[dict[str, Any]], batches: list[int]
) -> list[dict[str, Any]]:
    """Per (backbone, batch): each graph's figures and its ratios to the plain graph."""
    by = {(r["model"], r["batch"]): r for r in latency}
    rows = []
    for info in sets:
        for b in batches:
            plain = by[(f"{info['arch']}:plain", b)]
            row: dict[str, Any] = {"arch": info["arch"], "weights": info["weights"], "batch": b}
            for key in info["graphs"]:
                r = by[(f"{info['arch']}:{key}", b)]
                row[key] = {k: r[k] for k in ("p50_ms", "p90_ms", "images_per_s", "calls")}
                row[key]["latency_ratio"] = ratio(r["p50_ms"], plain["p50_ms"])
                row[key]["throughput_ratio"] = ratio(r["images_per_s"], plain["images_per_s"])
            rows.append(row)
    return rows


def _get(row: dict[str, Any], graph: str, key: str) -> Any:
    return (row.get(graph) or {}).get(key)


def table(rows: list[dict[str, Any]]) -> str:
    headers = ["backbone", "weights", "batch"]
    headers += [f"{g} ms (p50/p90)" for g in GRAPHS]
    headers += [
        "awnet/plain p50",
        "awnet/plain img/s",
        "unfolded/plain img/s",
        "awnet img/s",
        "plain img/s",
    ]
    out = []
    for r in rows:
        line = [r["arch"], r["weights"], r["batch"]]
        line += [
            fmt_ms(_get(r, g, "p50_ms"), _get(r, g, "p90_ms")) if g in r else "-" for g in GRAPHS
        ]
        line += [fmt_ratio(_get(r, "awnet", "latency_ratio")), fmt_ratio(_get(r, "awnet", "throughput_ratio")),
                 fmt_ratio(_get(r, "awnet-unfolded", "throughput_ratio")),
                 fmt_int(_get(r, "awnet", "images_per_s")), fmt_int(_get(r, "plain", "images_per_s"))]  # fmt: skip
        out.append(line)
    return format_table(headers, out, align="llr" + "r" * (len(headers) - 3))


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 9's two graph targets for every compared backbone (verdicts for all; the issue
    sets them for ResNet-18, the others are reported against the same bar)."""
    goals = (
        (THROUGHPUT_BATCH, "throughput_ratio", "throughput", ">=", THROUGHPUT_MIN),
        (LATENCY_BATCH, "latency_ratio", "latency (p50)", "<=", LATENCY_MAX),
    )
    out = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        by = {r["batch"]: r for r in rows if r["arch"] == arch}
        for batch, key, what, op, bar in goals:
            row = by.get(batch) or {}
            v = (row.get("awnet") or {}).get(key)
            before = (row.get("awnet-unfolded") or {}).get(key)
            notes = [] if arch == TARGET_ARCH else ["reported (issue 9's target is ResNet-18's)"]
            notes += [f"unfolded graph {fmt_ratio(before)}"] if before is not None else []
            notes += [row["weights"]] if row else []
            met = None if v is None else (v >= bar if op == ">=" else v <= bar)
            out.append({"target": f"{arch}: AW-Net / plain {what} at batch {batch}", "measured": v,
                        "required": f"{op} {bar:.2f}x", "met": met, "note": "; ".join(notes)})  # fmt: skip
    return out


def run_graph_compare(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = loadavg()
    sets = [
        build(a, args.cache_dir, args.checkpoint, args.graph_unfolded, args.rebuild)
        for a in args.graph_compare
    ]
    all_cells = cells(sets, args.batch_sizes, args.threads)
    log(
        f"timing {len(all_cells)} cells ({', '.join(args.graph_compare)} x {GRAPHS} x batch {args.batch_sizes})"
    )
    measure(all_cells, seconds=args.seconds, iterations=args.iterations, warmup=args.warmup, rounds=args.rounds,
            settle_s=args.settle_ms / 1e3, desc="graph compare")  # fmt: skip
    latency = [c.stats() for c in all_cells]
    rows = compare(sets, latency, args.batch_sizes)
    goals = targets(rows)
    results = {
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command_line": args.command_line,
        "quick": args.quick,
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "settings": {"batch_sizes": args.batch_sizes, "threads": args.threads, "seconds": args.seconds,
                     "iterations": args.iterations, "rounds": args.rounds, "warmup": args.warmup},
        "graphs": sets, "latency": latency, "comparison": rows, "targets": goals,
    }  # fmt: skip
    tables = [
        ("Targets (issue 9, AW-Net graph vs plain backbone)", targets_table(goals)),
        (
            "AW-Net graph vs plain backbone, ONNX Runtime in process, router mode; ratios to plain",
            table(rows),
        ),
    ]
    print(
        f"AW-Net graph vs plain backbone; load average before / after: {load_before} / {results['loadavg_after']}"
    )
    for info in sets:
        nodes = ", ".join(f"{k} {v['nodes']}" for k, v in info["graphs"].items())
        print(
            f"  {info['arch']}: {info['weights']}; ONNX nodes {nodes}; {info['dir']} ({info['built']})"
        )
    for heading, text in tables:
        print(f"\n{heading}\n{text}")
    path = args.out / "graph-compare.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    written = [path]
    if args.write_docs:
        docs.write_between_markers(args.doc, section(results, tables), BEGIN, END)
        written.append(args.doc)
    print("\nwrote " + ", ".join(map(str, written)))
    return 0


def section(results: dict[str, Any], tables: list[tuple[str, str]]) -> str:
    lines = [BEGIN, "", f"Run of {results['created_at']} (load average before / after: "
             f"{results['loadavg_before']} / {results['loadavg_after']}):", "", "```bash",
             results["command_line"], "```", ""]  # fmt: skip
    if results.get("quick"):
        lines += ["**`--quick` run: tiny settings, the figures only show that it works.**", ""]
    for heading, text in tables:
        lines += [f"#### {heading}", "", "```", text, "```", ""]
    return "\n".join([*lines, END])
