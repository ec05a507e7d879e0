"""Shared attack plumbing: mode preservation and the model call."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from models import is_awnet, unwrap

__all__ = ["Attack", "preserved_modes"]


@contextlib.contextmanager
def preserved_modes(model: nn.Module, train: bool = False, mix: Any = None) -> Iterator[nn.Module]:
    """Put ``model`` in eval (or train) mode, optionally force its MixBN mix, and restore
    every module's own ``training`` flag and the AW-Net ``mix_mode`` afterwards (``mix``
    is ignored for a static model)."""
    flags = [(m, m.training) for m in model.modules()]
    awnet = unwrap(model) if is_awnet(model) else None
    old_mix = awnet.mix_mode if awnet is not None else None
    model.train(train)
    if mix is not None and awnet is not None:
        awnet.mix_mode = mix
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
        if awnet is not None:
            awnet.mix_mode = old_mix


class Attack(ABC):
    """Base: ``attack(x, y)`` returns adversarial images in [0, 1]; ``x`` is untouched.

    ``mix`` forces the AW-Net branch the attack sees (None: the model's own mode, the
    router in eval); ``model_train`` runs the attack with the model in train mode
    (default eval, so BN statistics never move).
    """

    def __init__(self, model: nn.Module, eps: float, mix: Any = None, model_train: bool = False) -> None:
        if eps < 0:
            raise ValueError("eps must be >= 0")
        self.model = unwrap(model)
        self.eps = float(eps)
        self.mix = mix
        self.model_train = model_train

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with preserved_modes(self.model, train=self.model_train, mix=self.mix), torch.enable_grad():
            x_adv = self.perturb(x.detach().clone(), y.detach())
        return x_adv.detach()

    @abstractmethod
    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The attack loop on a copy of the input (modes already set by ``__call__``)."""

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x_adv = torch.max(torch.min(x_adv, x + self.eps), x - self.eps)
        return x_adv.clamp(0.0, 1.0)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items() if k != "model")
        return f"{type(self).__name__}({fields})"
