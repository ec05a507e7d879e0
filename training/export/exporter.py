"""``python -m training export``: ONNX graph, parity check, router calibration, manifest."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.attacks import PGD
from training.checkpoint import code_revision, load_model
from training.config import TrainConfig
from training.data import build_dataset
from training.export.calibrate import rates, threshold_for_fpr
from training.export.graph import (
    ExportWrapper,
    StaticExportWrapper,
    check_graph,
    export_onnx,
    graph_shapes,
    sha256_file,
)
from training.export.parity import ParityRow, format_table, parity_check
from training.metrics import evaluate, roc_auc

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
SCHEMA_VERSION = 1


@dataclass
class ExportResult:
    out_dir: Path
    manifest: dict[str, Any]
    parity: list[ParityRow]


def name_version_from_path(out_dir: Path, name: str | None, version: str | None) -> tuple[str, str]:
    """Default NAME and VERSION from an ``.../NAME/VERSION/`` output folder."""
    name = name or out_dir.parent.name
    version = version or out_dir.name
    if not NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must match {NAME_RE.pattern} (pass --name)")
    if not version.isdigit() or int(version) < 1:
        raise ValueError(f"model version {version!r} must be a positive integer (pass --version)")
    return name, version


def _p_adv(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model.forward_all(x[i:i + batch]).p_adv for i in range(0, len(x), batch)]).numpy()


def _pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, batch: int = 256) -> torch.Tensor:
    attack = PGD(model, eps=eps, step_size=2.5 * eps / steps, steps=steps)
    return torch.cat([attack(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    version: str | None = None,
    static: bool = False,
    target_fpr: float = 0.01,
    opset: int = 18,
    eval_steps: int = 20,
    eval_max_samples: int = 1000,
    skip_eval: bool = False,
    parity_samples: int = 64,
    threshold_floor: float = 0.5,
    log=print,
) -> ExportResult:
    torch.manual_seed(0)
    out_dir = Path(out_dir)
    name, version = name_version_from_path(out_dir, name, version)
    model, ckpt = load_model(checkpoint, "cpu")
    cfg = TrainConfig.from_dict(ckpt["config"])
    awnet = bool(getattr(model, "is_awnet", False))
    kind = "static" if (static or not awnet) else "awnet"
    wrapper = StaticExportWrapper(model) if kind == "static" else ExportWrapper(model)
    ic = model.input_config
    eps = float(cfg.eps)
    t0 = time.time()

    val = build_dataset(cfg.dataset, "val", root=cfg.data_root)
    xv, yv = val.tensors()
    xv, yv = xv[:eval_max_samples], yv[:eval_max_samples]

    with tempfile.TemporaryDirectory() as tmp:
        onnx_tmp = Path(tmp) / "model.onnx"
        log(f"exporting {ckpt['model_name']} ({kind}) to ONNX opset {opset} ...")
        export_onnx(wrapper, xv[:2], onnx_tmp, opset=opset)
        proto = check_graph(onnx_tmp)
        log("onnx.checker: ok; no training-only nodes")

        # parity on clean and PGD validation inputs, in router and both forced modes
        xp, yp = xv[:parity_samples], yv[:parity_samples]
        batches = {"clean": xp, "pgd": _pgd(model, xp, yp, eps, 10)}
        rows = parity_check(wrapper, onnx_tmp, batches)
        log("parity (ONNX Runtime vs PyTorch):\n" + format_table(rows))

        router: dict[str, Any] | None = None
        evaluation: dict[str, Any] = {"train_val": ckpt.get("metrics", {}).get("val")}
        if kind == "awnet":
            log(f"calibrating the router threshold for FPR {target_fpr:.2%} on {len(xv)} validation images ...")
            clean_scores = _p_adv(model, xv)
            adv_scores = _p_adv(model, _pgd(model, xv, yv, eps, eval_steps))
            fpr_thr = threshold_for_fpr(clean_scores, target_fpr)
            thr = max(fpr_thr, threshold_floor)
            fpr, tpr = rates(clean_scores, adv_scores, thr)
            router = {
                "threshold": thr,
                "fpr_threshold": fpr_thr,
                "threshold_floor": threshold_floor,
                "threshold_rule": "max(smallest threshold with clean val FPR <= target_fpr, threshold_floor)",
                "target_fpr": target_fpr,
                "calibration_split": "val",
                "calibration_samples": int(len(xv)),
                "calibration_attack": f"PGD-{eval_steps} Linf eps={eps:g}",
                "val_fpr": fpr,
                "val_tpr": tpr,
                "val_auc": roc_auc(torch.from_numpy(clean_scores), torch.from_numpy(adv_scores)),
            }
            log(f"router threshold {thr:.6f}: val FPR {fpr:.4f}, TPR {tpr:.4f}, AUC {router['val_auc']:.4f}")
            from training.plots import plot_router_scores

            plot = plot_router_scores(clean_scores, adv_scores, thr, Path(checkpoint).with_name("router_scores.png"),
                                      title=f"{name}/{version}: router scores on the validation split")  # fmt: skip
            log(f"router-score histogram: {plot}")
        if not skip_eval:
            test = build_dataset(cfg.dataset, "test", root=cfg.data_root)
            factory = lambda m: PGD(m, eps=eps, step_size=2.5 * eps / eval_steps, steps=eval_steps)  # noqa: E731
            eval_model = model if kind == "awnet" else _StaticView(model)
            res = evaluate(eval_model, test, factory, torch.device("cpu"), max_samples=eval_max_samples, progress=True, desc="test")
            evaluation["test"] = {
                "samples": int(res["n"]),
                "clean_acc": res["clean_acc"],
                f"pgd{eval_steps}_acc": res["adv_acc"],
                "attack": f"PGD-{eval_steps} Linf eps={eps:g}, step {2.5 * eps / eval_steps:g}, random start",
                **({"router_auc": res["router_auc"]} if "router_auc" in res else {}),
            }
            log(f"test: clean {res['clean_acc']:.4f}, PGD-{eval_steps} {res['adv_acc']:.4f}")

        shapes = graph_shapes(proto)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "version": version,
            "created_at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            "arch": ckpt["model_name"],
            "kind": kind,
            "method": cfg.method + ("+rat" if cfg.rat else ""),
            "dataset": cfg.dataset,
            "class_names": list(ic.class_names),
            "input": {
                "shape": list(ic.shape),
                "layout": "NCHW",
                "dtype": "float32",
                "range": list(ic.pixel_range),
                "mean": list(ic.mean),
                "std": list(ic.std),
                "normalization": "inside the model; send raw [0, 1] pixels",
            },
            "attack": {"norm": "Linf", "eps": eps},
            "router": router,
            "evaluation": evaluation,
            "parity": {"atol_logits": 1e-3, "atol_p_adv": 1e-4, "rows": [asdict(r) for r in rows]},
            "training": ckpt["config"],
            "training_code_revision": ckpt.get("code_revision", "unknown"),
            "onnx": {
                "file": "model.onnx",
                "sha256": sha256_file(onnx_tmp),
                "size_bytes": onnx_tmp.stat().st_size,
                "opset": opset,
                "inputs": shapes["inputs"],
                "outputs": shapes["outputs"],
                "exporter": f"torch {torch.__version__} (torch.onnx dynamo)",
            },
            "code_revision": code_revision(),
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_tmp, out_dir / "model.onnx")
        (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"wrote {out_dir / 'model.onnx'} ({manifest['onnx']['size_bytes']} bytes) and manifest.json in {time.time() - t0:.1f} s")
    return ExportResult(out_dir, manifest, rows)


class _StaticView(torch.nn.Module):
    """The exported static graph's view of a model (AW-Net: clean branch only)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.awnet = bool(getattr(model, "is_awnet", False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mix="clean") if self.awnet else self.model(x)
