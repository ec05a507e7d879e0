"""``analyze router``: does the router's p_adv flag adversarial inputs, also adaptive ones?

The dashboard counts inputs with p_adv >= the served threshold as adversarial, so the
router is an attack surface. The attacks are those of the ``evaluate`` suite
(training/evaluation/suite.py) that bear on the router, under the suite's names, and they
are run and judged by the evaluation's own code (as served: eval mode, soft router mix):

- ``pgdN``: PGD-CE end to end through the router, signals and soft MixBN (white box);
- ``transfer-clean``: PGD-CE on the forced clean branch, then fed to the full model
  (transfer from the branch an attacker may think of as "the classifier");
- ``evade-router-l<lambda>``: router evasion, PGD on CE + lambda * log p_clean through the
  soft router; with ``evade_clean_branch`` also ``evade-clean-l<lambda>``, through the
  forced clean branch.

The figures per attack are the evaluation card's (ROC AUC of p_adv clean vs attacked, the
share flagged at the threshold, accuracy, the share flagged among the misclassified ones
and the share *missed*: misclassified and not flagged), plus its per-sample worst case.
What this command adds: the p_adv histograms and ROC curves, and one table of them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.analysis.common import fmt, load, markdown_table, write_report
from training.evaluation.command import router_threshold
from training.evaluation.figures import attack_figures, clean_figures, worst_case
from training.evaluation.runner import clean_outcome, run_attack
from training.evaluation.suite import DEFAULT_LAMBDAS, AttackSpec, Budget, build_suite
from training.evaluation.target import Target, manifest_threshold, read_manifest
from training.plots import pyplot, router_score_hist, save_figure


def router_attacks(
    target: Target,
    eps: float,
    steps: int,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    evade_clean_branch: bool = False,
    seed: int = 0,
) -> list[AttackSpec]:
    """The suite's attacks on the router, in suite order, its PGD attacks at ``steps`` steps:
    ``pgd<steps>``, ``evade-router-l*``, (``evade-clean-l*``), ``evade-margin-l*``, ``transfer-clean``."""
    suite = build_suite(eps, target.num_classes, target.awnet, replace(Budget.named("standard"), pgd_steps=steps),
                        seed=seed, lambdas=lambdas)  # fmt: skip
    evade = ("evade-router-", "evade-margin-") + (("evade-clean-",) if evade_clean_branch else ())
    picked: dict[str, AttackSpec] = {}
    for spec in suite:  # with steps == 20 the suite has pgd20 twice: keep one
        if spec.name in (f"pgd{steps}", "transfer-clean") or spec.name.startswith(evade):
            picked.setdefault(spec.name, spec)
    return list(picked.values())


def threshold_of(target: Target, manifest: str | os.PathLike[str] | None = None) -> tuple[float, str]:
    """The router threshold and where it comes from: ``manifest`` (an exported model's
    manifest.json or its folder) when given, else as ``evaluate`` reads it (an exported
    folder's manifest; for a checkpoint the exporter's rule on the validation split)."""
    if manifest is not None:
        path, content = read_manifest(manifest)
        thr = manifest_threshold(content)
        if thr is None:
            raise ValueError(f"{path} has no router threshold (a static export?)")
        return thr, f"manifest {path}"
    thr, source = router_threshold(target)
    assert thr is not None  # an AW-Net
    return thr, f"manifest {target.path}" if source == "manifest" else source


def roc_curve(neg: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the rule score >= t over every distinct threshold t, from (0, 0) to (1, 1)."""
    thr = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.array([0.0, *[(neg >= t).mean() for t in thr]])
    tpr = np.array([0.0, *[(pos >= t).mean() for t in thr]])
    return np.append(fpr, 1.0), np.append(tpr, 1.0)


