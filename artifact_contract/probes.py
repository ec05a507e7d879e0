"""Probe sets: a few labelled inputs beside a model version, with the exporter's own answers.

A version folder may hold ``probes.npz`` (numpy's format, read with ``allow_pickle=False``),
named and hashed by the manifest's optional ``probes`` block. It holds two sets, ``clean``
(test images with labels) and ``adversarial`` (attacked images with their true labels), each
with the exporter's logits and router scores for them, in router mode (``mix_override`` = -1):

    clean_images [Nc, C, H, W] float32   clean_labels [Nc] int64
    clean_logits [Nc, K] float32         clean_p_adv [Nc] float32
    adv_images, adv_labels, adv_logits, adv_p_adv: the same for the adversarial set

The manifest block records the rates the exporter measured on them and the tolerances::

    "probes": {"file": "probes.npz", "sha256": "...", "size_bytes": 123,
               "threshold": 0.5,                       # router threshold the rates use
               "clean": {"count": 64, "source": "...", "accuracy": 0.97, "flagged": 0.0},
               "adversarial": {"count": 64, "attack": "...", "accuracy": 0.8, "flagged": 0.95},
               "tolerance": {"logits": 1e-3, "p_adv": 1e-4, "accuracy": 0.05, "flagged": 0.05}}

``check_outputs`` compares a runtime's outputs with the recorded ones; the exporter runs it
on ONNX Runtime before writing, the service before a version takes traffic and, with the
canary on, while it serves. Standard library and numpy only.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from artifact_contract import names
from artifact_contract.errors import ArtifactError
from artifact_contract.fields import is_number, validate_file_block

PROBES_FILE = "probes.npz"
SETS = ("clean", "adversarial")
PREFIX = {"clean": "clean", "adversarial": "adv"}
ARRAYS = ("images", "labels", "logits", "p_adv")
DEFAULT_TOLERANCE = {"logits": 1e-3, "p_adv": 1e-4, "accuracy": 0.05, "flagged": 0.05}


def validate_block(block: Any, where: Any) -> None:
    """The manifest's ``probes`` block: raise ``ArtifactError`` naming the field."""
    if not isinstance(block, dict):
        raise ArtifactError(f"{where}: probes must be an object or absent")
    validate_file_block(block, "probes", where)
    thr = block.get("threshold")
    if thr is not None and not (is_number(thr) and 0.0 <= thr <= 1.0):
        raise ArtifactError(f"{where}: probes.threshold must be a number in [0, 1] or null, got {thr!r}")
    for s in SETS:
        part = block.get(s)
        if not isinstance(part, dict):
            raise ArtifactError(f"{where}: probes.{s} must be an object")
        count = part.get("count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ArtifactError(f"{where}: probes.{s}.count must be a positive integer, got {count!r}")
        for rate in ("accuracy", "flagged"):
            v = part.get(rate)
            if v is not None and not (is_number(v) and 0.0 <= v <= 1.0):
                raise ArtifactError(f"{where}: probes.{s}.{rate} must be a rate in [0, 1], got {v!r}")
    tol = block.get("tolerance", {})
    if not isinstance(tol, dict) or not all(is_number(v) and v >= 0 for v in tol.values()):
        raise ArtifactError(f"{where}: probes.tolerance must map checks to non-negative numbers")


def tolerance(block: dict[str, Any]) -> dict[str, float]:
    return {**DEFAULT_TOLERANCE, **{k: float(v) for k, v in block.get("tolerance", {}).items()}}


@dataclass
class ProbeSet:
    """The arrays of ``probes.npz``, per set."""

    block: dict[str, Any]
    arrays: dict[str, dict[str, np.ndarray]]  # set -> images/labels/logits/p_adv

    @property
    def threshold(self) -> float | None:
        thr = self.block.get("threshold")
        return None if thr is None else float(thr)


def encode(arrays: dict[str, dict[str, np.ndarray]]) -> bytes:
    flat = {f"{PREFIX[s]}_{a}": np.ascontiguousarray(arrays[s][a]) for s in SETS for a in ARRAYS}
    buf = io.BytesIO()
    np.savez(buf, **flat)
    return buf.getvalue()


def rates(logits: np.ndarray, p_adv: np.ndarray, labels: np.ndarray, threshold: float | None
          ) -> dict[str, float | None]:  # fmt: skip
    acc = float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())
    flagged = None if threshold is None else float((np.asarray(p_adv) >= threshold).mean())
    return {"accuracy": acc, "flagged": flagged}


