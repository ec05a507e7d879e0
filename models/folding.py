"""Eval/export-only folding of omega and MixBN into one scale and shift per sample and channel.

In eval mode a weight-varied conv followed by its MixBN is

    BN_mix(conv(x, W) * omega) = conv(x, W) * s + t,
    s = omega * (a_clean + m * (a_adv - a_clean)),   t = b_clean + m * (b_adv - b_clean),

with ``a = gamma / sqrt(var + eps)`` and ``b = beta - a * mean`` of each BN and ``m`` the
per-sample mix. ``s`` and ``t`` are N x C, so they cost nothing next to the feature map,
which is then touched by ONE multiply and ONE add instead of omega's multiply, two BN
passes and the three-op blend (what the unfolded graph runs per layer).

The N x C side is computed for all layers at once (the signal heads as one matmul, the
blend on the layers' constants side by side, then one split): in ONNX Runtime every node
costs a few microseconds at batch 1, and per-layer arithmetic on tiny tensors was most of
the folded graph's nodes.

Which conv feeds which MixBN is read from the backbone's code by ``torch.fx``: a pair is
folded only when the conv's output goes to that MixBN and nowhere else, and each module is
called once. A conv without such a MixBN (WideResNet's pre-activation blocks: the conv's
output is added to the skip first) keeps its omega multiply; a MixBN without such a conv
still becomes one multiply and one add. A backbone fx cannot trace gets no pairs (still
correct, only less folded). Training never uses this path: it runs the two BNs separately
so their running statistics stay separate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from models.layers import MIX_CLEAN, MixBatchNorm2d, WeightVariedConv2d


class _LeafTracer(torch.fx.Tracer):
    """Keeps the AW-Net layers as single nodes, so their users are visible in the graph."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, (WeightVariedConv2d, MixBatchNorm2d)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def conv_bn_pairs(
    backbone: nn.Module,
    convs: Sequence[nn.Module],
    bns: Sequence[nn.Module],
    *,
    exclusive: bool = True,
) -> tuple[tuple[int, int], ...]:
    """(conv index, BN index) of every conv whose output a BN of ``bns`` reads directly, read
    from the backbone's code by ``torch.fx``; indices into ``convs`` and ``bns`` (so a deep
    copy keeps its pairs), in the order the convs run. An untraceable backbone gives no pairs.

    ``exclusive`` (the fold): only where that BN is the conv's one reader and each module is
    called once, since only then can omega move into the BN's scale. Otherwise (the weights
    analysis' effective filters, ``training.analysis.weights``): the first BN that reads each
    conv's output, whatever else reads it too."""
    try:
        graph = _LeafTracer().trace(backbone)
    except Exception:  # noqa: BLE001 - any tracing failure only means "fold less"
        return ()
    modules = dict(backbone.named_modules())
    calls = [n for n in graph.nodes if n.op == "call_module"]
    times_called = Counter(n.target for n in calls)
    conv_index = {id(c): i for i, c in enumerate(convs)}
    bn_index = {id(b): i for i, b in enumerate(bns)}
    pairs: dict[int, int] = {}
    for node in calls:
        conv = modules[node.target]
        if id(conv) not in conv_index:
            continue
        readers = [u for u in node.users  # in the order the code runs them
                   if u.op == "call_module" and u.args == (node,) and not u.kwargs
                   and id(modules[u.target]) in bn_index]  # fmt: skip
        if not readers:
            continue
        if exclusive and (times_called[node.target] != 1 or len(node.users) != 1
                          or times_called[readers[0].target] != 1):  # fmt: skip
            continue
        pairs.setdefault(conv_index[id(conv)], bn_index[id(modules[readers[0].target])])
    return tuple(pairs.items())


@dataclass(frozen=True)
class FoldPlan:
    """How the stacked signals (conv order) map onto the MixBNs' stacked channels.

    ``omega_index``: for each MixBN channel, its column in the stacked signals, or the
    extra column of ones for a MixBN without a conv; ``None`` when the layers pair up one
    to one in order (ResNet, the small CNN), so no gather is needed."""

    pairs: tuple[tuple[int, int], ...]
    conv_channels: tuple[int, ...]
    bn_channels: tuple[int, ...]
    omega_index: tuple[int, ...] | None

    @property
    def unpaired_convs(self) -> tuple[int, ...]:
        paired = {c for c, _ in self.pairs}
        return tuple(i for i in range(len(self.conv_channels)) if i not in paired)


