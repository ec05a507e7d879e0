"""What a model is (``models.unwrap``, ``models.is_awnet``), the AW-Net side channel, and
the backbone interface the AW-Net wrapper reads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from models import (
    AWNet,
    MixBatchNorm2d,
    WeightVariedConv2d,
    create_model,
    is_awnet,
    is_awnet_name,
    list_models,
    unwrap,
)
from models.backbones import Backbone
from tests.support.paths import SHIPPED_CHECKPOINT

CHECKPOINT = SHIPPED_CHECKPOINT
# the WideResNets at their registered size take seconds each to build: same class, tiny widths
SMALL_KW = {"depths": (1, 1, 1), "widths": (1, 1, 1)}


def _build(name: str) -> nn.Module:
    kw = SMALL_KW if "wrn" in name else {}
    return create_model(name, **kw)


class Wrapper(nn.Module):
    """Holds the model as ``.module``, like DistributedDataParallel (which needs a process group)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def _side_channel_clear(model: AWNet) -> bool:
    return (
        all(c.signal is None for c in model.convs)
        and all(b.mix is None for b in model.mixbns)
        and not model._side_channel_active
    )


def _awnet(seed: int = 0) -> AWNet:
    """A seed-fixed AW-Net whose router is off its zero init (signals differ from 1)."""
    torch.manual_seed(seed)
    model = create_model("awnet_smallcnn")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _x(model: nn.Module, n: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, *model.input_config.shape, generator=g)


# ---- is_awnet / unwrap ---------------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_is_awnet_follows_the_registry(name: str) -> None:
    model = _build(name)
    assert is_awnet(model) is is_awnet_name(name) is name.startswith(models.registry.AWNET_PREFIX)
    assert is_awnet(model) is isinstance(model, AWNet)
    if is_awnet(model):
        assert not is_awnet(model.backbone)  # the bare backbone is a static model
    for wrapped in (Wrapper(model), Wrapper(Wrapper(model)), nn.DataParallel(model)):
        assert unwrap(wrapped) is model
        assert is_awnet(wrapped) is is_awnet_name(name)


def test_unwrap_strips_torch_compile() -> None:
    model = create_model("awnet_smallcnn")
    compiled = torch.compile(model)  # lazy: nothing is compiled until it is called
    assert compiled is not model
    assert unwrap(compiled) is model and is_awnet(compiled)
    assert unwrap(Wrapper(compiled)) is model and unwrap(torch.compile(Wrapper(model))) is model
    static = create_model("smallcnn")
    assert unwrap(torch.compile(static)) is static and not is_awnet(torch.compile(static))


def test_unwrap_leaves_bare_models_and_views_alone() -> None:
    model = create_model("awnet_smallcnn")
    assert unwrap(model) is model
    assert unwrap(model.backbone) is model.backbone  # no ``module`` submodule: not a wrapper

    class View(nn.Module):  # e.g. the static export view: holds the model as ``.model``
        def __init__(self, m: nn.Module) -> None:
            super().__init__()
            self.model = m

    assert unwrap(View(model)).__class__ is View and not is_awnet(View(model))


def test_one_unwrap() -> None:
    import training.attacks

    assert not hasattr(training.attacks, "unwrap")  # one owner: models.unwrap
    assert "is_awnet" in models.__all__ and "unwrap" in models.__all__


# ---- the side channel ----------------------------------------------------------------------


def test_side_channel_is_set_during_and_cleared_after_a_forward() -> None:
    model = _awnet()
    seen: list[bool] = []
    conv = model.convs[0]
    handle = conv.register_forward_pre_hook(
        lambda m, inp: seen.append(m.signal is not None and model.mixbns[0].mix is not None)
    )
    try:
        model(_x(model))
        model.train()
        model.forward_pair(_x(model), _x(model, seed=2))
    finally:
        handle.remove()
    assert seen == [True, True, True]  # one forward, then the clean and adversarial halves
    assert _side_channel_clear(model)


def test_side_channel_is_cleared_when_the_forward_raises() -> None:
    model = _awnet()
    x = _x(model)

    def boom(*_):
        raise ValueError("boom in the head")

    handle = model.backbone.head.register_forward_pre_hook(boom)
    with pytest.raises(ValueError, match="boom"):
        model(x)
    handle.remove()
    assert _side_channel_clear(model)
    # and when setting it up fails half-way (one signal per conv is required)
    with pytest.raises(ValueError), model._side_channel([], "clean"):
        pass
    assert _side_channel_clear(model)
    assert torch.isfinite(model(x)).all()  # the model still works


