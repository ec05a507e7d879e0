"""``analyze weights``: filter-weight distributions per conv layer (the paper's section 1).

The paper's observation: standard-trained and robust-trained networks of one architecture
have different filter-weight distributions (robust ones narrower, more concentrated near
zero), which is why AW-Net gives clean and adversarial inputs different effective
weights. This module measures that on our checkpoints.

Like-for-like comparison. A conv followed by BN is scale-invariant: W and c * W give the
same network, so raw W of two models cannot be compared. In eval mode BN is the affine
map h -> s * h + t with s = gamma / sqrt(running_var + eps), so we compare the *effective*
filters with the BN scale folded in, W'[k] = s[k] * W[k] (static models), and for AW-Net
W'_b[k] = mean_x(omega(x)[k]) * s_b[k] * W[k] per branch b:

- clean branch: omega from the router on clean test images, the clean BN;
- adversarial branch: omega on PGD examples of those images, the adversarial BN.

(The mean over inputs of the per-sample filter omega(x)[k] * s_b[k] * W[k] is
mean(omega)[k] * s_b[k] * W[k], since W and s_b do not depend on x.) ``fold=False`` gives
the raw W instead (omega-scaled for the AW-Net branches). Convs with no BN directly on
their output (e.g. the second conv of a pre-activation WRN block) cannot be folded and are
reported raw, marked ``folded: false``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models import is_awnet
from models.folding import bn_affine, conv_bn_pairs
from models.layers import MixBatchNorm2d
from training.analysis.common import load, markdown_table, write_report
from training.plots import pyplot, save_figure

FOLD_NOTE = "BN-folded: W * gamma / sqrt(running_var + eps); AW-Net: mean omega * W * gamma_b / sqrt(var_b + eps)"
RAW_NOTE = "raw conv weights W (AW-Net: mean omega * W), BN scale not folded"
BRANCH_LABELS = {"clean": "clean branch", "adv": "adversarial branch"}


def excess_kurtosis(x: np.ndarray | torch.Tensor) -> float:
    """Fisher (excess) kurtosis m4 / m2^2 - 3, the biased estimator (scipy's default):
    0 for a Gaussian, > 0 for heavier tails / a sharper peak at the mean."""
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64).ravel()
    if a.size < 2:
        return float("nan")
    d = a - a.mean()
    m2 = float(np.mean(d**2))
    if m2 == 0.0:
        return float("nan")
    return float(np.mean(d**4) / m2**2 - 3.0)


def layer_stats(x: np.ndarray) -> dict[str, float]:
    """The figures the table reports for one layer's weights."""
    a = np.asarray(x, dtype=np.float64).ravel()
    return {
        "n": int(a.size),
        "mean": float(a.mean()),
        "std": float(a.std()),
        "kurtosis": excess_kurtosis(a),
        "abs_mean": float(np.abs(a).mean()),
    }


@dataclass
class WeightSet:
    """One model's (or one AW-Net branch's) effective conv weights, layer by layer."""

    label: str
    checkpoint: str
    method: str
    branch: str | None  # None for static models, "clean" / "adv" for AW-Net branches
    layers: dict[str, np.ndarray] = field(default_factory=dict)
    folded: dict[str, bool] = field(default_factory=dict)
    omega_mean: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)


def _backbone(model: nn.Module) -> nn.Module:
    return model.backbone if is_awnet(model) else model


def conv_bns_by_name(model: nn.Module) -> dict[str, tuple[nn.Conv2d, nn.Module | None]]:
    """Backbone convs (router convs excluded) by name, each with the BN (or MixBN) that reads
    its output directly, None without one: the fold's reading of the backbone's code
    (``models.folding.conv_bn_pairs``), here not exclusive, since an effective filter needs
    only that BN. Works for any traceable backbone (post-activation ResNet, pre-activation
    WRN) without knowing its layout; an untraceable one reports every conv raw."""
    backbone = _backbone(model)
    convs = {name: m for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d)}
    bns = [m for m in backbone.modules() if isinstance(m, (nn.BatchNorm2d, MixBatchNorm2d))]
    bn_of = dict(conv_bn_pairs(backbone, list(convs.values()), bns, exclusive=False))
    return {name: (conv, bns[bn_of[i]] if i in bn_of else None) for i, (name, conv) in enumerate(convs.items())}


