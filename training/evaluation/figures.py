"""Figures from per-sample outcomes: accuracy, WRA, the router's flagged and missed shares,
and the worst case per sample over a set of attacks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from training.evaluation.runner import Outcome
from training.metrics import roc_auc


def wra(clean_acc: float, robust_acc: float) -> float:
    """Weighted robust accuracy (AW-Net's figure of merit): the mean of clean and robust."""
    return 0.5 * (clean_acc + robust_acc)


def attack_figures(out: Outcome, clean: Outcome, threshold: float | None) -> dict[str, Any]:
    acc = float(out.correct.mean())
    fig: dict[str, Any] = {"acc": acc, "wra": wra(float(clean.correct.mean()), acc), "seconds": round(out.seconds, 2),
                           "linf_max": out.linf_max}  # fmt: skip
    if out.p_adv is not None and clean.p_adv is not None and threshold is not None:
        flagged = out.p_adv >= threshold
        missed = ~out.correct & ~flagged
        fooled = ~out.correct
        fig["router"] = {
            "auc": roc_auc(torch.from_numpy(clean.p_adv), torch.from_numpy(out.p_adv)),
            "flagged": float(flagged.mean()),
            "flagged_when_misclassified": float(flagged[fooled].mean()) if fooled.any() else None,
            "missed": float(missed.mean()),
            "p_adv_mean": float(out.p_adv.mean()),
        }
    if out.stages:
        n = len(out.correct)
        fig["stages"] = {name: count / n for name, count in out.stages}
    return fig


def worst_case(outs: Sequence[Outcome], clean: Outcome, threshold: float | None) -> dict[str, Any]:
    """Per sample: robust only if every attack leaves it correct; missed if some attack
    misclassifies it without being flagged."""
    correct = np.logical_and.reduce([o.correct for o in outs]) & clean.correct
    res: dict[str, Any] = {"attacks": [o.name for o in outs], "acc": float(correct.mean()),
                           "wra": wra(float(clean.correct.mean()), float(correct.mean()))}  # fmt: skip
    if threshold is not None and all(o.p_adv is not None for o in outs):
        fooled_any = np.logical_or.reduce([~o.correct for o in outs])
        missed_any = np.logical_or.reduce([~o.correct & (o.p_adv < threshold) for o in outs])
        res["missed"] = float(missed_any.mean())
        res["misclassified_by_some_attack"] = float(fooled_any.mean())
        res["detected_share"] = float(1.0 - missed_any.sum() / fooled_any.sum()) if fooled_any.any() else 1.0
    return res


def clean_figures(clean: Outcome, threshold: float | None) -> dict[str, Any]:
    fig: dict[str, Any] = {"acc": float(clean.correct.mean()), "n": int(len(clean.correct))}
    if clean.p_adv is not None and threshold is not None:
        fig["router_fpr"] = float((clean.p_adv >= threshold).mean())
        fig["p_adv_mean"] = float(clean.p_adv.mean())
    return fig
