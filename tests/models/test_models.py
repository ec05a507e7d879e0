"""Every registered model: forward and backward in every MixBN mode, shapes, no NaN."""

from __future__ import annotations

import copy

import pytest
import torch

import models
from models import MIX_ADV, MIX_CLEAN, create_model, is_awnet, list_models

BIG = {"wrn", "wrn34_10", "wrn34_12", "wrn34_r"}


def _mark(name: str):
    base = name.removeprefix("awnet_")
    return pytest.param(name, marks=pytest.mark.slow) if base in BIG else name


def _finite_grads(model: torch.nn.Module) -> None:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads, "no gradient reached the parameters"
    for g in grads:
        assert torch.isfinite(g).all()


def _batch(model: torch.nn.Module, n: int = 3) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, *model.input_config.shape)


@pytest.mark.parametrize("name", [_mark(n) for n in list_models()])
def test_forward_backward_every_mode(name: str) -> None:
    model = create_model(name)
    k = model.input_config.num_classes
    x = _batch(model)
    y = torch.arange(x.shape[0]) % k
    if not is_awnet(model):
        modes = [("train", None), ("eval", None)]
    else:
        modes = [("train", MIX_CLEAN), ("train", MIX_ADV), ("eval", None), ("eval", MIX_CLEAN),
                 ("eval", MIX_ADV), ("eval", 0.3), ("eval", torch.tensor([0.0, 1.0, -1.0]))]  # fmt: skip
    for phase, mix in modes:
        model.train(phase == "train")
        model.zero_grad(set_to_none=True)
        if is_awnet(model):
            out = model.forward_all(x, mix)
            assert out.logits.shape == (3, k)
            assert out.type_logits.shape == (3, 2)
            assert out.p_adv.shape == out.mix.shape == (3,)
            assert ((out.p_adv >= 0) & (out.p_adv <= 1)).all()
            assert out.features.shape == (3, model.feature_dim)
            logits = out.logits
            loss = torch.nn.functional.cross_entropy(logits, y) + out.type_logits.sum() * 1e-3
        else:
            logits = model(x)
            assert logits.shape == (3, k)
            loss = torch.nn.functional.cross_entropy(logits, y)
        assert torch.isfinite(logits).all(), (name, phase, mix)
        loss.backward()
        _finite_grads(model)


@pytest.mark.parametrize("name", [n for n in list_models() if n.removeprefix("awnet_") not in BIG])
def test_input_config_and_registry(name: str) -> None:
    model = create_model(name)
    ic = model.input_config
    assert ic.pixel_range == (0.0, 1.0)
    assert len(ic.class_names) == ic.num_classes
    assert model.model_name == name
    custom = create_model(name, num_classes=7, channels=3, size=(32, 32)).eval()
    assert custom(torch.rand(2, 3, 32, 32)).shape == (2, 7)


def test_unknown_model_lists_choices() -> None:
    with pytest.raises(KeyError, match="awnet_smallcnn"):
        create_model("nope")


def test_wrn_per_stage_configuration() -> None:
    # WRN-34-R (Huang et al. 2021): channels 16/320/640/512, ~68.1M parameters
    m = create_model("wrn34_r")
    assert [b.conv2.out_channels for b in (m.blocks[0], m.blocks[5], m.blocks[10])] == [320, 640, 512]
    assert abs(sum(p.numel() for p in m.parameters()) / 1e6 - 68.1) < 0.1
    small = create_model("wrn", depths=(1, 1, 1), widths=(1, 2, 1))
    assert small(torch.rand(1, 3, 32, 32)).shape == (1, 10)


def test_pair_forward_routes_each_batch_through_its_bn() -> None:
    """Training by known type: one router pass over both batches, two backbone passes."""
    model = create_model("awnet_smallcnn").train()
    bn = model.mixbns[0]
    clean0, adv0 = bn.bn_clean.running_mean.clone(), bn.bn_adv.running_mean.clone()
    x, xa = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    out_c, out_a = model(x, x_adv=xa)
    assert out_c.logits.shape == out_a.logits.shape == (4, 10)
    assert out_c.mix.eq(0).all() and out_a.mix.eq(1).all()
    assert not torch.equal(bn.bn_clean.running_mean, clean0) and not torch.equal(bn.bn_adv.running_mean, adv0)
    (out_c.logits.sum() + out_a.logits.sum() + out_c.type_logits.sum()).backward()
    _finite_grads(model)


def test_soft_mix_refused_in_training_mode() -> None:
    model = create_model("awnet_smallcnn").train()
    with pytest.raises(RuntimeError, match="known type"):
        model(torch.rand(2, 1, 28, 28))


def test_mixbn_keeps_separate_statistics() -> None:
    model = create_model("awnet_smallcnn").train()
    bn = model.mixbns[0]
    clean0, adv0 = bn.bn_clean.running_mean.clone(), bn.bn_adv.running_mean.clone()
    model(torch.rand(4, 1, 28, 28), mix=MIX_CLEAN)
    assert not torch.equal(bn.bn_clean.running_mean, clean0)
    assert torch.equal(bn.bn_adv.running_mean, adv0)
    model(torch.rand(4, 1, 28, 28), mix=MIX_ADV)
    assert not torch.equal(bn.bn_adv.running_mean, adv0)


def _randomise_bns(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fresh_awnet_clean_branch_equals_static_backbone() -> None:
    """omega starts at 1, so a fresh AW-Net forced clean is exactly its static backbone."""
    aw = create_model("awnet_smallcnn").eval()
    _randomise_bns(aw)
    static = create_model("smallcnn").eval()
    sd = {}
    for k, v in aw.backbone.state_dict().items():
        if ".bn_adv." in k:
            continue
        sd[k.replace(".bn_clean.", ".")] = v
    static.load_state_dict(sd)
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(aw(x, mix=MIX_CLEAN), static(x), rtol=1e-5, atol=1e-5)


def test_per_sample_mix_matches_forced_modes() -> None:
    aw = create_model("awnet_smallcnn").eval()
    _randomise_bns(aw)
    x = torch.rand(4, 1, 28, 28)
    clean, adv = aw(x, mix=MIX_CLEAN), aw(x, mix=MIX_ADV)
    assert not torch.allclose(clean, adv)
    out = aw.forward_all(x, torch.tensor([0.0, 1.0, -1.0, 0.5]))
    torch.testing.assert_close(out.logits[0], clean[0])
    torch.testing.assert_close(out.logits[1], adv[1])
    assert out.mix[2] == out.p_adv[2]  # negative override: the router decides
    assert out.mix[3] == 0.5
    router = aw.forward_all(x)
    torch.testing.assert_close(router.mix, router.p_adv)


def test_router_mode_is_differentiable_end_to_end() -> None:
    """Adaptive attacks need gradients through the router, signals and MixBN."""
    aw = create_model("awnet_smallcnn").eval()
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    out = aw.forward_all(x)
    (out.logits.sum() + out.p_adv.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert aw.router.type_head[0].weight.grad is not None


def test_deepcopy_keeps_layer_links() -> None:
    aw = create_model("awnet_smallcnn")
    twin = copy.deepcopy(aw)
    assert all(a is not b for a, b in zip(aw.convs, twin.convs, strict=True))
    assert set(map(id, twin.convs)) <= set(map(id, twin.modules()))


def test_public_api() -> None:
    assert "awnet_smallcnn" in models.list_models()
    assert models.list_models("wrn34")
