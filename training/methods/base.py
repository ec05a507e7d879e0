"""Training methods: each turns a batch into a loss and a few running figures."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from models import unwrap
from training.attacks import PGD
from training.config import TrainConfig
from training.methods.rat import RATRegulariser


class Method(ABC):
    """One training objective. ``model`` passed to :meth:`loss` may be DDP-wrapped (used
    for the differentiable forwards); attacks always run on the bare module."""

    name: ClassVar[str]

    def __init__(self, cfg: TrainConfig, model: nn.Module, device: torch.device) -> None:
        self.cfg = cfg
        self.device = device
        self.num_classes = unwrap(model).input_config.num_classes
        self.eps = float(cfg.eps)
        self.rat = RATRegulariser(cfg, self.num_classes) if cfg.rat else None

    def set_eps(self, eps: float) -> None:
        """Current training eps (the warm-up ramp moves it)."""
        self.eps = float(eps)

    def attack_model(self, model: nn.Module) -> nn.Module:
        """Model that crafts the training examples: the student itself, or RAT's noisy copy."""
        bare = unwrap(model)
        return self.rat.noisy_copy(bare) if self.rat is not None else bare

    def pgd(self, model: nn.Module, loss: str = "ce", **kw: Any) -> PGD:
        """The training attack at the current eps; ``kw`` go to :class:`PGD` (``mix``, ``loss_kwargs``)."""
        step = self.cfg.step_size * (self.eps / self.cfg.eps) if self.cfg.eps else 0.0
        return PGD(self.attack_model(model), eps=self.eps, step_size=step, steps=self.cfg.attack_steps, loss=loss, **kw)

    @abstractmethod
    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The batch's training loss and the figures shown in the progress bar and log."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        """Restore :meth:`state_dict` (methods without state have nothing to restore)."""
