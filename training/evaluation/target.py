"""What ``evaluate`` attacks: a checkpoint or an exported model folder, as one torch model.

Attacks need gradients, so an exported folder is turned back into the torch model it came
from: the architecture and input configuration from its manifest, the weights from the ONNX
initializers (the exporter names them ``model.<state-dict key>``). The rebuilt model is
checked against ONNX Runtime on real inputs before any figure is computed, so the figures
are those of the served graph, not of a look-alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from artifact_contract import (
    INPUT_IMAGE,
    INPUT_MIX,
    MANIFEST_FILE,
    ONNX_FILE,
    OUTPUT_LOGITS,
    OUTPUT_P_ADV,
)
from models import InputConfig, is_awnet, unwrap
from training.checkpoint import build_model, load_model, model_kwargs
from training.config import TrainConfig
from training.export.state import graph_state, missing_keys, read_sidecar


@dataclass
class Target:
    """A model under evaluation and the facts the evaluation needs about it."""

    model: nn.Module
    source: str  # "checkpoint" or "onnx"
    path: Path
    arch: str
    method: str
    dataset: str
    data_root: str | None
    eps: float
    awnet: bool
    manifest: dict[str, Any] | None = None
    threshold: float | None = None  # None: calibrate on the validation split
    parity_max_abs: float | None = None
    training: dict[str, Any] | None = None  # the training config it came from (the card records the recipe)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return unwrap(self.model).input_config.num_classes

    def test_split(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test images and labels (all for None or 0): first, not random, so
        that runs with the same ``n`` see the same images."""
        from training.data import build_dataset

        x, y = build_dataset(self.dataset, "test", root=self.data_root).tensors()
        return (x[:n], y[:n]) if n else (x, y)


