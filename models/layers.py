"""Building blocks shared by the static backbones and their AW-Net versions.

A backbone is written once against two factories, ``conv`` and ``norm``. The static model
gets ``nn.Conv2d`` and ``nn.BatchNorm2d``; the AW-Net model gets
:class:`WeightVariedConv2d` (per-sample, per-filter regulation signal omega) and
:class:`MixBatchNorm2d` (a clean BN and an adversarial BN). The AW-Net wrapper sets the
per-sample signal and mix on those layers for the duration of one forward, through one
context manager (``AWNet._side_channel``, not reentrant) that clears them afterwards.

The eval/export forward (``AWNet.forward_folded``, ``models.folding``) sets a per-sample,
per-channel ``affine`` (scale, shift) on each MixBN instead: in eval mode omega and both BNs
are affine per channel, so the blend is one multiply and one add on the feature map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

MIX_CLEAN = "clean"
MIX_ADV = "adv"
MIX_ROUTER = "router"
HARD_MIXES = (MIX_CLEAN, MIX_ADV)


class ConvFactory(Protocol):
    def __call__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> nn.Module: ...


class NormFactory(Protocol):
    def __call__(self, channels: int) -> nn.Module: ...


def plain_conv(
    in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> nn.Module:
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)


def plain_norm(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels)


class Normalize(nn.Module):
    """Per-channel (x - mean) / std inside the model: callers always pass [0, 1] pixels."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.identity = all(m == 0 for m in mean) and all(s == 1 for s in std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return x
        return (x - self.mean) / self.std


class WeightVariedConv2d(nn.Conv2d):
    """Conv whose filter k is scaled per sample by omega[k].

    Without a conv bias, conv(x, omega[k] * W[k]) == conv(x, W)[k] * omega[k], which is
    how it is computed: the weights stay shared and the extra cost is one multiply.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=False)
        self.signal: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        if self.signal is not None:
            y = y * self.signal[:, :, None, None]
        return y


class MixBatchNorm2d(nn.Module):
    """MixBN: a clean BN and an adversarial BN.

    ``mix`` is set by the AW-Net wrapper for each forward (``AWNet._side_channel``):
    - ``"clean"`` / ``"adv"``: the whole batch goes through that BN only (training by
      known type: running statistics stay separate);
    - a tensor of shape (N,) in [0, 1]: soft blend
      ``(1 - m) * BN_clean(h) + m * BN_adv(h)`` per sample (inference only: in training
      mode a soft blend would update both BNs' statistics with the same batch).

    ``affine`` (set only by the folded eval forward, ``AWNet.forward_folded``): a pair
    (scale, shift) of N x C x 1 x 1 tensors (``models.folding``: the blend of both BNs at
    the mix, times the preceding conv's omega when that conv feeds only this layer); the
    layer then computes ``h * scale + shift``, the same blend in one multiply and one add
    instead of two BN passes and the mix.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn_clean = nn.BatchNorm2d(channels)
        self.bn_adv = nn.BatchNorm2d(channels)
        self.mix: str | torch.Tensor | None = None
        self.affine: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.affine is not None:
            scale, shift = self.affine
            return h * scale + shift
        mix = self.mix
        if mix is None:
            raise RuntimeError("MixBatchNorm2d used outside an AW-Net forward (no mix set)")
        if isinstance(mix, str):
            return self.bn_clean(h) if mix == MIX_CLEAN else self.bn_adv(h)
        if self.training:
            raise RuntimeError(
                "a soft MixBN blend is for inference only; in training mode pass mix='clean' or 'adv'"
            )
        m = mix.to(h.dtype).view(-1, 1, 1, 1)
        return self.bn_clean(h) * (1.0 - m) + self.bn_adv(h) * m


def awnet_conv(
    in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0
) -> nn.Module:
    return WeightVariedConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding)


def awnet_norm(channels: int) -> nn.Module:
    return MixBatchNorm2d(channels)


@dataclass(frozen=True)
class LayerFactories:
    conv: ConvFactory
    norm: NormFactory


PLAIN = LayerFactories(conv=plain_conv, norm=plain_norm)
AWNET = LayerFactories(conv=awnet_conv, norm=awnet_norm)
