"""The digit blend: a gradient-free probe of a detector.

Each image is moved by at most eps toward every other image of its batch (x + clip(v - x,
-eps, eps), clipped to [0, 1]), and the served model judges each blend; per image the blend
kept is a misclassified one the router does not flag, else the misclassified one the router
trusts most (lowest p_adv), else the one with the highest loss. No gradient is taken, so a detector
that only holds because its gradients mislead (masking) shows here: CCAT's confidence flag,
which flagged 95.6 % of the fooled digits under random-start attacks, let 81.4 % of the test
digits through this probe (docs/results.md, "Confidence as the flag"). Carlini et al.'s
check that a black-box attack is not stronger than the white-box ones, applied to the flag.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import is_awnet
from training.attacks.base import Attack


class DigitBlend(Attack):
    """``threshold``: the router threshold the service flags at (``p_adv >= threshold``);
    None ranks the misclassified blends by p_adv alone. ``candidates``: how many images of
    the batch each image is blended toward (the first ones)."""

    def __init__(self, model: nn.Module, eps: float, threshold: float | None = None, candidates: int = 100,
                 mix: Any = None) -> None:  # fmt: skip
        super().__init__(model, eps, mix=mix)
        if candidates < 1:
            raise ValueError("candidates must be >= 1")
        self.threshold = None if threshold is None else float(threshold)
        self.candidates = int(candidates)

    @torch.no_grad()
    def _judge(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per image, a key that is higher for a better blend: missed, then fooled (the lower
        p_adv the better), then the classification loss."""
        if is_awnet(self.model):
            out = self.model.forward_all(x)
            logits, p_adv = out.logits, out.p_adv
        else:
            logits, p_adv = self.model(x), torch.zeros(len(x), device=x.device)
        wrong = logits.argmax(1) != y
        hidden = p_adv < self.threshold if self.threshold is not None else torch.zeros_like(wrong)
        ce = F.cross_entropy(logits, y, reduction="none").clamp(max=100.0)
        return torch.where(wrong, 1e3 + 1e3 * hidden.float() + (1.0 - p_adv) * 100.0, ce)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        best, key = x.clone(), self._judge(x, y)
        for v in x[: self.candidates]:
            xa = self.project(x + (v - x).clamp(-self.eps, self.eps), x)
            k = self._judge(xa, y)
            better = k > key
            best[better], key = xa[better], torch.where(better, k, key)
        return best
