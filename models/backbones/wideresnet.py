"""WideResNet with block count and widen factor set per stage (Huang et al., NeurIPS 2021).

Stage i (1-based) has ``16 * 2**(i-1) * widths[i-1]`` channels and ``depths[i-1]``
pre-activation basic blocks. WRN-34-10 is depths (5, 5, 5), widths (10, 10, 10); the
paper's robust configuration WRN-34-R is depths (5, 5, 5), widths (20, 20, 8): wider early
stages and a reduced last stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones.base import Backbone
from models.config import InputConfig
from models.layers import LayerFactories


class PreActBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, layers: LayerFactories) -> None:
        super().__init__()
        self.bn1 = layers.norm(in_ch)
        self.conv1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn2 = layers.norm(out_ch)
        self.conv2 = layers.conv(out_ch, out_ch, 3, padding=1)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = layers.conv(in_ch, out_ch, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class WideResNet(Backbone):
    def __init__(
        self,
        input_config: InputConfig,
        layers: LayerFactories,
        depths: Sequence[int] = (5, 5, 5),
        widths: Sequence[int] = (10, 10, 10),
        stem_channels: int = 16,
    ) -> None:
        super().__init__(input_config)
        if len(depths) != len(widths):
            raise ValueError("depths and widths need one entry per stage")
        self.depths, self.widths = tuple(depths), tuple(widths)
        self.conv1 = layers.conv(input_config.channels, stem_channels, 3, padding=1)
        blocks: list[nn.Module] = []
        in_ch = stem_channels
        for i, (d, w) in enumerate(zip(depths, widths, strict=True)):
            out_ch = 16 * (2**i) * w
            for j in range(d):
                blocks.append(PreActBlock(in_ch, out_ch, (1 if i == 0 else 2) if j == 0 else 1, layers))
                in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.bn = layers.norm(in_ch)
        self.fc = nn.Linear(in_ch, input_config.num_classes)
        self.feature_dim = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.conv1(self.normalize(x)))
        x = F.relu(self.bn(x))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
