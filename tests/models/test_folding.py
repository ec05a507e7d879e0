"""The folded eval forward (``AWNet.forward_folded``, ``models.folding``): the export's graph.

It must equal the layer-by-layer eval forward (``forward_all``) for every registered AW-Net
in every mix, fold exactly the conv-MixBN pairs the backbone's code has, and never run in
training mode (where the two BNs must stay separate passes).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import AWNet, create_model, list_models
from models.backbones.base import Backbone
from models.config import digits_config
from models.folding import conv_bn_pairs
from models.layers import AWNET
from tests.support.checkpoints import perturb

# the WideResNets' structure (pre-activation blocks), not their size, is what the fold reads
SMALL_KW = {"depths": (1, 1, 1), "widths": (1, 1, 1)}
MIXES = ["router", "clean", "adv", 0.3, torch.tensor([0.0, 1.0, -1.0, 0.25])]


def _model(name: str) -> AWNet:
    model = create_model(name, size=(8, 8), **(SMALL_KW if "wrn" in name else {}))
    perturb(model)  # the two BNs and the signals differ: the comparison checks something
    return model.eval()


def _assert_same(model: AWNet, x: torch.Tensor) -> None:
    with torch.no_grad():
        for mix in MIXES:
            ref, got = model.forward_all(x, mix), model.forward_folded(x, mix)
            for field in ("logits", "type_logits", "p_adv", "mix", "features"):
                torch.testing.assert_close(
                    getattr(got, field),
                    getattr(ref, field),
                    rtol=1e-4,
                    atol=1e-5,
                    msg=f"{field} at {mix}",
                )


@pytest.mark.parametrize("name", list_models("awnet_"))
def test_folded_forward_equals_the_unfolded_eval_forward(name: str) -> None:
    model = _model(name)
    torch.manual_seed(0)
    _assert_same(model, torch.rand(4, *model.input_config.shape))
    assert all(c.signal is None for c in model.convs)
    assert all(b.mix is None and b.affine is None for b in model.mixbns)


@pytest.mark.parametrize("name", list_models("awnet_"))
def test_fold_pairs_every_conv_that_feeds_only_its_bn(name: str) -> None:
    model = _model(name)
    plan = model.fold_plan()
    if "wrn" in name:  # pre-activation: conv1 -> bn2 pairs; conv2 and the shortcut feed a sum
        assert plan.pairs and plan.unpaired_convs and plan.omega_index is not None
    else:  # conv -> MixBN everywhere (ResNet's shortcut too)
        assert (
            plan.pairs == tuple((i, i) for i in range(len(model.convs))) and not plan.unpaired_convs
        )
        assert plan.omega_index is None


def test_folded_forward_refuses_training_mode() -> None:
    model = _model("awnet_smallcnn").train()
    with pytest.raises(RuntimeError, match="eval"):
        model.forward_folded(torch.rand(2, *model.input_config.shape), "clean")


class _Shared(Backbone):
    """A conv whose output feeds its MixBN *and* the skip, then one fx cannot trace."""

    def __init__(self, data_dependent: bool = False) -> None:
        ic = digits_config().replace(size=(8, 8))
        super().__init__(ic)
        self.conv1, self.bn1 = AWNET.conv(1, 4, 3, padding=1), AWNET.norm(4)
        self.conv2, self.bn2 = AWNET.conv(4, 4, 3, padding=1), AWNET.norm(4)
        self.fc, self.feature_dim, self.data_dependent = (
            nn.Linear(4, ic.num_classes),
            4,
            data_dependent,
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(self.normalize(x))))
        c = self.conv2(h)
        out = self.bn2(c) + c  # conv2 also feeds the sum: its omega must stay on the conv
        if self.data_dependent and bool(out.sum() > 0):  # control flow torch.fx cannot trace
            out = out * 1.0
        return F.adaptive_avg_pool2d(F.relu(out), 1).flatten(1)


@pytest.mark.parametrize("data_dependent", [False, True], ids=["shared-output", "untraceable"])
def test_fold_leaves_shared_outputs_and_untraceable_backbones_correct(data_dependent: bool) -> None:
    model = AWNet(_Shared(data_dependent))
    perturb(model)
    model.eval()
    plan = model.fold_plan()
    assert plan.pairs == (() if data_dependent else ((0, 0),))
    assert 1 in plan.unpaired_convs
    _assert_same(model, torch.rand(4, 1, 8, 8))


def test_the_weights_analysis_reads_the_same_pairs_without_exclusivity() -> None:
    """``exclusive=False`` (``training.analysis.weights``): conv2 feeds bn2 *and* the sum, so
    the fold leaves it, but bn2 still reads its output directly (an effective filter)."""
    model = AWNet(_Shared())
    assert conv_bn_pairs(model.backbone, model.convs, model.mixbns) == ((0, 0),)
    assert conv_bn_pairs(model.backbone, model.convs, model.mixbns, exclusive=False) == ((0, 0), (1, 1))
