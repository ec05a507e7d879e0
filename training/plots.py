"""Pictures written by the commands that make the figures (matplotlib, Agg backend)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """pyplot on the Agg backend: the commands run headless (servers, CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, dpi: int = 110, **layout: Any) -> Path:
    """Lay ``fig`` out tight (``layout``: ``tight_layout``'s keywords), write it to ``path``
    (its folder made), close it; returns ``path``."""
    fig.tight_layout(**layout)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


P_ADV_FLOOR = 1e-8  # the histogram's left edge: smaller scores are drawn in its first bin


def router_score_hist(ax: Any, clean: np.ndarray, adv: np.ndarray, threshold: float, adv_label: str = "PGD") -> None:
    """p_adv on clean and on attacked inputs over shared log-spaced bins in [1e-8, 1] (log
    counts), the threshold drawn: one panel of the export's histogram and of ``analyze
    router``'s. Log p_adv because the 1 %-FPR threshold sits near 1e-4: on a linear axis
    every score below 0.02 shares one bin with it."""
    lo = P_ADV_FLOOR
    bins = np.logspace(np.log10(lo), 0, 57)
    ax.hist(np.clip(clean, lo, 1), bins=bins, alpha=0.6, label=f"clean (n={len(clean)})", color="tab:green")
    ax.hist(np.clip(adv, lo, 1), bins=bins, alpha=0.6, label=f"{adv_label} (n={len(adv)})", color="tab:red")
    ax.axvline(max(threshold, lo), color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set(xlabel=f"router score p_adv (log; below {lo:g} drawn at {lo:g})", ylabel="images", xscale="log", yscale="log")


def plot_training_curves(run_dir: Path) -> Path | None:
    """``training_curves.png``: per-epoch train losses and validation accuracies."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    epochs = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("event") == "epoch"]
    if not epochs:
        return None
    fig, (ax1, ax2) = pyplot().subplots(1, 2, figsize=(11, 4))
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
    return save_figure(fig, run_dir / "training_curves.png")


def plot_router_scores(clean: np.ndarray, adv: np.ndarray, threshold: float, out: Path, title: str = "") -> Path:
    """Histogram of p_adv on clean and on PGD inputs, with the calibrated threshold."""
    fig, ax = pyplot().subplots(figsize=(7, 4))
    router_score_hist(ax, clean, adv, threshold)
    ax.set_title(title or "router scores")
    ax.legend()
    return save_figure(fig, out)