def make_block(arrays: dict[str, dict[str, np.ndarray]], data: bytes, *, threshold: float | None,
               file: str = PROBES_FILE, tol: dict[str, float] | None = None,
               **describe: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The manifest block for probe arrays (their rates computed from the recorded outputs).
    ``describe``: extra keys per set, e.g. ``clean={"source": ...}``, ``adversarial={"attack": ...}``."""
    block: dict[str, Any] = {"file": file, "sha256": names.sha256_bytes(data), "size_bytes": len(data),
                             "threshold": threshold, "mode": "router (mix_override = -1)"}  # fmt: skip
    for s in SETS:
        a = arrays[s]
        block[s] = {"count": int(len(a["labels"])), **describe.get(s, {}),
                    **rates(a["logits"], a["p_adv"], a["labels"], threshold)}  # fmt: skip
    block["tolerance"] = {**DEFAULT_TOLERANCE, **(tol or {})}
    return block


def write_probes(folder: str | Path, arrays: dict[str, dict[str, np.ndarray]], *, threshold: float | None,
                 file: str = PROBES_FILE, tol: dict[str, float] | None = None,
                 **describe: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Write ``folder/file`` and return the manifest's ``probes`` block for it."""
    for s in SETS:
        a = arrays[s]
        n = len(a["labels"])
        if not all(len(a[k]) == n for k in ARRAYS):
            raise ValueError(f"probe set {s}: images, labels, logits and p_adv differ in length")
    data = encode(arrays)
    Path(folder, file).write_bytes(data)
    return make_block(arrays, data, threshold=threshold, file=file, tol=tol, **describe)


def load_probes(folder: str | Path, block: dict[str, Any], *, shape: tuple[int, int, int],
                num_classes: int) -> ProbeSet:  # fmt: skip
    """Read the probe file the block names; checks its sha256 and every array's shape."""
    path = Path(folder) / block["file"]
    if not path.is_file():
        raise ArtifactError(f"{path}: file not found (named by probes.file in the manifest)")
    data = path.read_bytes()
    actual = names.sha256_bytes(data)
    if actual != block["sha256"].lower():
        raise ArtifactError(f"{path}: sha256 mismatch: the file has {actual}, the manifest says "
                            f"{block['sha256']} (probe file corrupted or replaced)")  # fmt: skip
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            flat = {k: npz[k] for k in npz.files}
    except Exception as exc:  # noqa: BLE001 - numpy raises several types
        raise ArtifactError(f"{path}: not a readable probe file ({exc})") from exc
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for s in SETS:
        n = int(block[s]["count"])
        want = {"images": (n, *shape), "labels": (n,), "logits": (n, num_classes), "p_adv": (n,)}
        arrays[s] = {}
        for a, shp in want.items():
            key = f"{PREFIX[s]}_{a}"
            if key not in flat:
                raise ArtifactError(f"{path}: array {key!r} is missing")
            if tuple(flat[key].shape) != shp:
                raise ArtifactError(f"{path}: {key} has shape {list(flat[key].shape)}, expected {list(shp)}")
            arrays[s][a] = flat[key].astype(np.int64 if a == "labels" else np.float32, copy=False)
    return ProbeSet(block=block, arrays=arrays)


@dataclass
class ProbeReport:
    """Figures of one probe run and the checks that failed (empty: passed)."""

    figures: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.passed:
            f = self.figures
            flag = "" if "adversarial_flagged" not in f else f", adversarial flagged {f['adversarial_flagged']:.3f}"
            return (f"probes passed: clean accuracy {f['clean_accuracy']:.3f}{flag}, "
                    f"parity logits {f['parity_logits']:.2e}, p_adv {f['parity_p_adv']:.2e}")  # fmt: skip
        return "probes failed: " + "; ".join(self.failures)


def check_outputs(probes: ProbeSet, outputs: dict[str, dict[str, np.ndarray]]) -> ProbeReport:
    """Compare ``outputs`` (set -> {"logits", "p_adv"}) with the recorded ones and rates."""
    block, tol, thr = probes.block, tolerance(probes.block), probes.threshold
    report = ProbeReport()
    par_l = max(float(np.abs(outputs[s]["logits"] - probes.arrays[s]["logits"]).max()) for s in SETS)
    par_p = max(float(np.abs(outputs[s]["p_adv"] - probes.arrays[s]["p_adv"]).max()) for s in SETS)
    finite = all(np.isfinite(outputs[s][k]).all() for s in SETS for k in ("logits", "p_adv"))
    if not finite:
        par_l = par_p = float("inf")
    report.figures.update(parity_logits=par_l, parity_p_adv=par_p)
    if not par_l <= tol["logits"]:
        report.failures.append(f"logits parity: max |d| {par_l:.3g} > tolerance {tol['logits']:g}")
    if not par_p <= tol["p_adv"]:
        report.failures.append(f"router score parity: max |d| {par_p:.3g} > tolerance {tol['p_adv']:g}")
    for s in SETS:
        got = rates(outputs[s]["logits"], outputs[s]["p_adv"], probes.arrays[s]["labels"], thr)
        for rate in ("accuracy", "flagged"):
            value, recorded = got[rate], block[s].get(rate)
            if value is None or recorded is None:
                continue
            report.figures[f"{s}_{rate}"] = value
            if abs(value - recorded) > tol[rate] + 1e-9:
                what = "accuracy" if rate == "accuracy" else "flagged rate"
                report.failures.append(f"{s} {what} {value:.3f}, recorded {recorded:.3f} "
                                       f"(tolerance {tol[rate]:g})")  # fmt: skip
    return report
