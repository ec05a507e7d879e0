"""The adversarial router: feature extractor D, type head and one signal head per conv."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

SIGNAL_ACTIVATIONS = ("2sigmoid", "1+tanh", "none")


class SignalHead(nn.Module):
    """Router features -> regulation signal omega (one entry per output filter).

    The last layer is zero-initialised so omega starts at exactly 1 (the static network).
    """

    def __init__(self, in_dim: int, channels: int, activation: str = "2sigmoid") -> None:
        super().__init__()
        if activation not in SIGNAL_ACTIVATIONS:
            raise ValueError(f"signal activation must be one of {SIGNAL_ACTIVATIONS}")
        self.activation = activation
        self.fc = nn.Linear(in_dim, channels)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.activate(self.fc(feats))

    def activate(self, z: torch.Tensor) -> torch.Tensor:
        """The activation alone, element-wise (so the folded export can run it once on every
        head's pre-activations side by side)."""
        if self.activation == "2sigmoid":
            return 2.0 * torch.sigmoid(z)
        if self.activation == "1+tanh":
            return 1.0 + torch.tanh(z)
        return torch.ones_like(z)


class AdversarialRouter(nn.Module):
    """D (3 stride-2 conv-BN-ReLU layers, global average pooling) plus its heads."""

    def __init__(
        self,
        in_channels: int,
        signal_channels: Sequence[int],
        width: int = 32,
        hidden: int = 64,
        signal_activation: str = "2sigmoid",
    ) -> None:
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:], strict=True):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            ]
        self.extractor = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feature_dim = chans[-1]
        self.type_head = nn.Sequential(
            nn.Linear(self.feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2)
        )
        self.signal_heads = nn.ModuleList(
            SignalHead(self.feature_dim, c, signal_activation) for c in signal_channels
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return type logits (N x 2: clean, adversarial) and the per-conv signals."""
        feats = self.extractor(x)
        return self.type_head(feats), [head(feats) for head in self.signal_heads]

    def stacked_signals(self, feats: torch.Tensor) -> torch.Tensor:
        """Every head's signal side by side, N x (sum of the convs' channels), in conv order.

        One matmul with the heads' weights concatenated and one activation instead of a
        Linear and an activation per conv: the same numbers, and in the exported graph a
        handful of nodes instead of three per conv (each costs a few microseconds of
        ONNX Runtime overhead at batch 1)."""
        heads = list(self.signal_heads)
        if len({h.activation for h in heads}) != 1:
            return torch.cat([h(feats) for h in heads], dim=1)
        weight = torch.cat([h.fc.weight for h in heads])
        bias = torch.cat([h.fc.bias for h in heads])
        return heads[0].activate(nn.functional.linear(feats, weight, bias))