def bn_scale(bn: nn.Module, branch: str | None = None) -> torch.Tensor:
    """Per-channel eval-mode scale gamma / sqrt(running_var + eps) of a BN (of the given
    branch's BN for a MixBN): the scale of ``models.folding.bn_affine``."""
    if isinstance(bn, MixBatchNorm2d):
        bn = bn.bn_adv if branch == "adv" else bn.bn_clean
    assert isinstance(bn, nn.BatchNorm2d)
    try:
        scale, _ = bn_affine(bn)
    except ValueError as exc:
        raise ValueError("BN without running statistics cannot be folded: use --raw") from exc
    return scale.detach()


def _effective(conv: nn.Conv2d, channel_scale: torch.Tensor | None) -> np.ndarray:
    w = conv.weight.detach().double()
    if channel_scale is not None:
        w = w * channel_scale.double().view(-1, *([1] * (w.dim() - 1)))
    return w.cpu().numpy().ravel()


def static_weight_set(model: nn.Module, label: str, checkpoint: str, method: str, fold: bool) -> WeightSet:
    """Effective conv filters of a static model (BN scale folded unless ``fold=False``)."""
    ws = WeightSet(label, checkpoint, method, None)
    for name, (conv, bn) in conv_bns_by_name(model).items():
        can_fold = fold and bn is not None
        ws.layers[name] = _effective(conv, bn_scale(bn) if can_fold else None)
        ws.folded[name] = can_fold
    return ws


