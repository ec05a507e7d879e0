"""Pictures written by the commands that make the figures (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_training_curves(run_dir: Path) -> Path | None:
    """``training_curves.png``: per-epoch train losses and validation accuracies."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    epochs = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("event") == "epoch"]
    if not epochs:
        return None
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    xs = [r["epoch"] for r in epochs]
    for key in ("loss", "ce", "ce_adv", "kl", "l_nat", "l_adv", "l_type", "rat_f1", "rat_f2"):
        ys = [r["train"].get(key) for r in epochs]
        if all(y is not None for y in ys):
            ax1.plot(xs, ys, marker="o", label=key)
    ax1.set(xlabel="epoch", ylabel="train loss (epoch mean)", title="losses")
    ax1.legend()
    val = [(r["epoch"], r["val"]) for r in epochs if "val" in r]
    if val:
        ve = [e for e, _ in val]
        ax2.plot(ve, [v["clean_acc"] for _, v in val], marker="o", label="clean acc")
        if "adv_acc" in val[0][1]:
            ax2.plot(ve, [v["adv_acc"] for _, v in val], marker="o", label="PGD acc")
        if "router_auc" in val[0][1]:
            ax2.plot(ve, [v["router_auc"] for _, v in val], marker="s", ls="--", label="router AUC")
        ax2.set(xlabel="epoch", ylim=(0, 1.02), title="validation")
        ax2.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = run_dir / "training_curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_router_scores(clean: np.ndarray, adv: np.ndarray, threshold: float, out: Path, title: str = "") -> Path:
    """Histogram of p_adv on clean and on PGD inputs, with the calibrated threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, 1, 51)
    ax.hist(clean, bins=bins, alpha=0.6, label=f"clean (n={len(clean)})", color="tab:green")
    ax.hist(adv, bins=bins, alpha=0.6, label=f"PGD (n={len(adv)})", color="tab:red")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    ax.set(xlabel="router score p_adv", ylabel="images", yscale="log", title=title or "router scores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