def weights_fingerprint(model: nn.Module) -> str:
    """sha256 over the parameters and BN running statistics, sorted by name.

    ``num_batches_tracked`` is left out (the ONNX graph does not carry it), so a checkpoint
    and its export share a fingerprint.
    """
    h = hashlib.sha256()
    for key, value in sorted(unwrap(model).state_dict().items()):
        if key.endswith("num_batches_tracked"):
            continue
        h.update(key.encode())
        h.update(value.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def method_label(cfg: dict[str, Any]) -> str:
    return str(cfg.get("method", "?")) + ("+rat" if cfg.get("rat") else "")


def training_eps(cfg: dict[str, Any]) -> float:
    """The training config's eps, else (a config never resolved) its dataset's default budget."""
    if cfg.get("eps") is not None:
        return float(cfg["eps"])
    from training.data import get_dataset_info

    return float(get_dataset_info(cfg["dataset"]).eps)


def read_manifest(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """An exported model's ``manifest.json``, given the file or its folder: (file, content)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{p.parent} has no manifest.json: not an exported model folder")
    return p, json.loads(p.read_text())


def manifest_threshold(manifest: dict[str, Any]) -> float | None:
    """The router threshold an exported AW-Net is served with (None for a static export)."""
    thr = (manifest.get("router") or {}).get("threshold") if manifest.get("kind") == "awnet" else None
    return None if thr is None else float(thr)


def load_target(
    path: str | Path, device: str = "cpu", dataset: str | None = None, data_root: str | None = None
) -> Target:
    """A checkpoint (``*.pt``) or a model version folder (``manifest.json`` + ``model.onnx``).

    ``dataset``/``data_root`` replace the ones the model was trained on (its splits are then
    read from there), e.g. ``cifar10-jpeg2k``, the embedded test images of a
    ``cifar10-jpeg`` model, on a machine without the archive; the classes and input shape
    must be the model's."""
    p = Path(path)
    if p.is_dir() or p.name == MANIFEST_FILE:
        return _load_export(p if p.is_dir() else p.parent, device, dataset, data_root)
    if not p.exists():
        raise FileNotFoundError(f"no checkpoint or model folder at {p}")
    model, ckpt = load_model(p, device)
    cfg = ckpt["config"]
    dataset, data_root = _data_of(model, cfg["dataset"], cfg.get("data_root"), dataset, data_root)
    return Target(
        model=model, source="checkpoint", path=p, arch=ckpt["model_name"], method=method_label(cfg),
        dataset=dataset, data_root=data_root, eps=training_eps(cfg),
        awnet=is_awnet(model), training=dict(cfg),
        extra={"masking_alarm": ckpt.get("masking_alarm")},
    )  # fmt: skip


def _data_of(
    model: nn.Module, trained: str, trained_root: str | None, dataset: str | None, root: str | None
) -> tuple[str, str | None]:
    """The dataset and root to evaluate on: the training ones unless replaced by a dataset
    with the same classes and input shape (ValueError otherwise)."""
    if dataset is None:
        return trained, root if root is not None else trained_root
    from training.data import get_dataset_info

    ic, theirs = unwrap(model).input_config, get_dataset_info(dataset).input_config
    if (theirs.class_names, theirs.channels, theirs.size) != (ic.class_names, ic.channels, ic.size):
        raise ValueError(
            f"--dataset {dataset}: its classes or input shape ({theirs.channels}x{theirs.size}) are "
            f"not the model's (trained on {trained}, {ic.channels}x{ic.size})"
        )
    return dataset, root


class CleanBranch(nn.Module):
    """A static export of an AW-Net: its clean branch alone (what that graph computes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.input_config = model.input_config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mix="clean")


def _load_export(folder: Path, device: str, dataset: str | None, data_root: str | None) -> Target:
    import onnx

    _, manifest = read_manifest(folder)
    onnx_path = folder / manifest.get("onnx", {}).get("file", ONNX_FILE)
    cfg = TrainConfig.from_dict(manifest["training"])
    inp = manifest["input"]
    ic = InputConfig(
        channels=int(inp["shape"][0]), size=(int(inp["shape"][1]), int(inp["shape"][2])),
        class_names=tuple(manifest["class_names"]), mean=tuple(inp["mean"]), std=tuple(inp["std"]),
        pixel_range=tuple(inp["range"]),
    )  # fmt: skip
    cfg.model = manifest["arch"]
    model = build_model(manifest["arch"], ic, model_kwargs(cfg))
    weights = graph_state(onnx.load(str(onnx_path)), model)
    if manifest.get("torch_state"):  # a folded export: what the graph does not carry by name
        weights.update(read_sidecar(folder, manifest["torch_state"]))
    state = model.state_dict()
    static_view = manifest["kind"] == "static" and is_awnet(model)
    missing = missing_keys(model, weights, static_view)
    if missing:
        raise ValueError(f"{onnx_path}: the graph lacks weights of its manifest's {manifest['arch']}: {missing[:5]}")
    for k, v in weights.items():
        if k in state and state[k].shape != v.shape:
            raise ValueError(f"{onnx_path}: weight {k} has shape {tuple(v.shape)}, expected {tuple(state[k].shape)}")
    model.load_state_dict({k: v for k, v in weights.items() if k in state}, strict=False)
    model.to(device).eval()
    served: nn.Module = CleanBranch(model) if static_view else model
    awnet = manifest["kind"] == "awnet"
    dataset, data_root = _data_of(model, manifest.get("dataset", cfg.dataset), cfg.data_root, dataset, data_root)
    target = Target(
        model=served, source="onnx", path=folder, arch=manifest["arch"], method=manifest.get("method", cfg.method),
        dataset=dataset, data_root=data_root, eps=float(manifest["attack"]["eps"]),
        awnet=awnet, manifest=manifest, threshold=manifest_threshold(manifest), training=dict(manifest["training"]),
    )  # fmt: skip
    target.parity_max_abs = check_against_onnx(target, onnx_path)
    return target


def check_against_onnx(target: Target, onnx_path: Path, atol: float = 1e-3) -> float:
    """Max |logits| and |p_adv| difference between the rebuilt model and ONNX Runtime on
    test images and on noise; raise when it exceeds ``atol`` (then the graph and the
    manifest disagree and no figure of the rebuilt model describes the served one)."""
    from training.data import build_dataset
    from training.export.parity import ort_session

    x, _ = build_dataset(target.dataset, "test", root=target.data_root).tensors()
    x = torch.cat([x[:32], torch.rand(8, *x.shape[1:])])
    sess = ort_session(onnx_path)
    override = np.full((x.shape[0],), -1.0, dtype=np.float32)
    ort_logits, ort_p = sess.run([OUTPUT_LOGITS, OUTPUT_P_ADV], {INPUT_IMAGE: x.numpy(), INPUT_MIX: override})
    with torch.no_grad():
        if target.awnet:
            out = target.model.forward_all(x)
            logits, p_adv = out.logits.numpy(), out.p_adv.numpy()
        else:
            logits, p_adv = target.model(x).numpy(), np.zeros_like(ort_p)
    diff = float(max(np.abs(logits - ort_logits).max(), np.abs(p_adv - ort_p).max()))
    if diff > atol:
        raise ValueError(f"{onnx_path}: the model rebuilt from the graph differs from ONNX Runtime by {diff:.2e}")
    return diff
