"""Attacks: budget, range, effect, mode restoration, untouched inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import MIX_ADV, create_model
from training.attacks import FGSM, PGD


@pytest.fixture(scope="module")
def fixed_model() -> torch.nn.Module:
    """A static small CNN trained a few steps on the embedded digits (fixed weights)."""
    from training.data import build_dataset

    torch.manual_seed(0)
    x, y = build_dataset("mnist5k", "train").tensors()
    model = create_model("smallcnn")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for i in range(30):
        xb, yb = x[i * 64:(i + 1) * 64], y[i * 64:(i + 1) * 64]
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    from training.data import build_dataset

    x, y = build_dataset("mnist5k", "test").tensors()
    return x[:64], y[:64]


@pytest.mark.parametrize("make", [
    lambda m: PGD(m, eps=0.3, steps=10),
    lambda m: PGD(m, eps=0.1, steps=5, loss="cw"),
    lambda m: PGD(m, eps=0.3, steps=5, loss="kl"),
    lambda m: FGSM(m, eps=0.3),
])  # fmt: skip
def test_attack_within_budget_and_range(fixed_model, batch, make) -> None:
    x, y = batch
    x0 = x.clone()
    x_adv = make(fixed_model)(x, y)
    assert torch.equal(x, x0), "the attack mutated its input"
    eps = make(fixed_model).eps
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad


def test_pgd_increases_loss_and_beats_fgsm(fixed_model, batch) -> None:
    x, y = batch
    with torch.no_grad():
        clean = F.cross_entropy(fixed_model(x), y).item()
    x_pgd = PGD(fixed_model, eps=0.3, steps=20)(x, y)
    x_fgsm = FGSM(fixed_model, eps=0.3)(x, y)
    with torch.no_grad():
        pgd = F.cross_entropy(fixed_model(x_pgd), y).item()
        fgsm = F.cross_entropy(fixed_model(x_fgsm), y).item()
        acc_clean = (fixed_model(x).argmax(1) == y).float().mean().item()
        acc_pgd = (fixed_model(x_pgd).argmax(1) == y).float().mean().item()
    assert pgd > clean and fgsm > clean
    assert acc_pgd < acc_clean


def test_attacks_restore_modes() -> None:
    model = create_model("awnet_smallcnn")
    model.train()
    model.router.eval()  # a per-module flag that must come back as it was
    model.mix_mode = MIX_ADV
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    seen = {}

    class Spy(PGD):
        def perturb(self, x, y):
            seen["training"] = self.model.training
            seen["mix"] = self.model.mix_mode
            return super().perturb(x, y)

    Spy(model, eps=0.1, steps=2, mix="clean")(x, y)
    assert seen == {"training": False, "mix": "clean"}
    assert model.training and not model.router.training
    assert model.mix_mode == MIX_ADV
    # and on error too
    class Boom(PGD):
        def perturb(self, x, y):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        Boom(model, eps=0.1, steps=1)(x, y)
    assert model.training and model.mix_mode == MIX_ADV


def test_attack_does_not_touch_parameter_grads(fixed_model, batch) -> None:
    x, y = batch
    fixed_model.zero_grad(set_to_none=True)
    PGD(fixed_model, eps=0.3, steps=3)(x, y)
    assert all(p.grad is None for p in fixed_model.parameters())


def test_adaptive_router_attack_runs_on_awnet() -> None:
    model = create_model("awnet_smallcnn").eval()
    x, y = torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    x_adv = PGD(model, eps=0.1, steps=3, loss="ce-evade-router")(x, y)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6


def test_bad_settings() -> None:
    m = create_model("smallcnn")
    with pytest.raises(ValueError):
        PGD(m, eps=-1)
    with pytest.raises(ValueError):
        PGD(m, eps=0.1, loss="nope")