@torch.no_grad()
def mean_signals(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> list[torch.Tensor]:
    """Router signals omega per weight-varied conv, averaged over the inputs ``x``."""
    sums: list[torch.Tensor] | None = None
    for i in range(0, x.shape[0], batch_size):
        sig = model.signals(x[i : i + batch_size])
        part = [s.double().sum(0) for s in sig]
        sums = part if sums is None else [a + b for a, b in zip(sums, part, strict=True)]
    assert sums is not None
    return [s / x.shape[0] for s in sums]


def adversarial_inputs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    steps: int,
    mix: str = "router",
    batch_size: int = 256,
) -> torch.Tensor:
    """PGD-CE examples (step 2.5 eps / steps, random start) on the AW-Net, through the
    router (as in training) or a forced branch, for the adversarial branch's omega."""
    from training.attacks import PGD

    attack = PGD(model, eps, steps=steps, mix=mix)
    return torch.cat([attack(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])


def awnet_weight_sets(
    model: nn.Module,
    label: str,
    checkpoint: str,
    method: str,
    x_clean: torch.Tensor,
    x_adv: torch.Tensor,
    fold: bool,
    inputs: dict[str, Any] | None = None,
) -> list[WeightSet]:
    """The AW-Net's clean branch (omega on clean inputs, clean BN) and adversarial branch
    (omega on adversarial inputs, adversarial BN) as effective conv filters."""
    pairs = conv_bns_by_name(model)
    conv_index = {id(c): i for i, c in enumerate(model.convs)}
    sets = []
    for branch, xs in (("clean", x_clean), ("adv", x_adv)):
        omegas = mean_signals(model, xs)
        ws = WeightSet(f"{label} {BRANCH_LABELS[branch]}", checkpoint, method, branch, inputs=dict(inputs or {}))
        ws.inputs["omega_from"] = "clean test images" if branch == "clean" else "PGD examples of them"
        if branch == "clean":
            ws.inputs.pop("attack", None)
        for name, (conv, bn) in pairs.items():
            scale = None
            idx = conv_index.get(id(conv))
            if idx is not None:
                scale = omegas[idx].float()
                ws.omega_mean[name] = float(omegas[idx].mean())
            can_fold = fold and bn is not None
            if can_fold:
                s = bn_scale(bn, branch)
                scale = s if scale is None else scale * s
            ws.layers[name] = _effective(conv, scale)
            ws.folded[name] = can_fold
        sets.append(ws)
    return sets


def _unique_labels(labels: list[str], sources: list[str]) -> list[str]:
    out = []
    for lab, src in zip(labels, sources, strict=True):
        dup = labels.count(lab) > 1
        out.append(f"{lab} ({Path(src).parent.name or Path(src).stem})" if dup else lab)
    if len(set(out)) < len(out):  # same folder name too: number them
        out = [f"{lab} #{i + 1}" for i, lab in enumerate(out)]
    return out


def load_weight_sets(
    checkpoints: Sequence[str | os.PathLike[str]],
    labels: Sequence[str] | None = None,
    fold: bool = True,
    n: int = 500,
    eps: float | None = None,
    steps: int = 20,
    adv_mix: str = "router",
    seed: int = 0,
    device: str = "cpu",
    data_root: str | None = None,
) -> list[WeightSet]:
    """Every model's weight sets (checkpoints or exported folders, as ``evaluate`` loads
    them): one per static model, two per AW-Net."""
    if labels is not None and len(labels) != len(checkpoints):
        raise ValueError(f"--labels needs one label per checkpoint ({len(checkpoints)}), got {len(labels)}")
    targets = [load(p, device, data_root) for p in checkpoints]
    paths = [str(p) for p in checkpoints]
    base = list(labels) if labels is not None else _unique_labels([t.method for t in targets], paths)
    sets: list[WeightSet] = []
    for t, path, label in zip(targets, paths, base, strict=True):
        if t.awnet:
            x, y = t.test_split(n)
            x, y = x.to(device), y.to(device)
            e = t.eps if eps is None else float(eps)
            torch.manual_seed(seed)
            x_adv = adversarial_inputs(t.model, x, y, e, steps, mix=adv_mix)
            inputs = {"n": int(x.shape[0]), "attack": f"PGD-{steps} CE Linf eps={e:g}, step {2.5 * e / steps:g}, "
                      f"random start, mix={adv_mix}", "seed": seed}  # fmt: skip
            sets += awnet_weight_sets(t.model, label, path, t.method, x, x_adv, fold, inputs)
        else:
            sets.append(static_weight_set(t.model, label, path, t.method, fold))
    return sets


def layer_order(sets: Sequence[WeightSet]) -> list[str]:
    names: list[str] = []
    for ws in sets:
        names += [n for n in ws.layers if n not in names]
    return names


def weights_report(sets: Sequence[WeightSet], fold: bool) -> dict[str, Any]:
    """The JSON card: per layer, per model, n / mean / std / excess kurtosis / mean |w|."""
    layers: dict[str, dict[str, Any]] = {}
    for name in layer_order(sets):
        layers[name] = {}
        for ws in sets:
            if name in ws.layers:
                st = layer_stats(ws.layers[name])
                st["folded"] = ws.folded[name]
                if name in ws.omega_mean:
                    st["omega_mean"] = ws.omega_mean[name]
                layers[name][ws.label] = st
    return {
        "kind": "weights",
        "weights": FOLD_NOTE if fold else RAW_NOTE,
        "bn_folded": fold,
        "kurtosis": "excess (Fisher): 0 for a Gaussian",
        "models": [
            {"label": ws.label, "checkpoint": ws.checkpoint, "method": ws.method, "branch": ws.branch, **ws.inputs}
            for ws in sets
        ],
        "layers": layers,
    }


def weights_markdown(report: dict[str, Any]) -> str:
    """Markdown table: one row per (layer, model), std relative to the first model."""
    labels = [m["label"] for m in report["models"]]
    rows = []
    for name, per in report["layers"].items():
        ref = per.get(labels[0], {}).get("std")
        for lab in labels:
            if lab not in per:
                continue
            st = per[lab]
            ratio = st["std"] / ref if ref else float("nan")
            rows.append([name, lab, st["n"], st["std"], ratio, st["kurtosis"], st["abs_mean"],
                         "yes" if st["folded"] else "no", st.get("omega_mean")])  # fmt: skip
    head = f"Filter weights per conv layer, {report['weights']}. Kurtosis: {report['kurtosis']}."
    table = markdown_table(
        ["layer", "model", "n", "std", f"std / {labels[0]}", "excess kurtosis", "mean abs", "BN folded", "mean omega"],
        rows,
    )
    return f"{head}\n\n{table}\n"


def _grid(n: int, ncols: int = 4) -> tuple[int, int]:
    ncols = min(ncols, n)
    return (n + ncols - 1) // ncols, ncols


def plot_weight_histograms(sets: Sequence[WeightSet], out: Path, fold: bool, logy: bool = False) -> Path:
    """One panel per conv layer, every model's weight density overlaid (shared bins over
    +-the largest 99.5th percentile of |w|, so a few outliers do not squash the bulk)."""
    plt = pyplot()
    names = layer_order(sets)
    rows, cols = _grid(len(names))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(axes.flat, names, strict=False):
        vals = [ws.layers[name] for ws in sets if name in ws.layers]
        lim = max(float(np.percentile(np.abs(v), 99.5)) for v in vals) or 1.0
        bins = np.linspace(-lim, lim, 61)
        for i, ws in enumerate(sets):
            if name in ws.layers:
                ax.hist(ws.layers[name], bins=bins, density=True, histtype="step",
                        lw=1.6, color=colors[i % len(colors)], label=ws.label)  # fmt: skip
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("effective weight" if fold else "weight", fontsize=8)
        ax.tick_params(labelsize=7)
        if logy:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    handles, labs = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labs, loc="lower center", ncol=min(len(labs), 4), fontsize=9, frameon=False)
    what = "BN-folded effective filters (W * gamma/sqrt(var+eps); AW-Net: mean omega * W * BN_b scale)" if fold \
        else "raw conv weights W (AW-Net: mean omega * W), BN scale not folded"  # fmt: skip
    fig.suptitle(f"Filter-weight distributions per conv layer: {what}", fontsize=11)
    return save_figure(fig, out, rect=(0, 0.07, 1, 0.95))


