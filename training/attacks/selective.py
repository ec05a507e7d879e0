"""Selective PGD against a classifier with a detector: the threshold-aware adaptive attack.

Summed objectives (classification loss + lambda * router term) trade one goal against the
other for the whole batch; an attacker who knows the router's threshold does better per
sample (Bryniarski et al., ICLR 2022, "Evading adversarial example detectors"; Tramer et
al., NeurIPS 2020): while a sample is still classified correctly, step on the
classification loss; once it is misclassified but flagged (p_adv >= threshold), step on
the router's logit margin toward "clean" (whose gradient, unlike that of log p_clean, does
not vanish as p_adv goes to 0), projected orthogonal to the classification gradient so the
step does not undo the misclassification. The first iterate that is misclassified and not
flagged is kept. On a static model it is plain PGD on the classification loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import is_awnet
from training.attacks.base import Attack
from training.attacks.losses import cw_margin, router_margin


def _classification_loss(logits: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cw":  # CW margin: best other logit minus the true one, per sample
        return -cw_margin(logits, y)
    return F.cross_entropy(logits, y, reduction="none")


def _orthogonal(g: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``g`` without its component along ``other``, per sample: a router step that does not
    undo the misclassification (orthogonal PGD, Bryniarski et al. 2022)."""
    g2, o2 = g.flatten(1), other.flatten(1)
    coef = (g2 * o2).sum(1, keepdim=True) / o2.pow(2).sum(1, keepdim=True).clamp_min(1e-20)
    return (g2 - coef * o2).view_as(g)


class SelectivePGD(Attack):
    """L-inf selective PGD (random start, sign steps of ``step_size``, ``steps`` iterations).

    ``threshold``: the router threshold the service flags at (``p_adv >= threshold``).
    ``loss``: ``ce`` or ``cw``, the classification loss followed while a sample is correct.
    """

    def __init__(self, model: nn.Module, eps: float, threshold: float, steps: int = 100,
                 step_size: float | None = None, loss: str = "ce", mix: Any = None) -> None:  # fmt: skip
        super().__init__(model, eps, mix=mix)
        if loss not in ("ce", "cw"):
            raise ValueError(f"unknown classification loss {loss!r}; choose ce or cw")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        self.threshold = float(threshold)
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps
        self.loss = loss

    def _outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        if not is_awnet(self.model):
            return self.model(x), None, None
        out = self.model.forward_all(x)
        return out.logits, out.p_adv, router_margin(out.type_logits)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.project(x + torch.empty_like(x).uniform_(-self.eps, self.eps), x)
        best = x_adv.detach().clone()
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        for step in range(self.steps + 1):
            x_adv.requires_grad_(step < self.steps)
            logits, p_adv, margin = self._outputs(x_adv)
            wrong = logits.argmax(1) != y
            flagged = p_adv >= self.threshold if p_adv is not None else torch.zeros_like(wrong)
            success = (wrong & ~flagged).detach()
            new = success & ~done
            best[new] = x_adv.detach()[new]
            done |= success
            if step == self.steps:
                break
            loss_c = _classification_loss(logits, y, self.loss)
            if margin is None:
                (grad,) = torch.autograd.grad(loss_c.sum(), x_adv)
            else:
                g_c, g_r = (torch.autograd.grad(t.sum(), x_adv, retain_graph=True)[0] for t in (loss_c, margin))
                grad = torch.where((wrong & flagged)[:, None, None, None], _orthogonal(g_r, g_c), g_c)
            x_adv = self.project(x_adv.detach() + self.step_size * grad.sign(), x)
        best[~done] = x_adv.detach()[~done]
        return best