def test_side_channel_is_not_reentrant() -> None:
    model = _awnet()
    x = _x(model)
    signals = model.signals(x)
    with model._side_channel(signals, "clean"):
        with (
            pytest.raises(RuntimeError, match="not reentrant"),
            model._side_channel(signals, "adv"),
        ):
            pass
        # the failed inner entry left the active channel as it was
        assert all(c.signal is s for c, s in zip(model.convs, signals, strict=True))
        assert all(b.mix == "clean" for b in model.mixbns)
    assert _side_channel_clear(model)

    # a forward of the same model from inside its forward (here: a hook) is refused
    handle = model.convs[1].register_forward_hook(lambda m, inp, out: model(x))
    with pytest.raises(RuntimeError, match="not reentrant"):
        model(x)
    handle.remove()
    assert _side_channel_clear(model)


def test_the_forward_documents_the_side_channel() -> None:
    doc = AWNet._side_channel.__doc__ or ""
    assert "not reentrant" in doc.lower().replace("\n", " ")
    assert "RuntimeError" in doc


# ---- behaviour unchanged: the forward equals the side channel set by hand -----------------


def _reference_forward_all(model: AWNet, x: torch.Tensor, mix) -> tuple[torch.Tensor, torch.Tensor]:
    """The AW-Net forward written out: router, then the layers' signal / mix set by hand."""
    type_logits, signals = model.router(x)
    p_adv = torch.softmax(type_logits, dim=1)[:, 1]
    if isinstance(mix, str):
        bn_mix = {"router": p_adv}.get(mix, mix)
    elif isinstance(mix, float):
        bn_mix = torch.full_like(p_adv, mix)
    else:
        bn_mix = torch.where(mix >= 0, mix.clamp(max=1.0), p_adv)
    convs = [m for m in model.backbone.modules() if isinstance(m, WeightVariedConv2d)]
    bns = [m for m in model.backbone.modules() if isinstance(m, MixBatchNorm2d)]
    for c, s in zip(convs, signals, strict=True):
        c.signal = s
    for b in bns:
        b.mix = bn_mix
    try:
        features = model.backbone.forward_features(x)
        logits = model.backbone.fc(features)
    finally:
        for c in convs:
            c.signal = None
        for b in bns:
            b.mix = None
    return logits, p_adv


def _models_to_compare() -> list[tuple[str, AWNet]]:
    out = [("seeded", _awnet())]
    if CHECKPOINT.is_file():
        from training.checkpoint import load_model

        out.append(("checkpoint", load_model(CHECKPOINT)[0]))
    return out


@pytest.mark.parametrize("which", ["seeded", "checkpoint"])
def test_forward_unchanged(which: str) -> None:
    found = dict(_models_to_compare())
    if which not in found:
        pytest.skip(f"{CHECKPOINT} is not there")
    model = found[which].eval()
    x = _x(model, n=5)
    mixes = ["router", "clean", "adv", 0.3, torch.tensor([0.0, 1.0, -1.0, 0.5, -1.0])]
    with torch.no_grad():
        for mix in mixes:
            out = model.forward_all(x, mix)
            logits, p_adv = _reference_forward_all(model, x, mix)
            assert torch.equal(out.logits, logits), mix
            assert torch.equal(out.p_adv, p_adv), mix
        assert torch.equal(model(x), model.forward_all(x, "router").logits)  # default mix_mode
        assert torch.equal(Wrapper(model)(x), model(x))
    assert _side_channel_clear(model)


# ---- the backbone interface ----------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_models() if not is_awnet_name(n)])
def test_backbone_declares_its_head(name: str) -> None:
    for model in (_build(name), _build("awnet_" + name).backbone):
        assert isinstance(model, Backbone)
        assert model.head is model.fc and isinstance(model.head, nn.Linear)
        assert model.head.in_features == model.feature_dim
        assert model.head.out_features == model.num_classes
        f = torch.randn(2, model.feature_dim)
        assert torch.equal(model.forward_head(f), model.head(f))


def test_awnet_needs_a_backbone() -> None:
    with pytest.raises(TypeError, match="Backbone"):
        AWNet(nn.Sequential(nn.Conv2d(1, 4, 3)))  # type: ignore[arg-type]


def test_features_through_a_wrapper_come_from_the_declared_head() -> None:
    """RAT's static methods read the features bare, or through a wrapper by a hook on ``head``."""
    from training.methods.static import _features_and_logits

    torch.manual_seed(0)
    model = create_model("smallcnn").eval()
    x = _x(model)
    with torch.no_grad():
        f_bare, l_bare = _features_and_logits(model, x)
        f_wrapped, l_wrapped = _features_and_logits(nn.DataParallel(model), x)
    assert f_bare.shape == (4, model.feature_dim)
    assert torch.equal(f_bare, f_wrapped) and torch.equal(l_bare, l_wrapped)
    assert not model.head._forward_hooks  # the hook is removed again
