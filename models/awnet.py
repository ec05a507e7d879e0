"""AW-Net: a backbone with weight-varied convs and MixBN, steered per sample by the router."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from models.backbones.base import Backbone
from models.config import InputConfig
from models.folding import FoldPlan, fold, make_plan
from models.layers import (
    HARD_MIXES,
    MIX_ADV,
    MIX_CLEAN,
    MIX_ROUTER,
    MixBatchNorm2d,
    WeightVariedConv2d,
)
from models.router import AdversarialRouter

Mix = str | float | torch.Tensor | None


class AWNetOutput(NamedTuple):
    logits: torch.Tensor  # N x K
    type_logits: torch.Tensor  # N x 2 (clean, adversarial)
    p_adv: torch.Tensor  # N
    mix: torch.Tensor  # N, the mix used by every MixBN (0 clean, 1 adversarial)
    features: torch.Tensor  # N x D, pooled penultimate features


class AWNet(nn.Module):
    """Adversarial Weight-Varied Network (Wei, Zhao, Li; TPAMI 2024).

    ``mix`` selects how MixBN combines its two BNs for a forward:

    - ``"router"`` (default in eval): soft blend by the router's p_adv, per sample;
    - ``"clean"`` / ``"adv"``: the whole batch through one BN (training by known type,
      or forced inference);
    - a float in [0, 1] or an (N,) tensor: that mix per sample; negative entries mean
      "use the router" (the ONNX ``mix_override`` contract).

    ``forward`` returns logits so attacks and losses treat it like any classifier;
    ``forward_all`` also returns the router outputs. The default mix of ``forward`` is
    ``self.mix_mode``, which attacks may set and must restore.

    Whether a (possibly wrapped) model is an AW-Net is asked with
    :func:`models.is_awnet`, which checks this class.

    The router's per-sample signals and the mix reach the backbone's layers through a
    side channel (``WeightVariedConv2d.signal``, ``MixBatchNorm2d.mix``) held only for
    the duration of one backbone forward (:meth:`_side_channel`). It is not reentrant:
    one instance runs one forward at a time (no nested forward of the same model from a
    hook, no two threads sharing an instance).
    """

    _side_channel_active = False  # per instance once set; see _side_channel

    def __init__(
        self,
        backbone: Backbone,
        router_width: int = 32,
        router_hidden: int = 64,
        signal_activation: str = "2sigmoid",
    ) -> None:
        super().__init__()
        if not isinstance(backbone, Backbone):
            raise TypeError(
                f"an AW-Net wraps a models.backbones.Backbone, not {type(backbone).__name__}"
            )
        self.backbone = backbone
        self.convs = [m for m in backbone.modules() if isinstance(m, WeightVariedConv2d)]
        self.mixbns = [m for m in backbone.modules() if isinstance(m, MixBatchNorm2d)]
        if not self.convs or not self.mixbns:
            raise ValueError("an AW-Net backbone must be built with the AWNET layer factories")
        self.router = AdversarialRouter(
            backbone.input_config.channels,
            [c.out_channels for c in self.convs],
            width=router_width,
            hidden=router_hidden,
            signal_activation=signal_activation,
        )
        self.mix_mode: Mix = MIX_ROUTER
        self._fold_plan: FoldPlan | None = None

    @property
    def input_config(self) -> InputConfig:
        return self.backbone.input_config

    @property
    def num_classes(self) -> int:
        return self.backbone.num_classes

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def _resolve_mix(
        self, mix: Mix, p_adv: torch.Tensor
    ) -> tuple[torch.Tensor, str | torch.Tensor]:
        """Return (per-sample mix tensor, what MixBN receives)."""
        n = p_adv.shape[0]
        if isinstance(mix, str):
            if mix == MIX_CLEAN:
                return torch.zeros_like(p_adv), MIX_CLEAN
            if mix == MIX_ADV:
                return torch.ones_like(p_adv), MIX_ADV
            if mix != MIX_ROUTER:
                raise ValueError(
                    f"unknown mix {mix!r}: use 'router', 'clean', 'adv', a float or a tensor"
                )
            m = p_adv
        elif isinstance(mix, (int, float)):
            if not 0.0 <= float(mix) <= 1.0:
                raise ValueError("a fixed mix must lie in [0, 1]")
            m = torch.full((n,), float(mix), dtype=p_adv.dtype, device=p_adv.device)
        elif isinstance(mix, torch.Tensor):
            override = mix.to(p_adv.dtype).reshape(-1)
            if override.shape[0] != n:
                raise ValueError(f"mix has {override.shape[0]} entries for a batch of {n}")
            m = torch.where(override >= 0, override.clamp(max=1.0), p_adv)
        else:
            raise TypeError(f"unsupported mix {type(mix).__name__}")
        if self.training:
            raise RuntimeError(
                "AW-Net trains each batch through the BN of its known type: "
                "pass mix='clean' or mix='adv' in training mode"
            )
        return m, m

    @contextmanager
    def _side_channel(
        self,
        signals: Sequence[torch.Tensor | None],
        bn_mix: str | torch.Tensor,
        affines: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> Iterator[None]:
        """Hand one forward's regulation signals and MixBN mix to the backbone's layers.

        Sets ``conv.signal`` on every :class:`WeightVariedConv2d` (one signal per conv, in
        module order) and ``bn.mix`` on every :class:`MixBatchNorm2d` for the duration of
        the ``with`` block, and clears them all (back to ``None``) in ``finally``, so no
        layer keeps a stale signal or mix after the block, whether it returns or raises.
        The folded eval forward also passes ``affines`` (one (scale, shift) per MixBN, set
        as ``bn.affine``) and ``None`` signals for the convs whose omega they hold.

        Not reentrant: the layers hold one signal and one mix each, so a second forward
        of the same instance inside the block (a hook calling the model, another thread)
        would overwrite the outer forward's values and then clear them under it.
        Entering the side channel while it is already active raises ``RuntimeError``
        (and leaves the active one untouched).
        """
        if self._side_channel_active:
            raise RuntimeError(
                "AWNet side channel is already active: a forward of this AW-Net was started inside "
                "another (nested call from a hook, or two threads sharing one instance); it is not "
                "reentrant, use one instance (e.g. a copy) per concurrent forward"
            )
        self._side_channel_active = True
        try:
            for conv, s in zip(self.convs, signals, strict=True):
                conv.signal = s
            for bn in self.mixbns:
                bn.mix = bn_mix
            if affines is not None:
                for bn, affine in zip(self.mixbns, affines, strict=True):
                    bn.affine = affine
            yield
        finally:
            for conv in self.convs:
                conv.signal = None
            for bn in self.mixbns:
                bn.mix = None
                bn.affine = None
            self._side_channel_active = False

    def _backbone(
        self, x: torch.Tensor, signals: Sequence[torch.Tensor], bn_mix: str | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the backbone with the given per-conv signals and MixBN mix set."""
        with self._side_channel(signals, bn_mix):
            features = self.backbone.forward_features(x)
            return features, self.backbone.forward_head(features)

    def forward_all(self, x: torch.Tensor, mix: Mix = None) -> AWNetOutput:
        mix = self.mix_mode if mix is None else mix
        type_logits, signals = self.router(x)
        p_adv = torch.softmax(type_logits, dim=1)[:, 1]
        mix_t, bn_mix = self._resolve_mix(mix, p_adv)
        features, logits = self._backbone(x, signals, bn_mix)
        return AWNetOutput(logits, type_logits, p_adv, mix_t, features)

    def fold_plan(self) -> FoldPlan:
        """Which conv feeds which MixBN, for the folded forward (``models.folding``), traced
        once and cached. The export wrapper asks before tracing, so ``torch.export`` never
        runs ``torch.fx`` inside its own trace."""
        if self._fold_plan is None:
            self._fold_plan = make_plan(self.backbone, self.convs, self.mixbns)
        return self._fold_plan

    def forward_folded(self, x: torch.Tensor, mix: Mix = None) -> AWNetOutput:
        """Eval-only :meth:`forward_all` with omega and the MixBN blend folded into one
        per-sample, per-channel scale and shift (``models.folding``): the exported graph.

        Same outputs as ``forward_all`` in eval mode up to float rounding; "clean" / "adv"
        use that BN's constants alone, any other mix the blend. The router runs as its
        parts (extractor, type head, the signal heads stacked into one matmul), so hooks
        on ``router`` itself do not fire. Training keeps ``forward_all`` /
        ``forward_pair`` (two BN passes with separate running statistics), so this
        refuses training mode.
        """
        if self.training:
            raise RuntimeError(
                "forward_folded uses the BNs' running statistics: call .eval() first"
            )
        mix = self.mix_mode if mix is None else mix
        feats = self.router.extractor(x)
        type_logits = self.router.type_head(feats)
        p_adv = torch.softmax(type_logits, dim=1)[:, 1]
        mix_t, bn_mix = self._resolve_mix(mix, p_adv)
        omega = self.router.stacked_signals(feats)
        conv_signals, affines = fold(self.fold_plan(), self.mixbns, omega, bn_mix)
        with self._side_channel(conv_signals, mix_t, affines):
            features = self.backbone.forward_features(x)
            logits = self.backbone.forward_head(features)
        return AWNetOutput(logits, type_logits, p_adv, mix_t, features)

    def forward_pair(
        self, x_clean: torch.Tensor, x_adv: torch.Tensor
    ) -> tuple[AWNetOutput, AWNetOutput]:
        """Training forward by known type: the router sees the clean and the adversarial
        batch *together* (so its BN statistics, in training as at inference, describe
        both kinds of input), then the backbone runs twice, the clean batch through the
        clean BNs and the adversarial batch through the adversarial BNs (separate
        running statistics)."""
        n = x_clean.shape[0]
        type_logits, signals = self.router(torch.cat([x_clean, x_adv]))
        p_adv = torch.softmax(type_logits, dim=1)[:, 1]
        outs = []
        for sl, x, kind, value in (
            (slice(0, n), x_clean, MIX_CLEAN, 0.0),
            (slice(n, None), x_adv, MIX_ADV, 1.0),
        ):
            features, logits = self._backbone(x, [s[sl] for s in signals], kind)
            outs.append(
                AWNetOutput(
                    logits, type_logits[sl], p_adv[sl], torch.full_like(p_adv[sl], value), features
                )
            )
        return outs[0], outs[1]

    def forward(
        self,
        x: torch.Tensor,
        mix: Mix = None,
        return_all: bool = False,
        x_adv: torch.Tensor | None = None,
    ):
        """Logits (or the full :class:`AWNetOutput` with ``return_all``, e.g. under DDP).

        With ``x_adv`` it is the training pair forward (:meth:`forward_pair`), which goes
        through ``forward`` so DistributedDataParallel sees one call.
        """
        if x_adv is not None:
            return self.forward_pair(x, x_adv)
        out = self.forward_all(x, mix)
        return out if return_all else out.logits

    def forward_features(self, x: torch.Tensor, mix: Mix = None) -> torch.Tensor:
        return self.forward_all(x, mix).features

    def signals(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-conv regulation signals omega for a batch (for analysis plots)."""
        return self.router(x)[1]


def is_hard_mix(mix: Mix) -> bool:
    return isinstance(mix, str) and mix in HARD_MIXES
