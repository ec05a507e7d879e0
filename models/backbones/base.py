"""Common interface of every backbone: features, head, input configuration."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from models.config import InputConfig
from models.layers import Normalize


class Backbone(nn.Module, ABC):
    """A classifier split timm-style into ``forward_features`` and ``forward_head``.

    ``forward_features`` returns the pooled penultimate features (what randomized
    adversarial training's closed-form last-layer gradient needs).

    The interface the AW-Net wrapper and the training code read from a backbone, set by
    every subclass's ``__init__``:

    - ``input_config``: what the model takes (the router reads its channel count);
    - ``feature_dim``: the width D of ``forward_features``' output (N x D);
    - ``fc``: the classifier head, an ``nn.Linear`` from ``feature_dim`` to
      ``num_classes`` (named ``fc`` because checkpoints and the ONNX initializers carry
      ``fc.*``); read it as :attr:`head`.
    """

    input_config: InputConfig
    feature_dim: int
    fc: nn.Linear

    def __init__(self, input_config: InputConfig) -> None:
        super().__init__()
        self.input_config = input_config
        self.normalize = Normalize(input_config.mean, input_config.std)

    @property
    def num_classes(self) -> int:
        return self.input_config.num_classes

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features of [0, 1] images."""

    @property
    def head(self) -> nn.Linear:
        """The classifier head: ``forward_head(features)`` is ``head(features)``, so a
        forward hook on it sees the features (how RAT reads them through a DDP wrapper)."""
        return self.fc

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
