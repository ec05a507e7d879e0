"""ResNet in its CIFAR form (3x3 stem, no max-pool), as used by AW-Net and TRADES."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.backbones.base import Backbone
from models.config import InputConfig
from models.layers import LayerFactories


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, layers: LayerFactories) -> None:
        super().__init__()
        self.conv1, self.bn1 = layers.conv(in_ch, out_ch, 3, stride=stride, padding=1), layers.norm(out_ch)
        self.conv2, self.bn2 = layers.conv(out_ch, out_ch, 3, padding=1), layers.norm(out_ch)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(layers.conv(in_ch, out_ch, 1, stride=stride), layers.norm(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + skip)


class ResNet(Backbone):
    def __init__(
        self,
        input_config: InputConfig,
        layers: LayerFactories,
        blocks: Sequence[int] = (2, 2, 2, 2),
        widths: Sequence[int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__(input_config)
        self.conv1 = layers.conv(input_config.channels, widths[0], 3, padding=1)
        self.bn1 = layers.norm(widths[0])
        stages: list[nn.Module] = []
        in_ch = widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths, strict=True)):
            stride = 1 if i == 0 else 2
            for j in range(n):
                stages.append(BasicBlock(in_ch, w, stride if j == 0 else 1, layers))
                in_ch = w
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_ch, input_config.num_classes)
        self.feature_dim = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(self.normalize(x))))
        x = self.stages(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


def resnet18(input_config: InputConfig, layers: LayerFactories) -> ResNet:
    return ResNet(input_config, layers, blocks=(2, 2, 2, 2))
