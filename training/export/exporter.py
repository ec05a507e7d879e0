"""``python -m training export``: ONNX graph, parity check, router calibration, manifest."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from artifact_contract import (
    NAME_RE,
    ONNX_FILE,
    ROBUSTNESS_KEY,
    VERSION_RE,
    InputSpec,
    Manifest,
    OnnxSpec,
    Robustness,
)
from models import is_awnet
from training.attacks import PGD
from training.checkpoint import code_revision, load_model
from training.config import TrainConfig
from training.data import build_dataset
from training.evaluation.runner import router_scores
from training.export.calibrate import (
    DEFAULT_TARGET_FPR,
    DEFAULT_THRESHOLD_FLOOR,
    calibrated_threshold,
    rates,
)
from training.export.graph import (
    ExportWrapper,
    StaticExportWrapper,
    check_graph,
    export_onnx,
    graph_shapes,
)
from training.export.parity import ParityRow, format_table, parity_check
from training.export.probes import write_probe_set
from training.export.state import TORCH_STATE_FILE, graph_state, missing_keys, write_sidecar
from training.metrics import evaluate, roc_auc


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
    if not VERSION_RE.match(version):
        raise ValueError(f"model version {version!r} must be a positive integer (pass --version)")
    return name, version


def _pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, batch: int = 256,
         **kw: Any) -> torch.Tensor:  # fmt: skip
    attack = PGD(model, eps=eps, step_size=2.5 * eps / steps, steps=steps, **kw)
    return torch.cat([attack(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)])


def export_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    version: str | None = None,
    static: bool = False,
    target_fpr: float = DEFAULT_TARGET_FPR,
    opset: int = 18,
    eval_steps: int = 20,
    eval_max_samples: int = 1000,
    skip_eval: bool = False,
    parity_samples: int = 64,
    threshold_floor: float = DEFAULT_THRESHOLD_FLOOR,
    force: bool = False,
    fold: bool = True,
    evaluation_card: str | Path | None = None,
    probe_samples: int = 64,
    log=print,
) -> ExportResult:
    torch.manual_seed(0)
    out_dir = Path(out_dir)
    name, version = name_version_from_path(out_dir, name, version)
    model, ckpt = load_model(checkpoint, "cpu")
    alarm = ckpt.get("masking_alarm")
    if alarm and not force:
        raise ValueError(
            f"{checkpoint} carries a masking alarm from training ({'; '.join(alarm['reasons'])}): its robust "
            "figures come from masked gradients. Export best.pt instead, or pass --force (the manifest then "
            "records the alarm)"
        )
    card = load_card(evaluation_card, model) if evaluation_card else None
    cfg = TrainConfig.from_dict(ckpt["config"])
    awnet = is_awnet(model)
    kind = "static" if (static or not awnet) else "awnet"
    wrapper = StaticExportWrapper(model, fold=fold) if kind == "static" else ExportWrapper(model, fold=fold)
    # parity and probes hold the (folded: training.export.graph) graph to the layer-by-layer
    # eval forward, so a folding error cannot pass as agreement with itself
    reference = (StaticExportWrapper if kind == "static" else ExportWrapper)(model, fold=False)
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
        renamed = missing_keys(model, graph_state(proto, model), static_view=kind == "static" and awnet)
        torch_state = write_sidecar(Path(tmp), model, renamed) if renamed else None
        if torch_state is not None:
            log(f"{len(renamed)} weights the folded graph does not carry by name: {TORCH_STATE_FILE} (evaluate FOLDER)")

        # parity on clean and PGD validation inputs, in router and both forced modes
        xp, yp = xv[:parity_samples], yv[:parity_samples]
        batches = {"clean": xp, "pgd": _pgd(model, xp, yp, eps, 10)}
        rows = parity_check(reference, onnx_tmp, batches)
        log("parity (ONNX Runtime vs PyTorch):\n" + format_table(rows))

        router: dict[str, Any] | None = None
        evaluation: dict[str, Any] = {"train_val": ckpt.get("metrics", {}).get("val")}
        if kind == "awnet":
            log(f"calibrating the router threshold for FPR {target_fpr:.2%} on {len(xv)} validation images ...")
            clean_scores = router_scores(model, xv)
            adv_scores = router_scores(model, _pgd(model, xv, yv, eps, eval_steps))
            thr, fpr_thr = calibrated_threshold(clean_scores, target_fpr, threshold_floor)
            fpr, tpr = rates(clean_scores, adv_scores, thr)
            evade_scores = router_scores(model, _pgd(model, xv, yv, eps, eval_steps, loss="ce-evade-router",
                                                     loss_kwargs={"weight": 1.0}))  # fmt: skip
            _, tpr_adaptive = rates(clean_scores, evade_scores, thr)
            margin_scores = router_scores(model, _pgd(model, xv, yv, eps, eval_steps, loss="ce-evade-router-margin",
                                                      loss_kwargs={"weight": 0.3}))  # fmt: skip
            _, tpr_margin = rates(clean_scores, margin_scores, thr)
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
                "adaptive_attack": f"router-evasion PGD-{eval_steps} (CE + 1.0 log p_clean) Linf eps={eps:g}",
                "val_tpr_adaptive": tpr_adaptive,
                "val_auc_adaptive": roc_auc(torch.from_numpy(clean_scores), torch.from_numpy(evade_scores)),
                "adaptive_attack_margin": f"router-evasion PGD-{eval_steps} (CE + 0.3 router logit margin) Linf eps={eps:g}",
                "val_tpr_adaptive_margin": tpr_margin,
            }
            log(f"router threshold {thr:.6f}: val FPR {fpr:.4f}, TPR {tpr:.4f} (PGD), {tpr_adaptive:.4f} (router evasion), "
                f"{tpr_margin:.4f} (margin evasion), "
                f"AUC {router['val_auc']:.4f}")
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

        probes = None
        if probe_samples > 0:
            probes = _probes(model, reference, onnx_tmp, Path(tmp), cfg, kind, router, eps, eval_steps,
                             probe_samples, parity={"logits": 1e-3, "p_adv": 1e-4})  # fmt: skip
            log(f"probe set: {probes['clean']['count']} clean + {probes['adversarial']['count']} adversarial "
                f"({probes['adversarial']['attack']}); clean accuracy {probes['clean']['accuracy']:.3f}"
                + (f", adversarial flagged {probes['adversarial']['flagged']:.3f}"
                   if probes["adversarial"].get("flagged") is not None else ""))  # fmt: skip
        if card is not None:
            evaluation[ROBUSTNESS_KEY] = card_summary(card)
            log(f"evaluation card: worst case {card['worst_case']['acc']:.4f} over {len(card['attacks'])} attacks")
        manifest = Manifest(
            name=name,
            version=version,
            created_at=dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            arch=ckpt["model_name"],
            kind=kind,
            method=cfg.method + ("+rat" if cfg.rat else ""),
            dataset=cfg.dataset,
            class_names=list(ic.class_names),
            input=InputSpec(shape=list(ic.shape), range=list(ic.pixel_range), mean=list(ic.mean), std=list(ic.std),
                            normalization="inside the model; send raw [0, 1] pixels"),  # fmt: skip
            attack={"norm": "Linf", "eps": eps},
            router=router,
            evaluation=evaluation,
            masking_alarm={**alarm, "forced": True} if alarm else None,
            selection=ckpt.get("selection") or None,
            parity={"atol_logits": 1e-3, "atol_p_adv": 1e-4, "rows": [asdict(r) for r in rows]},
            training=ckpt["config"],
            training_code_revision=ckpt.get("code_revision", "unknown"),
            onnx=OnnxSpec.of_file(onnx_tmp, file=ONNX_FILE, shapes=graph_shapes(proto), opset=opset,
                                  exporter=f"torch {torch.__version__} (torch.onnx dynamo)"),  # fmt: skip
            probes=probes,
            torch_state=torch_state,
            code_revision=code_revision(),
        ).validate()
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_tmp, out_dir / manifest.onnx.file)
        for block in (probes, torch_state):
            if block is not None:
                shutil.copyfile(Path(tmp) / block["file"], out_dir / block["file"])
        manifest.write(out_dir)
        # read back as the service reads it: the file parses and validates, the graph's hash matches
        Manifest.load(out_dir).verify_folder(out_dir, check_names=False)
    log(f"wrote {out_dir / manifest.onnx.file} ({manifest.onnx.size_bytes} bytes) and manifest.json in {time.time() - t0:.1f} s")
    return ExportResult(out_dir, manifest.to_dict(), rows)


def _probes(model: torch.nn.Module, wrapper: torch.nn.Module, onnx_path: Path, folder: Path, cfg: TrainConfig,
            kind: str, router: dict[str, Any] | None, eps: float, steps: int, n: int,
            parity: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    """``n`` clean test images and ``n`` attacked ones (router-evasion PGD for AW-Nets, the
    adaptive attack; PGD for static models), with the exporter's own outputs on them."""
    test = build_dataset(cfg.dataset, "test", root=cfg.data_root)
    xt, yt = test.tensors()
    xc, yc = xt[:n], yt[:n]
    xa_src, ya = xt[n:2 * n], yt[n:2 * n]
    if len(xa_src) < len(ya) or len(xa_src) == 0:
        xa_src, ya = xc, yc
    if kind == "awnet":
        xa = _pgd(model, xa_src, ya, eps, steps, loss="ce-evade-router", loss_kwargs={"weight": 1.0})
        attack = f"router-evasion PGD-{steps} (CE + 1.0 log p_clean) Linf eps={eps:g}"
    else:
        xa = _pgd(_StaticView(model), xa_src, ya, eps, steps)
        attack = f"PGD-{steps} Linf eps={eps:g}"
    threshold = router["threshold"] if router is not None else None
    return write_probe_set(folder, wrapper, onnx_path, (xc, yc), (xa, ya), threshold=threshold,
                           attack=attack, source=f"{cfg.dataset} test split, first {len(xc)}",
                           tol={**parity, "accuracy": 0.05, "flagged": 0.05})  # fmt: skip


