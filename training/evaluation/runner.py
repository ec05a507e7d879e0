"""Run attacks over a dataset and keep per-sample outcomes (correct, p_adv), so the worst
case per sample and the router's missed share can be computed over any set of attacks."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models import is_awnet, unwrap
from training.evaluation.library import Ensemble
from training.evaluation.suite import AttackSpec


@dataclass
class Outcome:
    """Per-sample results of one attack (or of the clean inputs)."""

    name: str
    correct: np.ndarray  # bool, N
    p_adv: np.ndarray | None  # float, N (AW-Net only)
    seconds: float = 0.0
    linf_max: float = 0.0
    in_range: bool = True
    stages: list[tuple[str, int]] = field(default_factory=list)  # AutoAttack: correct after each component


@torch.no_grad()
def served_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """What the service computes: logits (and p_adv) in the router's soft mode."""
    bare = unwrap(model)
    if is_awnet(bare):
        out = bare.forward_all(x, mix="router")
        return out.logits, out.p_adv
    return bare(x), None


def router_scores(model: nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """p_adv of an AW-Net on ``x`` as served, batch by batch."""
    return np.concatenate([served_forward(model, x[i:i + batch])[1].cpu().numpy() for i in range(0, len(x), batch)])


def clean_outcome(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> Outcome:
    correct, scores = [], []
    for i in range(0, len(x), batch):
        logits, p = served_forward(model, x[i:i + batch])
        correct.append((logits.argmax(1) == y[i:i + batch]).cpu().numpy())
        if p is not None:
            scores.append(p.cpu().numpy())
    return Outcome("clean", np.concatenate(correct), np.concatenate(scores) if scores else None)


def run_attack(
    model: nn.Module, spec: AttackSpec, x: torch.Tensor, y: torch.Tensor, eps: float,
    batch: int = 250, seed: int = 0, progress: bool = True,
) -> Outcome:  # fmt: skip
    """Craft ``spec``'s examples batch by batch (seeded), judge them in the served mode."""
    torch.manual_seed(seed)
    attack = spec.build(model)
    correct, scores, stages = [], [], {}
    linf, in_range = 0.0, True
    t0 = time.time()
    bar = tqdm(range(0, len(x), batch), desc=f"{spec.name:>16}", leave=False, dynamic_ncols=True, disable=not progress)
    for i in bar:
        xb, yb = x[i:i + batch], y[i:i + batch]
        xa = attack(xb, yb)
        linf = max(linf, float((xa - xb).abs().max()))
        in_range &= bool(xa.min() >= 0.0) and bool(xa.max() <= 1.0)
        logits, p = served_forward(model, xa)
        correct.append((logits.argmax(1) == yb).cpu().numpy())
        if p is not None:
            scores.append(p.cpu().numpy())
        if isinstance(attack, Ensemble):
            for name, count in attack.last_counts:
                stages[name] = stages.get(name, 0) + count
        bar.set_postfix(acc=f"{np.concatenate(correct).mean():.3f}")
    if linf > eps + 1e-5 or not in_range:
        raise AssertionError(f"{spec.name} left the threat model: Linf {linf:.5f} (eps {eps}), in [0,1]: {in_range}")
    return Outcome(spec.name, np.concatenate(correct), np.concatenate(scores) if scores else None,
                   seconds=time.time() - t0, linf_max=linf, in_range=in_range, stages=list(stages.items()))  # fmt: skip
