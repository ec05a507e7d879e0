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
    """

    input_config: InputConfig
    feature_dim: int
    is_awnet = False

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

    @abstractmethod
    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the features."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