class _StaticView(torch.nn.Module):
    """The exported static graph's view of a model (AW-Net: clean branch only)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.awnet = is_awnet(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, mix="clean") if self.awnet else self.model(x)


def load_card(path: str | Path, model: torch.nn.Module, whose: str = "the checkpoint being exported") -> dict[str, Any]:
    """An evaluation card (``python -m training evaluate``) of exactly these weights."""
    from training.evaluation.target import weights_fingerprint

    card = json.loads(Path(path).read_text())
    if card.get("model", {}).get("weights_sha256") != weights_fingerprint(model):
        raise ValueError(f"{path} evaluates other weights than {whose}")
    return card


def card_summary(card: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of an evaluation card (``artifact_contract.Robustness``): the
    worst case, the router's missed share, and each attack's accuracy, so ``/v1/models`` says
    what the model withstands and the service can export it as gauges."""
    w = card["worst_case"]
    router = {}
    if "missed" in w:
        router = dict(missed=w["missed"], detected_share=w["detected_share"], clean_fpr=card["clean"].get("router_fpr"))
    adaptive = card.get("worst_case_adaptive")
    return Robustness(
        card_format=card["format"],
        split=card["settings"]["split"],
        samples=card["settings"]["n"],
        eps=card["settings"]["eps"],
        budget=card["settings"]["budget"],
        clean_acc=card["clean"]["acc"],
        worst_case_acc=w["acc"],
        worst_case_wra=w["wra"],
        attacks={a["name"]: round(a["acc"], 4) for a in card["attacks"]},
        sanity_passed=all(c["passed"] for c in card.get("sanity", [])),
        worst_case_adaptive_acc=adaptive["acc"] if adaptive else None,
        **router,
    ).validate().to_dict()
