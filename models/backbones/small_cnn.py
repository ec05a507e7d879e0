"""A small CNN for 28x28 grey images (MNIST-sized): fast enough to train on a laptop CPU."""

from __future__ import annotations

import torch
from torch import nn

from models.backbones.base import Backbone
from models.config import InputConfig
from models.layers import LayerFactories


class SmallCNN(Backbone):
    """conv32-conv32-pool-conv64-conv64-pool, then fc(hidden) and the classifier.

    Every conv is followed by a (Mix)BN, as AW-Net's weight-varied convs require.
    """

    def __init__(
        self, input_config: InputConfig, layers: LayerFactories, width: int = 32, hidden: int = 128
    ) -> None:
        super().__init__(input_config)
        c, (h, w) = input_config.channels, input_config.size
        if h % 4 or w % 4:
            raise ValueError(f"SmallCNN needs a size divisible by 4, got {h}x{w}")
        w1, w2 = width, 2 * width
        self.conv1, self.bn1 = layers.conv(c, w1, 3, padding=1), layers.norm(w1)
        self.conv2, self.bn2 = layers.conv(w1, w1, 3, padding=1), layers.norm(w1)
        self.conv3, self.bn3 = layers.conv(w1, w2, 3, padding=1), layers.norm(w2)
        self.conv4, self.bn4 = layers.conv(w2, w2, 3, padding=1), layers.norm(w2)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(w2 * (h // 4) * (w // 4), hidden)
        self.fc = nn.Linear(hidden, input_config.num_classes)
        self.feature_dim = hidden

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.relu(self.bn2(self.conv2(x))))
        x = self.relu(self.bn3(self.conv3(x)))
        x = self.pool(self.relu(self.bn4(self.conv4(x))))
        return self.relu(self.fc1(torch.flatten(x, 1)))
