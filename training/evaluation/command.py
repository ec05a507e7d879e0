"""``python -m training evaluate PATH``: every attack of the suite, the worst case per
sample, the router's figures, the sanity checks; a JSON card and a Markdown table."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from training.data import build_dataset
from training.evaluation import sanity
from training.evaluation.figures import attack_figures, clean_figures, worst_case
from training.evaluation.runner import Outcome, clean_outcome, router_scores, run_attack
from training.evaluation.suite import (
    DEFAULT_LAMBDAS,
    DIGIT_BLEND,
    AttackSpec,
    Budget,
    _pgd,
    build_suite,
    select,
)
from training.evaluation.target import Target, load_target, weights_fingerprint
from training.export.calibrate import (
    DEFAULT_TARGET_FPR,
    DEFAULT_THRESHOLD_FLOOR,
    calibrated_threshold,
)

CARD_FORMAT = "awnet-serve-evaluation/1"
#: eps multiples of the PGD-20 sweep behind the "accuracy falls as eps grows" check.
SWEEP_FACTORS = (0.25, 0.5)


class SanityError(RuntimeError):
    """An evaluation whose sanity checks failed (its figures are not trustworthy)."""


def router_threshold(target: Target, batch: int = 256) -> tuple[float | None, str]:
    """The manifest's threshold, or the exporter's rule on the clean validation split."""
    if not target.awnet:
        return None, "none (static model)"
    if target.threshold is not None:
        return float(target.threshold), "manifest"
    xv, _ = build_dataset(target.dataset, "val", root=target.data_root).tensors()
    device = next(target.model.parameters()).device
    thr, _ = calibrated_threshold(router_scores(target.model, xv.to(device), batch), DEFAULT_TARGET_FPR, DEFAULT_THRESHOLD_FLOOR)
    return thr, f"calibrated on {len(xv)} validation images: max(FPR {DEFAULT_TARGET_FPR:g} threshold, {DEFAULT_THRESHOLD_FLOOR:g})"


def channels_last(model: torch.nn.Module) -> None:
    """Float32 convolutions on the CPU in channels-last layout (oneDNN): the same figures,
    1.3-1.4x faster per attack step of the small CNNs (docs/results.md, "The CIFAR-10
    setting"). The values and the weights' fingerprint do not change."""
    if next(model.parameters()).device.type == "cpu":
        model.to(memory_format=torch.channels_last)


def evaluate_target(
    target: Target,
    n: int | None = None,
    eps: float | None = None,
    seed: int = 0,
    budget: str = "standard",
    attacks: Sequence[str] | None = None,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    sanity_checks: bool = True,
    batch: int = 250,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Evaluate ``target`` on the first ``n`` test images; returns the card (a dict)."""
    t0 = time.time()
    torch.set_grad_enabled(True)
    channels_last(target.model)
    eps = float(target.eps if eps is None else eps)
    x, y = target.test_split(n)
    b = Budget.named(budget)
    threshold, threshold_source = router_threshold(target)
    specs = select(build_suite(eps, target.num_classes, target.awnet, b, seed=seed, lambdas=lambdas,
                               threshold=threshold), attacks)  # fmt: skip
    clean = clean_outcome(target.model, x, y)
    log(f"{target.path}: {target.arch} ({target.method}), {len(x)} test images, eps {eps:g}, "
        f"clean {clean.correct.mean():.4f}" + (f", router threshold {threshold:.4g} ({threshold_source})" if threshold else ""))  # fmt: skip
    outs: list[Outcome] = []
    rows: list[dict[str, Any]] = []
    for spec in specs:
        out = run_attack(target.model, spec, x, y, eps, batch=batch, seed=seed, progress=progress)
        outs.append(out)
        rows.append(_row(spec, out, clean, threshold))
        r = rows[-1]
        log(f"  {spec.name:<18} acc {r['acc']:.4f}  wra {r['wra']:.4f}"
            + (f"  flagged {r['router']['flagged']:.3f} missed {r['router']['missed']:.3f}" if "router" in r else "")
            + f"  ({out.seconds:.1f} s)")  # fmt: skip
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "model": {
            "path": str(target.path), "source": target.source, "arch": target.arch, "method": target.method,
            "dataset": target.dataset, "awnet": target.awnet, "weights_sha256": weights_fingerprint(target.model),
            "onnx_parity_max_abs": target.parity_max_abs, "training": target.training,
        },
        "settings": {
            "split": "test", "n": int(len(x)), "eps": eps, "norm": "Linf", "seed": seed, "budget": budget,
            "lambdas": list(lambdas) if target.awnet else [], "threshold": threshold, "threshold_source": threshold_source,
            "torch": torch.__version__, "torchattacks": _version("torchattacks"), "machine": platform.machine(),
        },
        "clean": clean_figures(clean, threshold),
        "attacks": rows,
        "worst_case": worst_case(outs, clean, threshold) if outs else None,
    }  # fmt: skip
    adaptive = [o for o, s in zip(outs, specs, strict=True) if s.family in ("adaptive", "transfer")]
    if adaptive and threshold is not None:
        card["worst_case_adaptive"] = worst_case(adaptive, clean, threshold)
    if sanity_checks:
        card["sanity"] = [c.to_dict() for c in _sanity(target, x, y, eps, specs, outs, clean, batch, seed, progress,
                                                          rows)]
    card["wall_seconds"] = round(time.time() - t0, 1)
    return card


def _row(spec: AttackSpec, out: Outcome, clean: Outcome, threshold: float | None) -> dict[str, Any]:
    return {"name": spec.name, "title": spec.title, "library": spec.library, "family": spec.family,
            "crafted_on": spec.crafted_on, **attack_figures(out, clean, threshold)}  # fmt: skip


def _sanity(target, x, y, eps, specs, outs, clean, batch, seed, progress, rows=()) -> list[sanity.Check]:
    by_name = {o.name: float(o.correct.mean()) for o in outs}
    checks: list[sanity.Check] = []

    def pgd20(at_eps: float) -> float:
        spec = AttackSpec(f"pgd20@{at_eps:g}", "", "awnet-serve", "white-box", "", _pgd(at_eps, 20))
        return float(run_attack(target.model, spec, x, y, at_eps, batch=batch, seed=seed, progress=progress).correct.mean())

    sweep = {0.0: float(clean.correct.mean())}
    for f in SWEEP_FACTORS:
        sweep[f * eps] = pgd20(f * eps)
    sweep[eps] = by_name["pgd20"] if "pgd20" in by_name else pgd20(eps)
    at_one = pgd20(1.0)
    sweep[1.0] = at_one
    checks.append(sanity.eps_monotone(sweep))
    checks.append(sanity.eps_one_is_zero(at_one))
    many = [o.name for o in outs if o.name.startswith("pgd") and o.name[3:].isdigit() and int(o.name[3:]) > 20]
    if "pgd20" in by_name and many:
        checks.append(sanity.more_steps_not_weaker(by_name["pgd20"], by_name[many[0]], 20, int(many[0][3:])))
    black = [s.name for s in specs if s.family == "black-box"]
    white = {s.name: by_name[s.name] for s in specs if s.family == "white-box" and s.name != "autoattack"}
    if black and white:
        checks.append(sanity.black_box_not_stronger(by_name[black[0]], white))
    elif any(o.name == "autoattack" and "square" in dict(o.stages) for o in outs):
        aa = next(o for o in outs if o.name == "autoattack")
        checks.append(sanity.black_box_adds_little(dict(aa.stages), len(aa.correct)))
    missed = {r["name"]: r["router"]["missed"] for r in rows if "router" in r}  # the rows' own figures
    if DIGIT_BLEND in missed and len(missed) > 1:
        free = missed.pop(DIGIT_BLEND)
        checks.append(sanity.flag_not_masked(free, missed))
    return checks


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:
        return None


def markdown_table(card: dict[str, Any]) -> str:
    """The card as a Markdown table (one row per attack, then the worst case)."""
    awnet = card["model"]["awnet"]
    head = "| attack | library | family | crafted on | accuracy | WRA |" + (" flagged | missed | router AUC |" if awnet else "")
    sep = "|" + "---|" * (6 + (3 if awnet else 0))
    c = card["clean"]
    lines = [head, sep, f"| clean | - | - | - | {c['acc']:.1%} | - |" + (f" {c.get('router_fpr', 0):.1%} (FPR) | - | - |" if awnet else "")]
    for r in card["attacks"]:
        line = f"| {r['title']} | {r['library']} | {r['family']} | {r['crafted_on']} | {r['acc']:.1%} | {r['wra']:.1%} |"
        if awnet:
            rr = r.get("router", {})
            line += f" {rr.get('flagged', float('nan')):.1%} | {rr.get('missed', float('nan')):.1%} | {rr.get('auc', float('nan')):.3f} |"
        lines.append(line)
    for key, label in (("worst_case", "worst case over all attacks"), ("worst_case_adaptive", "worst case over the adaptive attacks")):
        w = card.get(key)
        if not w:
            continue
        line = f"| **{label}** | | | | **{w['acc']:.1%}** | **{w['wra']:.1%}** |"
        if awnet:
            line += f" {w.get('detected_share', float('nan')):.1%} of fooled | **{w.get('missed', float('nan')):.1%}** | |"
        lines.append(line)
    out = "\n".join(lines)
    if card.get("sanity"):
        out += "\n\nSanity checks:\n" + "\n".join(
            f"- {'PASS' if ch['passed'] else '**FAIL**'}: {ch['name']} ({ch['detail']})" for ch in card["sanity"]
        )
    return out


def write_card(card: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(card, indent=2) + "\n")
    s = card["settings"]
    md = (f"# Evaluation of {card['model']['path']}\n\n{card['model']['arch']} ({card['model']['method']}), "
          f"{s['n']} {s['split']} images, L-inf eps {s['eps']:g}, seed {s['seed']}, budget {s['budget']}, "
          f"{card['wall_seconds']} s.\n\n" + markdown_table(card) + "\n")  # fmt: skip
    (out / "evaluation.md").write_text(md)
    return out / "evaluation.json", out / "evaluation.md"


def failed_checks(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in card.get("sanity", []) if not c["passed"]]


def evaluate_path(
    path: str | Path,
    out: str | Path | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    **kw: Any,
) -> dict[str, Any]:
    target = load_target(path, dataset=dataset, data_root=data_root)
    card = evaluate_target(target, **kw)
    if out is not None:
        write_card(card, out)
    return card
