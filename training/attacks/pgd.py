"""L-inf projected gradient descent (Madry et al., ICLR 2018)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.attacks.base import Attack
from training.attacks.losses import ATTACK_LOSSES


class PGD(Attack):
    """L-inf PGD with random start.

    ``loss``: ``ce`` (default), ``cw`` (CW-inf margin), ``kl`` (TRADES: the reference is
    the model's prediction on the clean input, start at x + 0.001 * N(0, 1)) or
    ``ce-evade-router`` (adaptive attack on the AW-Net router). ``loss_kwargs`` go to the
    loss (e.g. ``{"weight": 3.0}``, the router-evasion lambda).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        step_size: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        loss: str = "ce",
        mix: Any = None,
        model_train: bool = False,
        loss_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, eps, mix=mix, model_train=model_train)
        self.loss_kwargs = dict(loss_kwargs or {})
        if loss not in ATTACK_LOSSES:
            raise ValueError(f"unknown attack loss {loss!r}; choose from {sorted(ATTACK_LOSSES)}")
        if steps < 1:
            raise ValueError("steps must be >= 1")
        self.steps = int(steps)
        self.step_size = float(step_size) if step_size is not None else 2.5 * self.eps / self.steps
        self.random_start = random_start
        self.loss = loss

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss_fn = ATTACK_LOSSES[self.loss]
        ref = None
        if self.loss == "kl":
            with torch.no_grad():
                ref = F.softmax(self.model(x), dim=1)
            x_adv = x + 0.001 * torch.randn_like(x) if self.random_start else x.clone()
        elif self.random_start:
            x_adv = x + torch.empty_like(x).uniform_(-self.eps, self.eps)
        else:
            x_adv = x.clone()
        x_adv = self.project(x_adv, x)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = loss_fn(self.model, x_adv, y, ref, **self.loss_kwargs)
            (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = self.project(x_adv.detach() + self.step_size * grad.sign(), x)
        return x_adv
