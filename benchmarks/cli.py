"""``python -m benchmarks``: the options, ``--quick``, and their checks; ``benchmarks.run`` runs.

The tunable figures (``TUNABLES``) default to the full run or, with ``--quick``, to tiny
settings (about a minute; the figures then only show that everything works); a value given
on the command line wins over both.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.common import (
    DEFAULT_CHECKPOINT,
    DEFAULT_MODEL_DIR,
    DEFAULT_OUT,
    DOC,
    FIGURES,
    ROOT,
    usable_cores,
)

# option: (full run, --quick, type, nargs, help)
TUNABLES = {
    "batch_sizes": ([1, 8, 32, 128], [1, 4], int, "+", "in-process batch sizes"),
    "seconds": (2.0, 0.05, float, None, "time budget per in-process (model, mode, batch) cell"),
    "rounds": (4, 1, int, None, "interleaved passes over the in-process cells"),
    "warmup": (5, 1, int, None, "untimed calls per cell before timing"),
    "settle_ms": (50.0, 5.0, float, None, "untimed calls for this long at the start of each pass"),
    "connections": ([1, 8, 32], [1, 4], int, "+", "1-image HTTP load levels (connections)"),
    "http_seconds": (10.0, 1.0, float, None, "seconds per HTTP load level"),
    "http_warmup": (2.0, 0.5, float, None, "unrecorded seconds before a server's levels"),
    "batch_images": (32, 4, int, None, "images per request of the batch scenario (0: skip)"),
    "batch_connections": (8, 2, int, None, "connections of the batch scenario"),
    "trivial_connections": (32, 4, int, None, "connections of the trivial-endpoint level"),
    "paced_fraction": (0.7, 0.7, float, None, "paced level as a fraction of saturation (0: skip)"),
    "rss_requests": (100_000, 300, int, None, "requests of the service RSS probe (0: skip)"),
    "rss_chunks": (10, 3, int, None, "RSS samples over those requests"),
    "rss_warmup": (5_000, 100, int, None, "requests before the first RSS sample"),
    "profile_seconds": (10.0, 1.0, float, None, "seconds of py-spy sampling under load"),
}
BOOL = argparse.BooleanOptionalAction


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="What serving AW-Net costs: the ONNX graph against its baselines in process, "
        "the service against PyTriton over HTTP (wrk), memory and a profile; tables with "
        "ratios, results.json and plots (docs/benchmark.md).",
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny settings: checks that everything runs"
    )
    g = p.add_argument_group("models and baselines")
    g.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="AW-Net model folder")
    g.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"AW-Net checkpoint the baselines are built from (default "
        f"{DEFAULT_CHECKPOINT.relative_to(ROOT)}); giving it also turns on --eager",
    )
    g.add_argument("--static", action=BOOL, default=True, help="the static-export baseline")
    g.add_argument("--baseline-dir", type=Path, default=None, help="a ready static export")
    g.add_argument("--plain", action=BOOL, default=True, help="the router-free plain baseline")
    g.add_argument("--plain-dir", type=Path, default=None, help="a ready plain-backbone export")
    g.add_argument(
        "--cache-dir", type=Path, default=None, help="built baselines (default OUT/cache)"
    )
    g.add_argument("--rebuild", action="store_true", help="rebuild the baselines even when cached")
    g = p.add_argument_group("AW-Net graph vs plain backbone (runs alone)")
    g.add_argument(
        "--graph-compare",
        nargs="+",
        default=None,
        metavar="ARCH",
        help="only this: export awnet_ARCH as the exporter ships it (folded) and the plain ARCH "
        "with the same convs, time them interleaved in process (router mode, --batch-sizes, "
        "default 1 32 here) and print the ratios against issue 9's graph targets, e.g. "
        "'--graph-compare resnet18 smallcnn'; weights from --checkpoint when it is awnet_ARCH "
        "(the shipped small CNN), else random init (timing only); graphs cached in "
        "--cache-dir/graphs; --write-docs writes its own section of --doc",
    )
    g.add_argument(
        "--graph-unfolded",
        action=BOOL,
        default=True,
        help="with --graph-compare: also the unfolded AW-Net graph (the fold's 'before')",
    )
    g = p.add_argument_group("in process")
    g.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: CUDA execution provider (device id, arena, cuDNN search) and IO binding; "
        "refused where no GPU is usable",
    )
    g.add_argument("--cuda-device", type=int, default=0, help="CUDA device id")
    g.add_argument(
        "--iterations", type=int, default=None, help="timed calls per cell, not --seconds"
    )
    g.add_argument(
        "--threads",
        type=int,
        default=0,
        help="ORT intra-op threads (0: the cores but one, as the service)",
    )
    g.add_argument(
        "--eager", action=BOOL, default=None, help="PyTorch eager (default: --checkpoint)"
    )
    g.add_argument(
        "--memory", action=BOOL, default=True, help="peak RSS of a fresh process per model"
    )
    g = p.add_argument_group("HTTP (wrk)")
    g.add_argument("--http", action=BOOL, default=True, help="the HTTP scenarios")
    g.add_argument(
        "--url", default=None, help="load this running loopback service instead of one it starts"
    )
    g.add_argument(
        "--http-models",
        nargs="+",
        default=["awnet"],
        choices=("awnet", "static", "plain"),
        help="models the service serves (the first gets every scenario, the others 1-image levels)",
    )
    g.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (1 leaves the server most CPU)"
    )
    g.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="AWNET_X=V",
        help="extra setting of the started service (repeatable), e.g. AWNET_MAX_QUEUE_DELAY_MS=0",
    )
    g.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="the service once per worker count (AWNET_WORKERS), one after the other, e.g. "
        "'--workers 1 2' (default: 1, and 2 too on a machine with 2 or more cores); RSS "
        "over requests for each, the profile on the 1-worker service",
    )
    g.add_argument(
        "--triton",
        action=BOOL,
        default=None,
        help="PyTriton (default: when installed; not --quick)",
    )
    g.add_argument("--triton-python", type=Path, default=None, help="Python with nvidia-pytriton")
    g.add_argument("--profile", action=BOOL, default=True, help="py-spy the service under load")
    g = p.add_argument_group("tunables (full run / --quick)")
    for name, (full, quick, typ, nargs, text) in TUNABLES.items():
        g.add_argument(f"--{name.replace('_', '-')}", type=typ, nargs=nargs, default=None,
                       help=f"{text} [{full} / {quick}]")  # fmt: skip
    g = p.add_argument_group("output")
    g.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="results.json, plots, logs, profile"
    )
    g.add_argument(
        "--write-docs", action="store_true", help="tables into --doc, plots into --figures-dir"
    )
    g.add_argument("--doc", type=Path, default=DOC)
    g.add_argument("--figures-dir", type=Path, default=FIGURES)
    return p


def _problems(args: argparse.Namespace) -> list[str]:
    bad = []
    if args.seconds <= 0 or args.rounds < 1 or args.threads < 0 or min(args.batch_sizes) < 1:
        bad.append("--seconds, --rounds and --batch-sizes must be positive, --threads not negative")
    if (
        args.settle_ms < 0
        or args.warmup < 0
        or (args.iterations is not None and args.iterations < 1)
    ):
        bad.append("--settle-ms and --warmup must not be negative, --iterations must be positive")
    if min(args.connections) < 1 or args.http_seconds <= 0 or args.batch_images < 0:
        bad.append("--connections and --http-seconds must be positive, --batch-images not negative")
    if not 0 <= args.paced_fraction < 1 or args.rss_requests < 0 or args.rss_chunks < 1:
        bad.append("--paced-fraction must be in [0, 1), --rss-requests >= 0, --rss-chunks >= 1")
    if any("=" not in kv or not kv.upper().startswith("AWNET_") for kv in args.service_env):
        bad.append("--service-env takes AWNET_NAME=VALUE")
    if any(kv.upper().startswith("AWNET_WORKERS=") for kv in args.service_env):
        bad.append("the worker count is --workers, not --service-env AWNET_WORKERS")
    if args.workers is not None and (min(args.workers) < 1 or max(args.workers) > 64):
        bad.append("--workers takes counts from 1 to 64")
    if args.workers is not None and args.url and args.workers != [1]:
        bad.append("--workers does not apply to a running service (--url)")
    if args.http_models[0] != "awnet":
        bad.append("--http-models must start with awnet")
    if any(m != "awnet" and not getattr(args, m) for m in args.http_models):
        bad.append("--http-models names a baseline that is switched off")
    if args.graph_compare and any(a.startswith("awnet_") for a in args.graph_compare):
        bad.append("--graph-compare takes plain backbone names (resnet18, not awnet_resnet18)")
    return bad


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.graph_compare and args.batch_sizes is None:
        args.batch_sizes = [1, 2] if args.quick else [1, 32]
    for name, (full, quick, *_) in TUNABLES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.eager is None:
        args.eager = args.checkpoint is not None
    args.checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    args.out = args.out.absolute()
    args.cache_dir = (args.cache_dir or args.out / "cache").absolute()
    for name in (
        "model_dir",
        "baseline_dir",
        "checkpoint",
        "plain_dir",
        "doc",
        "figures_dir",
        "triton_python",
    ):
        if getattr(args, name) is not None:  # subprocesses run in the project root
            setattr(args, name, getattr(args, name).absolute())
    bad = _problems(args)
    if bad:
        raise SystemExit("error: " + "; ".join(bad))
    args.connections = sorted(set(args.connections))
    if args.workers is None:
        args.workers = [1] if args.url or usable_cores() < 2 else [1, 2]
    args.workers = list(dict.fromkeys(args.workers))  # in the order given, once each
    args.batch_sizes = sorted(set(args.batch_sizes))
    args.triton_required = bool(args.triton)
    if args.triton is None:
        args.triton = not args.quick
    args.command_line = " ".join(["python -m benchmarks", *argv])
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.graph_compare:
        from benchmarks.graph_compare import run_graph_compare

        return run_graph_compare(args)
    from benchmarks.run import run  # after parsing: --help stays fast

    return run(args)