def make_plan(
    backbone: nn.Module, convs: Sequence[nn.Conv2d], mixbns: Sequence[MixBatchNorm2d]
) -> FoldPlan:
    pairs = conv_bn_pairs(backbone, convs, mixbns)
    conv_ch = tuple(c.out_channels for c in convs)
    bn_ch = tuple(b.bn_clean.num_features for b in mixbns)
    if len(conv_ch) == len(bn_ch) and pairs == tuple((i, i) for i in range(len(bn_ch))):
        return FoldPlan(pairs, conv_ch, bn_ch, None)
    starts = [sum(conv_ch[:i]) for i in range(len(conv_ch))]
    ones = sum(conv_ch)  # the column F.pad appends
    conv_of = {b: c for c, b in pairs}
    index: list[int] = []
    for b, ch in enumerate(bn_ch):
        c = conv_of.get(b)
        index += [ones] * ch if c is None else list(range(starts[c], starts[c] + ch))
    return FoldPlan(pairs, conv_ch, bn_ch, tuple(index))


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BN as a per-channel affine map: ``bn(h) == h * a + b`` (each of shape C)."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("a BN without running statistics has no fixed affine form")
    a = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        a = a * bn.weight
    b = -bn.running_mean * a
    if bn.bias is not None:
        b = b + bn.bias
    return a, b


def _terms(mixbns: Sequence[MixBatchNorm2d], which: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of every MixBN's ``which`` BN ("bn_clean" or "bn_adv"), side by side: constants
    of the exported graph (folded to initializers at export)."""
    pairs = [bn_affine(getattr(m, which)) for m in mixbns]
    return torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])


def fold(
    plan: FoldPlan,
    mixbns: Sequence[MixBatchNorm2d],
    omega: torch.Tensor,
    mix: torch.Tensor | str,
) -> tuple[list[torch.Tensor | None], list[tuple[torch.Tensor, torch.Tensor]]]:
    """What the folded forward hands the layers, from the stacked signals ``omega``
    (N x sum of conv channels) and the mix: an (N,) tensor (the soft blend, as the AW-Net
    graph always has it) or "clean" / "adv" (that BN alone: the static export's clean
    branch holds no adversarial constants). Returns each conv's signal (``None`` where
    omega moved into its MixBN's scale) and each MixBN's (scale, shift), N x C x 1 x 1
    (the shift 1 x C x 1 x 1 for a hard mix)."""
    if plan.omega_index is None:
        omega_bn = omega
    else:
        index = torch.tensor(plan.omega_index, device=omega.device)
        omega_bn = F.pad(omega, (0, 1), value=1.0).index_select(1, index)
    if isinstance(mix, str):
        a, b = _terms(mixbns, "bn_clean" if mix == MIX_CLEAN else "bn_adv")
        scale, shift = a * omega_bn, b[None, :]
    else:
        (a_c, b_c), (a_a, b_a) = _terms(mixbns, "bn_clean"), _terms(mixbns, "bn_adv")
        m = mix.to(omega.dtype)[:, None]
        scale = (a_c + m * (a_a - a_c)) * omega_bn
        shift = b_c + m * (b_a - b_c)
    scales = torch.split(scale[:, :, None, None], list(plan.bn_channels), dim=1)
    shifts = torch.split(shift[:, :, None, None], list(plan.bn_channels), dim=1)
    conv_signals: list[torch.Tensor | None] = [None] * len(plan.conv_channels)
    unpaired = plan.unpaired_convs
    if unpaired:
        per_conv = torch.split(omega, list(plan.conv_channels), dim=1)
        for c in unpaired:
            conv_signals[c] = per_conv[c]
    return conv_signals, list(zip(scales, shifts, strict=True))