def analyze_router_model(
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    threshold: float,
    steps: int = 100,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    evade_clean_branch: bool = False,
    batch_size: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Attack, route and score; returns the report and the p_adv arrays for the plots."""
    if not target.awnet:
        raise ValueError("analyze router needs an AW-Net (a static model has no router)")
    specs = router_attacks(target, eps, steps, lambdas, evade_clean_branch, seed)
    clean = clean_outcome(target.model, x, y)
    assert clean.p_adv is not None
    rows: dict[str, Any] = {"clean": clean_figures(clean, threshold)}
    scores = {"clean": clean.p_adv}
    outs = []
    for spec in specs:
        out = run_attack(target.model, spec, x, y, eps, batch=batch_size, seed=seed, progress=progress)
        outs.append(out)
        rows[spec.name] = {"title": spec.title, "family": spec.family, "crafted_on": spec.crafted_on,
                           **attack_figures(out, clean, threshold)}  # fmt: skip
        scores[spec.name] = out.p_adv
    report = {
        "kind": "router",
        "threshold": threshold,
        "flag_rule": "p_adv >= threshold",
        "n": int(len(y)),
        "eps": eps,
        "steps": steps,
        "step_size": next(s for s in specs if s.name == f"pgd{steps}").build(target.model).step_size,  # the suite's
        "lambdas": [float(v) for v in lambdas],
        "seed": seed,
        "evaluated_as": "eval mode, soft router mix (as served)",
        "attacks": rows,
        "worst_case": worst_case(outs, clean, threshold),
    }
    return report, scores


def router_markdown(report: dict[str, Any]) -> str:
    """Markdown table: clean, one row per attack, the worst case per sample."""
    attacks = dict(report["attacks"])
    c = attacks.pop("clean")
    rows: list[list[Any]] = [["clean", None, c.get("router_fpr"), c["acc"], None, None]]
    for key, r in attacks.items():
        rr = r["router"]
        rows.append([key, rr["auc"], rr["flagged"], r["acc"], rr["flagged_when_misclassified"], rr["missed"]])
    w = report["worst_case"]
    rows.append(["worst case", None, None, w["acc"], w.get("detected_share"), w.get("missed")])
    head = (f"Router p_adv on {report['n']} test images, threshold {fmt(report['threshold'])} "
            f"({report.get('threshold_source', '')}); L-inf eps {report['eps']:g}, PGD {report['steps']} steps of "
            f"{report['step_size']:.4g}; flagged = p_adv >= threshold (the clean row's is the FPR); "
            f"missed = misclassified and not flagged; worst case: per image over all attacks.")  # fmt: skip
    table = markdown_table(["attack", "ROC AUC", "flagged", "accuracy", "flagged of misclassified", "missed"], rows)
    return f"{head}\n\n{table}\n"


def plot_router_histograms(scores: dict[str, np.ndarray], report: dict[str, Any], out: Path) -> Path:
    """One panel per attack: p_adv on clean vs attacked inputs, the threshold drawn."""
    keys = [k for k in scores if k != "clean"]
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = pyplot().subplots(rows, cols, figsize=(5 * cols, 3.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        rr = report["attacks"][key]["router"]
        router_score_hist(ax, scores["clean"], scores[key], report["threshold"], adv_label=key)
        ax.set_title(f"{key}: AUC {rr['auc']:.3f}, flagged {rr['flagged']:.1%}, missed {rr['missed']:.1%}", fontsize=9)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"Router scores, clean vs attacked (eps {report['eps']:g}, {report['steps']} PGD steps)", fontsize=11)
    return save_figure(fig, out)


def plot_router_roc(scores: dict[str, np.ndarray], report: dict[str, Any], out: Path) -> Path:
    """ROC of p_adv per attack, the threshold's operating point marked."""
    fig, ax = pyplot().subplots(figsize=(6.2, 5.4))
    thr = report["threshold"]
    neg = scores["clean"]
    fpr_thr = float((neg >= thr).mean())
    for key in (k for k in scores if k != "clean"):
        fpr, tpr = roc_curve(neg, scores[key])
        (line,) = ax.plot(fpr, tpr, lw=1.6, label=f"{key} (AUC {report['attacks'][key]['router']['auc']:.3f})")
        ax.plot([fpr_thr], [float((scores[key] >= thr).mean())], "o", color=line.get_color())
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1)
    ax.set(xlabel="false-positive rate (clean flagged)", ylabel="true-positive rate (attacked flagged)",
           xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))  # fmt: skip
    ax.set_title(f"Router ROC, clean vs each attack (dots: threshold {thr:.3g})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, out)


def analyze_router(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    n: int = 500,
    eps: float | None = None,
    steps: int = 100,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    manifest: str | os.PathLike[str] | None = None,
    evade_clean_branch: bool = False,
    batch_size: int = 100,
    seed: int = 0,
    device: str = "cpu",
    data_root: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the analysis on a checkpoint or an exported model folder; writes router_hist.png,
    router_roc.png, router.json and router.md into ``out`` and returns the report (with
    ``markdown`` and ``files``)."""
    target = load(checkpoint, device, data_root)
    if not target.awnet:
        raise ValueError(f"{checkpoint} holds a static {target.arch}: analyze router needs an AW-Net")
    threshold, source = threshold_of(target, manifest)
    x, y = target.test_split(n)
    e = target.eps if eps is None else float(eps)
    report, scores = analyze_router_model(
        target, x.to(device), y.to(device), e, threshold, steps, lambdas, evade_clean_branch, batch_size, seed, progress,
    )  # fmt: skip
    report = {"checkpoint": str(checkpoint), "threshold_source": source, **report}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    report["figures"] = [
        plot_router_histograms(scores, report, out_dir / "router_hist.png").name,
        plot_router_roc(scores, report, out_dir / "router_roc.png").name,
    ]
    return write_report(out_dir, report, router_markdown(report))
