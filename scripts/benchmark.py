#!/usr/bin/env python
"""What does AW-Net's routing cost at inference? Measured, side by side with baselines.

Times the shipped AW-Net ONNX graph (router mode, forced clean, forced adversarial) against
baselines with the same graph contract (docs/contracts.md) on the ONNX Runtime CPU
provider, and prints tables with ratios; also model size, parameters and peak memory
(each model in a fresh subprocess), optionally PyTorch eager and a running service.

Baselines:

* ``static``: ``python -m training export --static`` of the AW-Net checkpoint, i.e. its
  clean branch alone. Measured fact (see the graph table): that graph still holds the
  router's feature extractor and signal heads, because the clean branch's convs are
  modulated by the router's signals; only the type head, the adversarial BNs and the blend
  are gone. ``awnet/static`` is therefore the cost of *soft routing* (two BNs, the blend,
  the type head), not of the router as a whole.
* ``plain``: the bare backbone (``smallcnn`` with plain convs and one BN) carrying the
  checkpoint's backbone weights, router removed, for timing only (its predictions are
  meaningless without the signals). ``awnet/plain`` is the whole price of AW-Net against a
  static network of the same architecture. ``--no-plain`` skips it.

The project's rule: speed and memory go in a benchmark script that prints a table, never in a
timed test. Run ``python scripts/benchmark.py --help``; docs/benchmark.md has the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import ipaddress
import json
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the project's packages are beside scripts/
    sys.path.insert(0, str(ROOT))
from artifact_contract import (  # noqa: E402
    INPUT_IMAGE,
    INPUT_MIX,
    ArtifactError,
    InputSpec,
    Manifest,
    OnnxSpec,
    sha256_file,
)

DEFAULT_MODEL_DIR = ROOT / "models/repository/awnet-mnist/1"
DEFAULT_CHECKPOINT = ROOT / "models/checkpoints/awnet-mnist-1.pt"
DEFAULT_CACHE = ROOT / "runs/benchmark/cache"
DEFAULT_JSON = ROOT / "runs/benchmark/results.json"
DEFAULT_PLOT = ROOT / "runs/benchmark/latency.png"
CPU = "CPUExecutionProvider"
AWNET_MODES = {"router": -1.0, "clean": 0.0, "adv": 1.0}  # mode -> mix_override value
MIB = 1024 * 1024
PROBE_CMD = "_probe-memory"
BUILD_PLAIN_CMD = "_build-plain"


# --- small helpers ------------------------------------------------------------------------------
def proc_status_bytes(key: str) -> int | None:
    """``VmHWM``/``VmRSS`` of this process from /proc (Linux), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
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


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A plain-text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(c) for c in headers], *[[("" if c is None else str(c)) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)

    def line(r: Sequence[str]) -> str:
        return " | ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True))

    out = [line(cells[0]), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or math.isnan(a) or math.isnan(b):
        return None
    return a / b


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def fmt_ms(p50: float | None, p90: float | None) -> str:
    if p50 is None:
        return "-"

    def f(v: float) -> str:
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"

    return f"{f(p50)} / {f(p90 if p90 is not None else p50)}"


def fmt_int(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


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


# --- models: baselines, graph facts --------------------------------------------------------------
@dataclass
class ModelFiles:
    """One ONNX model folder of the repository layout (model.onnx + manifest.json)."""

    key: str  # "awnet", "static", "plain"
    dir: Path
    manifest: dict[str, Any]
    onnx_path: Path
    built: str  # "given" | "built" | "cached"
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, key: str, folder: Path, built: str) -> ModelFiles:
        manifest_path = folder / "manifest.json"
        if not manifest_path.is_file():
            raise SystemExit(f"error: {folder} has no manifest.json (expected models/repository/NAME/VERSION/)")
        try:  # the service's own checks: the manifest validates, its graph file is there
            manifest = Manifest.load(manifest_path)
            onnx_path = manifest.verify_folder(folder, verify_sha256=False, check_names=False)
        except ArtifactError as exc:
            raise SystemExit(f"error: {exc}") from exc
        return cls(key, folder, manifest.to_dict(), onnx_path, built)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.manifest["input"]["shape"])


def graph_facts(path: Path) -> dict[str, Any]:
    """File size, parameter count (elements of all initializers) and node count of a graph,
    and which router parts it holds: that is what tells the baselines apart."""
    facts: dict[str, Any] = {"file_bytes": path.stat().st_size, "sha256": sha256_file(path)}
    try:
        import onnx
    except ImportError:  # size only; onnx is a dev/train dependency
        return facts
    proto = onnx.load(str(path), load_external_data=False)
    inits = list(proto.graph.initializer)
    facts["parameters"] = int(sum(math.prod(i.dims) for i in inits))
    facts["nodes"] = len(proto.graph.node)
    names = [i.name for i in inits]
    facts["router_extractor"] = any(".router.extractor." in n for n in names)
    facts["router_signal_heads"] = any(".router.signal_heads." in n for n in names)
    facts["router_type_head"] = any(".router.type_head." in n for n in names)
    facts["adversarial_bn"] = any(".bn_adv." in n for n in names)
    facts["op_counts"] = dict(sorted({op: sum(n.op_type == op for n in proto.graph.node)
                                      for op in {n.op_type for n in proto.graph.node}}.items()))
    return facts


def _atomic_build(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a sibling temporary folder, then move it in place: no half-built cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        out = tmp / target.parent.name / target.name  # keeps .../NAME/VERSION for the exporter
        build(out)
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_static(checkpoint: Path, target: Path, log: Callable[[str], None]) -> None:
    """The static baseline by the project's own command (docs/export.md), run once."""

    def run(out: Path) -> None:
        cmd = [sys.executable, "-m", "training", "export", "--static", "--checkpoint", str(checkpoint),
               "--out", str(out), "--skip-eval"]
        log(f"building the static baseline: {' '.join(cmd[1:])}")
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"error: the static export failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")

    _atomic_build(target, run)


def build_plain(checkpoint: Path, target: Path, model_onnx: Path, log: Callable[[str], None]) -> None:
    """The router-free backbone, exported in a subprocess (torch stays out of this process,
    so its thread pool cannot disturb the ONNX Runtime timings)."""

    def run(out: Path) -> None:
        cmd = [sys.executable, str(Path(__file__).resolve()), BUILD_PLAIN_CMD, "--checkpoint", str(checkpoint),
               "--out", str(out), "--check-against", str(model_onnx)]
        log("building the plain (router-free) backbone from the checkpoint ...")
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"error: building the plain backbone failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        for line in res.stdout.splitlines():
            if line.startswith("warning:"):
                log(line)

    _atomic_build(target, run)


def build_plain_main(argv: Sequence[str]) -> int:
    """Subprocess: export the checkpoint's backbone with plain layers (no router, clean BN)."""
    p = argparse.ArgumentParser(prog=f"benchmark.py {BUILD_PLAIN_CMD}")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--check-against", default=None, help="AW-Net ONNX the checkpoint should match")
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from models.registry import ROUTER_KWARGS, backbone_name, create_model
    from training.checkpoint import load_model
    from training.export.graph import StaticExportWrapper, check_graph, export_onnx, graph_shapes

    awnet, ckpt = load_model(a.checkpoint, "cpu")
    if not getattr(awnet, "is_awnet", False):
        print(f"error: {a.checkpoint} is not an AW-Net checkpoint", file=sys.stderr)
        return 2
    ic = awnet.input_config
    kwargs = {k: v for k, v in (ckpt.get("model_kwargs") or {}).items() if k not in ROUTER_KWARGS}
    plain_name = backbone_name(ckpt["model_name"])
    plain = create_model(plain_name, input_config=ic, **kwargs)
    state = {}
    for k, v in awnet.state_dict().items():
        if not k.startswith("backbone.") or ".bn_adv." in k:
            continue
        state[k[len("backbone."):].replace(".bn_clean.", ".")] = v
    plain.load_state_dict(state, strict=True)
    plain.eval()

    if a.check_against:  # warn when --model-dir was not exported from this checkpoint
        proto = onnx.load(a.check_against)
        inits = {i.name: i for i in proto.graph.initializer}
        # skip convs the exporter fused with their BN (it adds a "<name>_bias" initializer)
        common = [k for k in awnet.state_dict() if "model." + k in inits and "model." + k + "_bias" not in inits]
        same = all(np.allclose(numpy_helper.to_array(inits["model." + k]), awnet.state_dict()[k].numpy(), atol=1e-6)
                   for k in common)
        if not common or not same:
            print(f"warning: {a.checkpoint} does not hold the weights of {a.check_against}; "
                  "the baselines are built from the checkpoint")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"
    c, h, w = ic.shape
    wrapper = StaticExportWrapper(plain)
    export_onnx(wrapper, torch.rand(2, c, h, w), onnx_path)
    proto = check_graph(onnx_path)
    x = torch.rand(5, c, h, w)
    sess = ort.InferenceSession(str(onnx_path), providers=[CPU])
    got = sess.run(None, {INPUT_IMAGE: x.numpy(), INPUT_MIX: np.full(5, -1.0, np.float32)})[0]
    with torch.no_grad():
        want = plain(x).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-3:
        print(f"error: plain backbone ONNX vs PyTorch max |d| {diff:.3g} > 1e-3", file=sys.stderr)
        return 1
    Manifest(
        name=out.parent.name, version=out.name, arch=plain_name, kind="static", method="benchmark-only",
        class_names=list(ic.class_names),
        input=InputSpec(shape=list(ic.shape), range=list(ic.pixel_range), mean=list(ic.mean), std=list(ic.std)),
        router=None, parity={"plain_onnx_vs_torch_max_abs": diff},
        onnx=OnnxSpec.of_file(onnx_path, shapes=graph_shapes(proto)),
        extra={"note": ("benchmark-only timing baseline: the backbone of the AW-Net checkpoint with plain "
                        "convs and its clean BNs, router removed; not a trained model (without the "
                        "router's signals its predictions are meaningless)"),
               "source_checkpoint": str(a.checkpoint)},
    ).write(out)  # fmt: skip
    print(json.dumps({"out": str(out), "parity_max_abs": diff}))
    return 0


def prepare_models(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, ModelFiles]:
    """The AW-Net model, the static baseline (given, cached or built) and the plain one."""
    models = {"awnet": ModelFiles.load("awnet", args.model_dir, "given")}
    awnet = models["awnet"]
    if awnet.manifest.get("kind") != "awnet":
        log(f"warning: {args.model_dir} has kind {awnet.manifest.get('kind')!r}, not 'awnet'")
    name = awnet.manifest.get("name", "model")
    need_ckpt = args.baseline_dir is None or (args.plain and args.plain_dir is None)
    ckpt_dir: Path | None = None
    if need_ckpt:
        if not args.checkpoint.is_file():
            raise SystemExit(f"error: checkpoint {args.checkpoint} not found: pass --baseline-dir "
                             "(and --no-plain or --plain-dir), or --checkpoint")
        ckpt_dir = args.cache_dir / sha256_file(args.checkpoint)[:16]
    if args.baseline_dir is not None:
        models["static"] = ModelFiles.load("static", args.baseline_dir, "given")
    else:
        assert ckpt_dir is not None
        target = ckpt_dir / f"{name}-static" / "1"
        cached = (target / "manifest.json").is_file() and not args.rebuild
        if not cached:
            build_static(args.checkpoint, target, log)
        models["static"] = ModelFiles.load("static", target, "cached" if cached else "built")
    if args.plain:
        if args.plain_dir is not None:
            models["plain"] = ModelFiles.load("plain", args.plain_dir, "given")
        else:
            assert ckpt_dir is not None
            target = ckpt_dir / f"{name}-plain" / "1"
            cached = (target / "manifest.json").is_file() and not args.rebuild
            if not cached:
                build_plain(args.checkpoint, target, awnet.onnx_path, log)
            models["plain"] = ModelFiles.load("plain", target, "cached" if cached else "built")
    for key, m in models.items():
        if m.input_shape != awnet.input_shape:
            raise SystemExit(f"error: {key} model input {list(m.input_shape)} differs from the AW-Net "
                             f"model's {list(awnet.input_shape)}")
        m.facts = graph_facts(m.onnx_path)
    if models["static"].manifest.get("kind") != "static":
        log(f"warning: the baseline {models['static'].dir} has kind {models['static'].manifest.get('kind')!r}")
    return models


# --- ONNX Runtime timing -------------------------------------------------------------------------
def make_session(path: Path, threads: int) -> Any:
    """A CPU session configured like the service's (service/runtime.py), threads pinned."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=so, providers=[CPU])


def random_images(batch: int, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + batch).random((batch, *shape), dtype=np.float32)


@dataclass
class Cell:
    """One (model, mode, batch) measurement: per-call latencies in seconds."""

    model: str
    mode: str
    batch: int
    run: Callable[[], Any]
    times: list[float] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        t = np.asarray(self.times) * 1e3
        return {
            "model": self.model, "mode": self.mode, "batch": self.batch, "calls": len(t),
            "p50_ms": float(np.percentile(t, 50)), "p90_ms": float(np.percentile(t, 90)),
            "mean_ms": float(t.mean()), "min_ms": float(t.min()),
            "images_per_s": float(self.batch * len(t) / (t.sum() / 1e3)),
        }


def measure(cells: Sequence[Cell], *, seconds: float, iterations: int | None, warmup: int,
            rounds: int, settle_s: float, desc: str) -> None:
    """Time each cell, interleaved: ``rounds`` passes over all cells, each pass giving every
    cell 1/rounds of its budget. A busy machine then slows every model alike instead of
    whichever happened to run during the disturbance. Each pass of a cell starts with
    ``settle_s`` of untimed calls: right after a switch the previous session's intra-op
    threads still spin-wait for work (ONNX Runtime's default) and steal a core, which
    measured ~40% slower calls for ~20 ms on 2 cores."""
    from tqdm import tqdm

    for cell in cells:
        for _ in range(warmup):
            cell.run()
    per_round_s = seconds / rounds
    per_round_n = math.ceil(iterations / rounds) if iterations else None
    gc_was = gc.isenabled()
    gc.disable()
    try:
        with tqdm(total=rounds * len(cells), desc=desc, unit="cell", leave=False, file=sys.stderr) as bar:
            for _ in range(rounds):
                for cell in cells:
                    settle_end = time.perf_counter() + settle_s
                    cell.run()
                    while time.perf_counter() < settle_end:
                        cell.run()
                    n = 0
                    start = time.perf_counter()
                    while True:
                        t0 = time.perf_counter()
                        cell.run()
                        t1 = time.perf_counter()
                        cell.times.append(t1 - t0)
                        n += 1
                        if per_round_n is not None:
                            if n >= per_round_n:
                                break
                        elif t1 - start >= per_round_s and n >= 2:
                            break
                    bar.update()
    finally:
        if gc_was:
            gc.enable()


def ort_cells(models: dict[str, ModelFiles], batches: Sequence[int], threads: int) -> tuple[list[Cell], dict[str, str]]:
    sessions = {k: make_session(m.onnx_path, threads) for k, m in models.items()}
    providers = {k: s.get_providers()[0] for k, s in sessions.items()}
    shape = models["awnet"].input_shape
    cells: list[Cell] = []
    for b in batches:
        image = random_images(b, shape)
        for key, sess in sessions.items():
            modes = AWNET_MODES if key == "awnet" else {"-": -1.0}
            for mode, value in modes.items():
                feeds = {INPUT_IMAGE: image, INPUT_MIX: np.full(b, value, np.float32)}
                cells.append(Cell(key, mode, b, lambda s=sess, f=feeds: s.run(None, f)))
    return cells, providers


def eager_cells(checkpoint: Path, batches: Sequence[int], threads: int, shape: Sequence[int]) -> tuple[list[Cell], str]:
    """PyTorch eager AW-Net forward (``forward_all`` with a per-sample ``mix_override``)."""
    sys.path.insert(0, str(ROOT))
    import torch

    from training.checkpoint import load_model

    torch.set_num_threads(threads)
    model, _ = load_model(checkpoint, "cpu")
    cells = []
    for b in batches:
        x = torch.from_numpy(random_images(b, shape))
        for mode, value in AWNET_MODES.items():
            mix = torch.full((b,), value)

            def run(x: torch.Tensor = x, mix: torch.Tensor = mix) -> Any:
                with torch.inference_mode():
                    return model.forward_all(x, mix).logits

            cells.append(Cell("torch-eager", mode, b, run))
    return cells, torch.__version__


# --- memory: one fresh process per model --------------------------------------------------------
def probe_memory_main(argv: Sequence[str]) -> int:
    """Subprocess: import the runtime, load one model, run the largest batch, report VmHWM."""
    p = argparse.ArgumentParser(prog=f"benchmark.py {PROBE_CMD}")
    p.add_argument("--runtime", choices=("ort", "torch"), default="ort")
    p.add_argument("--model", default=None, help="model.onnx (ort) or checkpoint (torch); none = interpreter only")
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--shape", type=int, nargs="+", required=True)
    p.add_argument("--settle-ms", type=float, default=50.0,
                   help="untimed calls for this long at the start of each pass of a cell (see measure())")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--calls", type=int, default=3)
    a = p.parse_args(argv)
    image = random_images(a.batch, a.shape)
    if a.runtime == "ort":
        import onnxruntime  # noqa: F401 - the interpreter baseline includes the runtime
    else:
        sys.path.insert(0, str(ROOT))
        import torch

        from training.checkpoint import load_model

        torch.set_num_threads(a.threads)
    after_import = peak_rss_bytes()
    if a.model:
        if a.runtime == "ort":
            sess = make_session(Path(a.model), a.threads)
            feeds = {INPUT_IMAGE: image, INPUT_MIX: np.full(a.batch, -1.0, np.float32)}
            for _ in range(a.calls):
                sess.run(None, feeds)
        else:
            model, _ = load_model(a.model, "cpu")
            x, mix = torch.from_numpy(image), torch.full((a.batch,), -1.0)
            with torch.inference_mode():
                for _ in range(a.calls):
                    model.forward_all(x, mix)
    print(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "peak_rss_after_import_bytes": after_import,
                      "rss_bytes": proc_status_bytes("VmRSS")}))
    return 0


def probe_memory(runtime: str, model: Path | None, batch: int, shape: Sequence[int], threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), PROBE_CMD, "--runtime", runtime, "--batch", str(batch),
           "--shape", *map(str, shape), "--threads", str(threads)]
    if model is not None:
        cmd += ["--model", str(model)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise SystemExit(f"error: memory probe failed: {' '.join(cmd)}\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def measure_memory(models: dict[str, ModelFiles], batch: int, threads: int, eager_ckpt: Path | None) -> dict[str, Any]:
    """Peak RSS of a fresh process per model, and of one that only imports the runtime: the
    difference is what the model (weights, session, arena for the batch) costs."""
    from tqdm import tqdm

    shape = models["awnet"].input_shape
    jobs: list[tuple[str, str, Path | None]] = [("interpreter+onnxruntime", "ort", None)]
    jobs += [(k, "ort", m.onnx_path) for k, m in models.items()]
    if eager_ckpt is not None:
        jobs += [("interpreter+torch", "torch", None), ("torch-eager", "torch", eager_ckpt)]
    out: dict[str, Any] = {"batch": batch, "method": "VmHWM of a fresh subprocess: load, then 3 calls at this batch"}
    for name, runtime, model in tqdm(jobs, desc="memory", leave=False, file=sys.stderr):
        out[name] = probe_memory(runtime, model, batch, shape, threads)
    for name, _, model in jobs:
        if model is None:
            continue
        base = out["interpreter+torch" if name == "torch-eager" else "interpreter+onnxruntime"]["peak_rss_bytes"]
        out[name]["model_rss_bytes"] = out[name]["peak_rss_bytes"] - base
    for other in ("static", "plain"):
        if other in out:
            out[f"ratio_awnet_{other}_peak_rss"] = ratio(out["awnet"]["peak_rss_bytes"], out[other]["peak_rss_bytes"])
            out[f"ratio_awnet_{other}_model_rss"] = ratio(out["awnet"]["model_rss_bytes"], out[other]["model_rss_bytes"])
    return out


# --- HTTP: a running service ---------------------------------------------------------------------
def check_loopback(url: str) -> str:
    """Only loopback services: this is a load generator, never point it at someone else."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SystemExit(f"error: --http {url!r} must look like http://127.0.0.1:8000")
    infos = socket.getaddrinfo(parts.hostname, parts.port or 80, proto=socket.IPPROTO_TCP)
    addrs = {info[4][0] for info in infos}
    if not addrs or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise SystemExit(f"error: --http {url!r} resolves to {sorted(addrs)}: loopback addresses only")
    return url.rstrip("/")


def check_service(url: str) -> None:
    """Loopback, and answering ready: refuse before measuring anything else."""
    import httpx

    url = check_loopback(url)
    try:
        r = httpx.get(f"{url}/v2/health/ready", timeout=5.0)
    except httpx.HTTPError as exc:
        raise SystemExit(f"error: --http {url}: {exc} (start it with: python -m service)") from None
    if r.status_code != 200:
        raise SystemExit(f"error: --http {url}/v2/health/ready answered {r.status_code}: {r.text[:300]}")


def _metric_sum(text: str, name: str, model: str) -> float:
    total = 0.0
    pat = re.compile(rf'^{re.escape(name)}\{{(?P<labels>[^}}]*)\}}\s+(?P<value>\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m and f'model="{model}"' in m.group("labels"):
            total += float(m.group("value"))
    return total


def _v2_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    blob = np.ascontiguousarray(images, dtype="<f4").tobytes()
    head = json.dumps({
        "inputs": [{"name": INPUT_IMAGE, "datatype": "FP32", "shape": list(images.shape),
                    "parameters": {"binary_data_size": len(blob)}}],
        "parameters": {"binary_data_output": True},
    }).encode()
    return head + blob, {"Inference-Header-Content-Length": str(len(head)),
                         "Content-Type": "application/octet-stream"}


async def _http_level(url: str, model: str, body: bytes, headers: dict[str, str], clients: int,
                      requests: int, seconds: float) -> dict[str, Any]:
    import httpx

    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    path = f"{url}/v2/models/{model}/infer"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:

        async def worker() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, content=body, headers=headers)
                    key = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                if key is None:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors[key] = errors.get(key, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    t = np.asarray(lat) * 1e3
    return {"requests": sent, "ok": len(lat), "errors": errors, "wall_s": wall,
            "requests_per_s": len(lat) / wall if wall else None,
            "p50_ms": float(np.percentile(t, 50)) if len(t) else None,
            "p90_ms": float(np.percentile(t, 90)) if len(t) else None}


def measure_http(url: str, models: Sequence[str], clients_levels: Sequence[int], requests: int,
                 seconds: float, batch: int) -> list[dict[str, Any]]:
    """End-to-end v2 binary-tensor throughput with N concurrent clients; the service's own
    ``awnet_batch_size`` histogram tells how many inputs each ONNX Runtime call got."""
    import httpx
    from tqdm import tqdm

    url = check_loopback(url)
    results = []
    with httpx.Client(timeout=30.0) as c:
        for model in models:
            meta = c.get(f"{url}/v2/models/{model}")
            if meta.status_code != 200:
                raise SystemExit(f"error: {url}/v2/models/{model} answered {meta.status_code}: {meta.text[:300]}")
            shape = [d for d in meta.json()["inputs"][0]["shape"][1:]]
            body, headers = _v2_body(random_images(batch, shape))
            for _ in range(3):  # warm-up: connection, first-call costs
                c.post(f"{url}/v2/models/{model}/infer", content=body, headers=headers).raise_for_status()
            for clients in tqdm(clients_levels, desc=f"http {model}", leave=False, file=sys.stderr):
                before = c.get(f"{url}/metrics").text
                res = asyncio.run(_http_level(url, model, body, headers, clients, requests, seconds))
                after = c.get(f"{url}/metrics").text
                calls = _metric_sum(after, "awnet_batch_size_count", model) - _metric_sum(before, "awnet_batch_size_count", model)
                inputs = _metric_sum(after, "awnet_batch_size_sum", model) - _metric_sum(before, "awnet_batch_size_sum", model)
                res.update({"model": model, "clients": clients, "batch_per_request": batch,
                            "images_per_s": (res["requests_per_s"] or 0.0) * batch,
                            "ort_calls": int(calls), "mean_ort_batch": inputs / calls if calls else None})
                results.append(res)
    return results


# --- report --------------------------------------------------------------------------------------
def compare(latency: list[dict[str, Any]], batches: Sequence[int], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per (batch, AW-Net mode) with the baselines' figures and the ratios."""
    by = {(r["model"], r["mode"], r["batch"]): r for r in latency}
    rows = []
    for b in batches:
        router = by[("awnet", "router", b)]
        for mode in AWNET_MODES:
            a = by[("awnet", mode, b)]
            row: dict[str, Any] = {"batch": b, "mode": mode, "awnet_p50_ms": a["p50_ms"], "awnet_p90_ms": a["p90_ms"],
                                   "awnet_images_per_s": a["images_per_s"],
                                   "ratio_mode_router_p50": ratio(a["p50_ms"], router["p50_ms"])}
            for k in keys:
                if k == "awnet":
                    continue
                s = by[(k, "-", b)]
                row.update({f"{k}_p50_ms": s["p50_ms"], f"{k}_p90_ms": s["p90_ms"], f"{k}_images_per_s": s["images_per_s"],
                            f"ratio_awnet_{k}_p50": ratio(a["p50_ms"], s["p50_ms"]),
                            f"ratio_awnet_{k}_p90": ratio(a["p90_ms"], s["p90_ms"]),
                            f"ratio_awnet_{k}_throughput": ratio(a["images_per_s"], s["images_per_s"])})
            rows.append(row)
    return rows


def latency_table(rows: list[dict[str, Any]], keys: Sequence[str]) -> str:
    others = [k for k in keys if k != "awnet"]
    headers = ["batch", "mode", "awnet ms (p50/p90)"]
    for k in others:
        headers += [f"{k} ms (p50/p90)", f"awnet/{k}"]
    headers += ["mode/router", "awnet img/s"] + [f"{k} img/s" for k in others]
    out = []
    for r in rows:
        line: list[Any] = [r["batch"], r["mode"], fmt_ms(r["awnet_p50_ms"], r["awnet_p90_ms"])]
        for k in others:
            line += [fmt_ms(r[f"{k}_p50_ms"], r[f"{k}_p90_ms"]), fmt_ratio(r[f"ratio_awnet_{k}_p50"])]
        line += [fmt_ratio(r["ratio_mode_router_p50"]), fmt_int(r["awnet_images_per_s"])]
        line += [fmt_int(r[f"{k}_images_per_s"]) for k in others]
        out.append(line)
    return format_table(headers, out, align="rl" + "r" * (len(headers) - 2))


def size_memory_table(models: dict[str, ModelFiles], memory: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
    keys = list(models)
    others = [k for k in keys if k != "awnet"]
    size: dict[str, Any] = {k: {kk: v for kk, v in m.facts.items() if kk != "op_counts"} for k, m in models.items()}
    metrics: list[tuple[str, Callable[[str], float | None], Callable[[float | None], str]]] = [
        ("model.onnx bytes", lambda k: models[k].facts.get("file_bytes"), fmt_int),
        ("parameters (initializer elements)", lambda k: models[k].facts.get("parameters"), fmt_int),
        ("graph nodes", lambda k: models[k].facts.get("nodes"), fmt_int),
    ]
    for other in others:
        for name, field_ in (("bytes", "file_bytes"), ("params", "parameters"), ("nodes", "nodes")):
            size[f"ratio_awnet_{other}_{name}"] = ratio(models["awnet"].facts.get(field_), models[other].facts.get(field_))
    if memory is not None:
        b = memory["batch"]

        def mib(x: float | None) -> str:
            return "-" if x is None else f"{x / MIB:.1f}"

        metrics += [
            (f"peak RSS MiB (fresh process, batch {b})", lambda k: memory[k]["peak_rss_bytes"], mib),
            ("  minus interpreter+onnxruntime MiB", lambda k: memory[k]["model_rss_bytes"], mib),
        ]
    headers = ["metric", "awnet"]
    for k in others:
        headers += [k, f"awnet/{k}"]
    rows = []
    for name, get, fmt in metrics:
        line: list[Any] = [name, fmt(get("awnet"))]
        for k in others:
            line += [fmt(get(k)), fmt_ratio(ratio(get("awnet"), get(k)))]
        rows.append(line)
    graph_rows = []
    for label, fact in (("router feature extractor", "router_extractor"), ("router signal heads", "router_signal_heads"),
                        ("router type head (p_adv)", "router_type_head"), ("adversarial BNs", "adversarial_bn")):
        graph_rows.append([label, *["yes" if models[k].facts.get(fact) else "no" for k in keys]])
    text = format_table(headers, rows)
    if all(fact in models["awnet"].facts for fact in ("router_extractor",)):
        text += "\n\nwhat each graph holds (from its initializers):\n" + format_table(["part", *keys], graph_rows)
    return text, size


def eager_table(eager: list[dict[str, Any]], latency: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    by = {(r["model"], r["mode"], r["batch"]): r for r in latency}
    rows, out = [], []
    for e in eager:
        o = by[("awnet", e["mode"], e["batch"])]
        r = ratio(e["p50_ms"], o["p50_ms"])
        out.append({"batch": e["batch"], "mode": e["mode"], "eager_p50_ms": e["p50_ms"], "eager_p90_ms": e["p90_ms"],
                    "ort_p50_ms": o["p50_ms"], "ratio_eager_ort_p50": r, "eager_images_per_s": e["images_per_s"]})
        rows.append([e["batch"], e["mode"], fmt_ms(e["p50_ms"], e["p90_ms"]), fmt_ms(o["p50_ms"], o["p90_ms"]),
                     fmt_ratio(r), fmt_int(e["images_per_s"]), fmt_int(o["images_per_s"])])
    headers = ["batch", "mode", "torch eager ms (p50/p90)", "ORT awnet ms (p50/p90)", "eager/ORT", "eager img/s", "ORT img/s"]
    return format_table(headers, rows, align="rl" + "r" * 5), out


def http_table(http: list[dict[str, Any]]) -> str:
    rows = [[h["model"], h["clients"], f"{h['ok']}/{h['requests']}", sum(h["errors"].values()),
             f"{h['requests_per_s']:.1f}" if h["requests_per_s"] else "-", fmt_int(h["images_per_s"]),
             fmt_ms(h["p50_ms"], h["p90_ms"]), "-" if h["mean_ort_batch"] is None else f"{h['mean_ort_batch']:.2f}"]
            for h in http]
    headers = ["model", "clients", "ok/sent", "errors", "req/s", "img/s", "latency ms (p50/p90)", "mean ORT batch"]
    return format_table(headers, rows)


def plot(latency: list[dict[str, Any]], batches: Sequence[int], path: Path, title: str) -> None:
    """Latency (p50, with a band up to p90) and throughput against batch size, log-x."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[dict[str, Any]]] = {}
    for r in latency:
        label = r["model"] if r["mode"] == "-" else f"{r['model']} ({r['mode']})"
        series.setdefault(label, []).append(r)
    styles = {"awnet (router)": ("C0", "-"), "awnet (clean)": ("C0", "--"), "awnet (adv)": ("C0", ":"),
              "static": ("C1", "-"), "plain": ("C2", "-"), "torch-eager (router)": ("C3", "-"),
              "torch-eager (clean)": ("C3", "--"), "torch-eager (adv)": ("C3", ":")}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, rs in series.items():
        rs = sorted(rs, key=lambda r: r["batch"])
        x = [r["batch"] for r in rs]
        color, ls = styles.get(label, (None, "-"))
        ax1.plot(x, [r["p50_ms"] for r in rs], ls, marker="o", ms=3, color=color, label=label)
        ax1.fill_between(x, [r["p50_ms"] for r in rs], [r["p90_ms"] for r in rs], color=color, alpha=0.12)
        ax2.plot(x, [r["images_per_s"] for r in rs], ls, marker="o", ms=3, color=color, label=label)
    for ax, ylabel in ((ax1, "latency per call, ms (p50; band to p90)"), (ax2, "throughput, images/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(batches), [str(b) for b in batches])
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- main ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/benchmark.py",
        description="Latency, throughput, size and memory of the AW-Net ONNX graph against static baselines "
                    "(ONNX Runtime, CPU provider); tables with ratios, a JSON file and a plot.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR, help="AW-Net model folder (model.onnx + manifest.json)")
    p.add_argument("--baseline-dir", type=Path, default=None,
                   help="static export with the same contract; default: built once from --checkpoint "
                        "(python -m training export --static ... --skip-eval) into --cache-dir")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help=f"the AW-Net's PyTorch checkpoint, used to build the baselines (default: {DEFAULT_CHECKPOINT.relative_to(ROOT)}); "
                        "giving it explicitly also turns on --eager")
    p.add_argument("--eager", action=argparse.BooleanOptionalAction, default=None,
                   help="also time the PyTorch eager AW-Net forward from --checkpoint (default: on when --checkpoint is given)")
    p.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the router-free plain backbone (built from --checkpoint)")
    p.add_argument("--plain-dir", type=Path, default=None, help="a ready plain-backbone export instead of building it")
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help="where built baselines are kept (per checkpoint sha256)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the baselines even when cached")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument("--seconds", type=float, default=2.0, help="time budget per (model, mode, batch) cell")
    p.add_argument("--iterations", type=int, default=None, help="fixed number of timed calls per cell instead of --seconds")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per cell before timing")
    p.add_argument("--rounds", type=int, default=4, help="interleaved passes over the cells (each gets 1/rounds of the budget)")
    p.add_argument("--settle-ms", type=float, default=50.0,
                   help="untimed calls for this long at the start of each pass of a cell (see measure())")
    p.add_argument("--threads", type=int, default=usable_cores(),
                   help="ONNX Runtime intra-op threads (and torch threads); default: all usable cores")
    p.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-RSS subprocesses")
    p.add_argument("--http", default=None, metavar="URL",
                   help="also load a running service (python -m service) on this loopback URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--http-models", nargs="+", default=None, help="served model names (default: the --model-dir manifest's name)")
    p.add_argument("--http-clients", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients, one level each")
    p.add_argument("--http-requests", type=int, default=300, help="max requests per level")
    p.add_argument("--http-seconds", type=float, default=10.0, help="max seconds per level")
    p.add_argument("--http-batch", type=int, default=1, help="images per request")
    p.add_argument("--json-out", type=Path, default=DEFAULT_JSON)
    p.add_argument("--plot-out", type=Path, default=DEFAULT_PLOT)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [PROBE_CMD]:
        return probe_memory_main(argv[1:])
    if argv[:1] == [BUILD_PLAIN_CMD]:
        return build_plain_main(argv[1:])
    args = build_parser().parse_args(argv)
    if args.eager is None:
        args.eager = args.checkpoint is not None
    args.checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    for name in ("model_dir", "baseline_dir", "checkpoint", "plain_dir", "cache_dir", "json_out", "plot_out"):
        if getattr(args, name) is not None:  # subprocesses run in the project root
            setattr(args, name, getattr(args, name).resolve())
    if args.seconds <= 0 or args.rounds < 1 or args.threads < 1 or any(b < 1 for b in args.batch_sizes):
        raise SystemExit("error: --seconds, --rounds, --threads and --batch-sizes must be positive")
    if args.settle_ms < 0 or args.warmup < 0 or (args.iterations is not None and args.iterations < 1):
        raise SystemExit("error: --settle-ms and --warmup must not be negative, --iterations must be positive")
    if args.http:
        check_service(args.http)  # fail before minutes of measuring
    batches = sorted(set(args.batch_sizes))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    models = prepare_models(args, log)
    keys = list(models)
    load_before = loadavg()
    memory = measure_memory(models, max(batches), args.threads, args.checkpoint if args.eager else None) if args.memory else None

    import onnxruntime as ort

    cells, providers = ort_cells(models, batches, args.threads)
    budget = len(cells) * (args.seconds if not args.iterations else 0)
    log(f"timing {len(cells)} cells ({', '.join(keys)} x batch {batches})" + (f", ~{budget:.1f} s" if budget else ""))
    measure(cells, seconds=args.seconds, iterations=args.iterations, warmup=args.warmup, rounds=args.rounds,
            settle_s=args.settle_ms / 1e3, desc="onnxruntime")
    latency = [c.stats() for c in cells]
    eager: list[dict[str, Any]] = []
    torch_version = None
    if args.eager:  # after the ONNX Runtime cells: torch's threads must not disturb them
        ecells, torch_version = eager_cells(args.checkpoint, batches, args.threads, models["awnet"].input_shape)
        measure(ecells, seconds=args.seconds, iterations=args.iterations, warmup=args.warmup,
                rounds=args.rounds, settle_s=args.settle_ms / 1e3, desc="torch eager")
        eager = [c.stats() for c in ecells]
    http = None
    if args.http:
        http = measure_http(args.http, args.http_models or [models["awnet"].manifest["name"]], args.http_clients,
                            args.http_requests, args.http_seconds, args.http_batch)
    load_after = loadavg()

    rows = compare(latency, batches, keys)
    size_text, size = size_memory_table(models, memory)
    machine = {
        "cpu_count": os.cpu_count(), "usable_cores": usable_cores(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "onnxruntime": ort.__version__, "numpy": np.__version__,
        "torch": torch_version, "providers": providers, "intra_op_threads": args.threads,
        "loadavg_before": load_before, "loadavg_after": load_after,
    }
    header = (f"AW-Net inference benchmark: ONNX Runtime {ort.__version__} {CPU}, {args.threads} intra-op threads, "
              f"{os.cpu_count()} cores; {args.seconds:g} s per cell" if not args.iterations else
              f"AW-Net inference benchmark: ONNX Runtime {ort.__version__} {CPU}, {args.threads} intra-op threads, "
              f"{os.cpu_count()} cores; {args.iterations} calls per cell")
    print(header)
    print(f"load average before/after: {load_before} / {load_after}")
    for k, m in models.items():
        print(f"  {k:6s} {m.onnx_path}  ({m.built}; kind {m.manifest.get('kind')}, provider {providers[k]})")
    print()
    print("latency per ONNX Runtime call (ms, p50 / p90); ratios of p50; img/s = images / total timed seconds")
    print(latency_table(rows, keys))
    spread = {b: max(r["awnet_p50_ms"] for r in rows if r["batch"] == b) / min(r["awnet_p50_ms"] for r in rows if r["batch"] == b)
              for b in batches}
    print("AW-Net modes (router / forced clean / forced adv), slowest p50 / fastest p50 per batch: "
          + ", ".join(f"{b}: {s:.2f}x" for b, s in spread.items()))
    print()
    print("size and memory")
    print(size_text)
    eager_rows = None
    if eager:
        text, eager_rows = eager_table(eager, latency)
        print()
        print("PyTorch eager AW-Net forward vs the ONNX Runtime AW-Net graph")
        print(text)
        if memory is not None:
            m = memory["torch-eager"]
            print(f"torch eager peak RSS {m['peak_rss_bytes'] / MIB:.1f} MiB "
                  f"({m['model_rss_bytes'] / MIB:.1f} MiB over interpreter+torch) vs ONNX Runtime "
                  f"{memory['awnet']['peak_rss_bytes'] / MIB:.1f} MiB")
    if http is not None:
        print()
        print(f"service {args.http}: /v2 infer, binary tensors, {args.http_batch} image(s) per request "
              "(client and server share the machine)")
        print(http_table(http))

    results = {
        "schema_version": 1,
        "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "command": [Path(sys.argv[0]).name, *argv],
        "machine": machine,
        "settings": {"batch_sizes": batches, "seconds": args.seconds, "iterations": args.iterations,
                     "warmup": args.warmup, "rounds": args.rounds, "settle_ms": args.settle_ms,
                     "threads": args.threads},
        "models": {k: {"dir": str(m.dir), "onnx": str(m.onnx_path), "built": m.built, "kind": m.manifest.get("kind"),
                       "name": m.manifest.get("name"), "version": m.manifest.get("version"), **m.facts}
                   for k, m in models.items()},
        "latency": latency,
        "comparison": rows,
        "mode_spread": {str(b): s for b, s in spread.items()},
        "size": size,
        "memory": memory,
        "eager": eager_rows,
        "http": http,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results, indent=2) + "\n")
    plot(latency + eager, batches, args.plot_out,
         f"{models['awnet'].manifest.get('name')}: ONNX Runtime CPU, {args.threads} threads, {os.cpu_count()} cores")
    print()
    print(f"wrote {args.json_out} and {args.plot_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
