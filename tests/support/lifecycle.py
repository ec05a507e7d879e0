"""Model versions with probe sets (fake models, no torch), broken variants, swap helpers.

* ``write_probed_version(repo, name, version, model=...)``: ``write_model_version`` plus a
  probe set (smooth "clean" images, noisy "adversarial" ones) whose recorded outputs come
  from ``reference`` (by default the model itself) through ONNX Runtime, and the manifest's
  ``probes`` block. With ``reference`` = the good model and ``model`` = a broken one, the
  broken version ships the good one's probes: what a faulty export would look like.
* ``constant_router_model()``: the fake model with its router replaced by a constant.
* ``publish(tmp_version_dir, repo/name/version)``: copy-then-rename (atomic for a poller).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from artifact_contract import Manifest, write_probes
from tests.support.fake_model import build_model, model_bytes, write_model_version
from tests.support.images import noisy_image, smooth_image


def probe_inputs(n: int = 64, shape: tuple[int, int, int] = (1, 28, 28)) -> tuple[np.ndarray, np.ndarray]:
    clean = np.stack([smooth_image(shape, seed=i) for i in range(n)])
    adv = np.stack([noisy_image(shape, seed=1000 + i) for i in range(n)])
    return clean, adv


def reference_outputs(model: onnx.ModelProto, images: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes(model), so, providers=["CPUExecutionProvider"])
    logits, p_adv, _ = sess.run(None, {"image": images,
                                       "mix_override": np.full((len(images),), -1.0, np.float32)})
    return {"logits": logits, "p_adv": p_adv}


def write_probed_version(
    repository: Path, name: str, version: str, *, model: onnx.ModelProto | None = None,
    reference: onnx.ModelProto | None = None, n: int = 64, threshold: float = 0.5,
    tol: dict[str, float] | None = None, manifest_overrides: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    model = model or build_model()
    reference = reference or model
    folder = write_model_version(repository, name, version, model=model, threshold=threshold,
                                 manifest_overrides=manifest_overrides)
    clean, adv = probe_inputs(n)
    arrays = {}
    for s, images in (("clean", clean), ("adversarial", adv)):
        ref = reference_outputs(reference, images)
        labels = ref["logits"].argmax(axis=1)
        if s == "adversarial":  # the attack's labels: what the clean image was
            labels = (labels + 1) % ref["logits"].shape[1]
        arrays[s] = {"images": images, "labels": labels.astype(np.int64), **ref}
    block = write_probes(folder, arrays, threshold=threshold, tol=tol,
                         clean={"source": "smooth blobs"}, adversarial={"attack": "uniform noise"})
    manifest = Manifest.load(folder)
    dataclasses.replace(manifest, probes=block).write(folder)
    return folder


def constant_router_model(value: float = 0.0, **kw: Any) -> onnx.ModelProto:
    """``build_model`` with ``p_adv = sigmoid(score * 0 + value)``: a router that ignores
    its input (a broken export; still a valid graph with the contract's names)."""
    model = build_model(**kw)
    g = model.graph
    for node in g.node:
        if node.op_type == "Sigmoid":
            node.input[0] = "score_const"
    idx = [i for i, n in enumerate(g.node) if n.op_type == "Sigmoid"][0]
    g.initializer.append(onnx.numpy_helper.from_array(np.array(value, np.float32), "router_const"))
    g.node.insert(idx, onnx.helper.make_node("Mul", ["score", "zero"], ["score_zero"]))
    g.node.insert(idx + 1, onnx.helper.make_node("Add", ["score_zero", "router_const"], ["score_const"]))
    onnx.checker.check_model(model)
    return model


def publish(staged: Path, target: Path) -> None:
    """Move a fully written version folder into place in one rename (same file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    hidden = target.parent / f".{target.name}.incoming"
    shutil.copytree(staged, hidden)
    os.rename(hidden, target)


def retract(target: Path) -> None:
    """Take a version folder out in one rename, then delete it."""
    hidden = target.parent / f".{target.name}.removed"
    os.rename(target, hidden)
    shutil.rmtree(hidden)
