"""Fast gradient sign method (Goodfellow et al., ICLR 2015)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training.attacks.base import Attack
from training.attacks.losses import ATTACK_LOSSES


class FGSM(Attack):
    def __init__(self, model: nn.Module, eps: float, loss: str = "ce", mix: Any = None, model_train: bool = False) -> None:
        super().__init__(model, eps, mix=mix, model_train=model_train)
        if loss not in ("ce", "cw", "ce-evade-router"):
            raise ValueError(f"FGSM supports losses ce, cw, ce-evade-router, not {loss!r}")
        self.loss = loss

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone().requires_grad_(True)
        loss = ATTACK_LOSSES[self.loss](self.model, x_adv, y, None)
        (grad,) = torch.autograd.grad(loss, x_adv)
        return self.project(x.detach() + self.eps * grad.sign(), x)