def plot_weight_stats(report: dict[str, Any], out: Path) -> Path:
    """Std (relative to the first model) and excess kurtosis per layer, one line per model."""
    names = list(report["layers"])
    labels = [m["label"] for m in report["models"]]
    fig, (a1, a2) = pyplot().subplots(1, 2, figsize=(max(10, 1.1 * len(names) + 6), 4.2))
    xs = np.arange(len(names))
    # std relative to the first model: layers differ in scale by 10x, the models by far less
    ref = [report["layers"][n].get(labels[0], {}).get("std", np.nan) for n in names]
    for lab in labels:
        std = [report["layers"][n].get(lab, {}).get("std", np.nan) for n in names]
        kur = [report["layers"][n].get(lab, {}).get("kurtosis", np.nan) for n in names]
        a1.plot(xs, np.divide(std, ref), marker="o", label=lab)
        a2.plot(xs, kur, marker="o", label=lab)
    a1.axhline(1, color="k", lw=0.8, ls=":")
    for ax, t in ((a1, f"std / std of {labels[0]}"), (a2, "excess kurtosis")):
        ax.set_xticks(xs, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center", fontsize=8)
        ax.set_title(t)
        ax.grid(alpha=0.3)
    a2.axhline(0, color="k", lw=0.8, ls=":")
    a1.legend(fontsize=8)
    tag = "BN-folded" if report["bn_folded"] else "raw W"
    fig.suptitle(f"Filter weights per conv layer ({tag})", fontsize=11)
    return save_figure(fig, out)


def analyze_weights(
    checkpoints: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    fold: bool = True,
    logy: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Run the whole analysis; writes weights_hist.png, weights_stats.png, weights.json and
    weights.md into ``out`` and returns the report (with ``markdown`` and ``files``). ``options`` go to
    :func:`load_weight_sets` (labels, n, eps, steps, adv_mix, seed, device, data_root)."""
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = load_weight_sets(checkpoints, fold=fold, **options)
    report = weights_report(sets, fold)
    report["figures"] = [
        plot_weight_histograms(sets, out_dir / "weights_hist.png", fold, logy).name,
        plot_weight_stats(report, out_dir / "weights_stats.png").name,
    ]
    return write_report(out_dir, report, weights_markdown(report))
