"""What the run compares the AW-Net graph against: the model baselines, built once, cached.

* ``static``: ``python -m training export --static`` of the AW-Net checkpoint, i.e. its
  clean branch alone. That graph still holds the router's feature extractor and signal
  heads (the clean branch's convs are modulated by the router's signals); only the type
  head, the adversarial BNs and the blend are gone, so ``awnet/static`` is the cost of
  *soft routing*, not of the router as a whole. ``--no-static`` skips it.
* ``plain``: the bare backbone (plain convs, one BN) carrying the checkpoint's backbone
  weights, router removed (``benchmarks.build_plain``), for timing only: ``awnet/plain`` is
  the whole price of AW-Net against a static network of the same architecture.
  ``--no-plain`` skips it.

The serving baselines (in-process throughput, a trivial endpoint, PyTriton) are measured
by ``benchmarks.http`` in the same run. Every manifest is read through ``artifact_contract``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_contract import ArtifactError, Manifest, sha256_file
from benchmarks.common import ROOT, log


@dataclass
class ModelFiles:
    """One model folder of the repository layout (model.onnx + manifest.json)."""

    key: str  # "awnet", "static", "plain"
    dir: Path
    manifest: Manifest
    onnx_path: Path
    built: str  # "given" | "built" | "cached"
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, key: str, folder: Path, built: str) -> ModelFiles:
        try:  # the service's own checks: the manifest validates, its graph file is there
            manifest = Manifest.load(folder)
            onnx_path = manifest.verify_folder(folder, verify_sha256=False, check_names=False)
        except ArtifactError as exc:
            raise SystemExit(f"error: {exc}") from exc
        return cls(key, folder, manifest, onnx_path, built)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.manifest.input.shape)

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "dir": str(self.dir),
            "onnx": str(self.onnx_path),
            "built": self.built,
            "kind": m.kind,
            "name": m.name,
            "version": m.version,
            "arch": m.arch,
            **self.facts,
        }


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
    # a folded AW-Net graph (training.export.graph) says what it holds in its metadata: its
    # BN statistics and stacked signal heads became constants with generated names
    meta = {p.key: p.value for p in proto.metadata_props}
    holds = set(meta.get("awnet.holds", "").split())
    facts["graph"] = meta.get("awnet.graph")
    for fact, part, marker in (("router_extractor", "router.extractor", ".router.extractor."),
                               ("router_signal_heads", "router.signal_heads", ".router.signal_heads."),
                               ("router_type_head", "router.type_head", ".router.type_head."),
                               ("adversarial_bn", "bn_adv", ".bn_adv.")):  # fmt: skip
        facts[fact] = part in holds or any(marker in n for n in names)
    ops = [n.op_type for n in proto.graph.node]
    facts["op_counts"] = {op: ops.count(op) for op in sorted(set(ops))}
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


def _run(cmd: list[str], what: str) -> str:
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"error: {what} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res.stdout


def build_static(checkpoint: Path, target: Path) -> None:
    """The static baseline by the project's own command (docs/export.md), run once."""

    def run(out: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "training",
            "export",
            "--static",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--skip-eval",
        ]
        log(f"building the static baseline: {' '.join(cmd[1:])}")
        _run(cmd, "the static export")

    _atomic_build(target, run)


def build_plain(checkpoint: Path, target: Path, model_onnx: Path) -> None:
    """The router-free backbone, exported in a subprocess (torch stays out of this process,
    so its thread pool cannot disturb the ONNX Runtime timings)."""

    def run(out: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.build_plain",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--check-against",
            str(model_onnx),
        ]
        log("building the plain (router-free) backbone from the checkpoint ...")
        for line in _run(cmd, "building the plain backbone").splitlines():
            if line.startswith("warning:"):
                log(line)

    _atomic_build(target, run)


def _cached(key: str, target: Path, rebuild: bool, build: Callable[[], None]) -> ModelFiles:
    cached = (target / "manifest.json").is_file() and not rebuild
    if not cached:
        build()
    return ModelFiles.load(key, target, "cached" if cached else "built")


def prepare_models(args: Any) -> dict[str, ModelFiles]:
    """The AW-Net model, then the static and plain baselines (given, cached or built).

    ``args``: ``model_dir``, ``static``, ``baseline_dir``, ``plain``, ``plain_dir``,
    ``checkpoint``, ``cache_dir``, ``rebuild`` (the command line's names)."""
    models = {"awnet": ModelFiles.load("awnet", args.model_dir, "given")}
    awnet = models["awnet"]
    if awnet.manifest.kind != "awnet":
        log(f"warning: {args.model_dir} has kind {awnet.manifest.kind!r}, not 'awnet'")
    name = awnet.manifest.name
    need_ckpt = (args.static and args.baseline_dir is None) or (
        args.plain and args.plain_dir is None
    )
    ckpt_dir: Path | None = None
    if need_ckpt:
        if not args.checkpoint.is_file():
            raise SystemExit(
                f"error: checkpoint {args.checkpoint} not found: pass --baseline-dir "
                "and --plain-dir (or --no-static --no-plain), or --checkpoint"
            )
        ckpt_dir = args.cache_dir / sha256_file(args.checkpoint)[:16]
    if args.static:
        if args.baseline_dir is not None:
            models["static"] = ModelFiles.load("static", args.baseline_dir, "given")
        else:
            assert ckpt_dir is not None
            target = ckpt_dir / f"{name}-static" / "1"
            models["static"] = _cached(
                "static", target, args.rebuild, lambda: build_static(args.checkpoint, target)
            )
    if args.plain:
        if args.plain_dir is not None:
            models["plain"] = ModelFiles.load("plain", args.plain_dir, "given")
        else:
            assert ckpt_dir is not None
            target = ckpt_dir / f"{name}-plain" / "1"
            models["plain"] = _cached(
                "plain",
                target,
                args.rebuild,
                lambda: build_plain(args.checkpoint, target, awnet.onnx_path),
            )
    for key, m in models.items():
        if m.input_shape != awnet.input_shape:
            raise SystemExit(
                f"error: {key} model input {list(m.input_shape)} differs from the AW-Net "
                f"model's {list(awnet.input_shape)}"
            )
        m.facts = graph_facts(m.onnx_path)
    if "static" in models and models["static"].manifest.kind != "static":
        log(
            f"warning: the baseline {models['static'].dir} has kind {models['static'].manifest.kind!r}"
        )
    return models
