"""--router-adaptive: the training attack mixes plain PGD with router-evasion PGD per sample,
through the soft router or the forced clean branch, inside the threat model."""

from __future__ import annotations

import torch

from models import create_model
from training.config import TrainConfig
from training.methods import AWNetMethod


def _method(adaptive: bool) -> tuple[AWNetMethod, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model("awnet_smallcnn").train()
    cfg = TrainConfig(method="awnet", teacher_free=True, attack_steps=3, router_adaptive=adaptive).resolve(0.3, False)
    return AWNetMethod(cfg, model, torch.device("cpu")), model


def test_adaptive_examples_stay_in_the_threat_model_and_differ_from_plain_pgd(monkeypatch) -> None:
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    seen = {}
    from training.attacks import pgd as pgd_module

    original = pgd_module.PGD.perturb

    def spy(self, xb, yb):
        seen.update(loss=self.loss, kwargs=self.loss_kwargs, mix=self.mix)
        return original(self, xb, yb)

    monkeypatch.setattr(pgd_module.PGD, "perturb", spy)
    method, model = _method(True)
    torch.manual_seed(1)
    xa = method.craft(model, x, y)
    assert seen["loss"] == "ce-evade-router"
    lam, mix = seen["kwargs"]["weight"], seen["mix"]
    assert lam.shape == (16,) and mix.shape == (16,)
    assert set(mix.tolist()) <= {0.0, -1.0} and bool((mix[lam == 0] == -1.0).all())  # lambda 0: plain, via router
    assert float((xa - x).abs().max()) <= 0.3 + 1e-6 and xa.min() >= 0 and xa.max() <= 1
    assert model.training and model.mix_mode == "router"  # modes restored
    plain, model_p = _method(False)
    torch.manual_seed(1)
    assert not torch.equal(plain.craft(model_p, x, y), xa)


def test_fooled_label_calls_adversarial_only_what_the_clean_branch_misclassifies(monkeypatch) -> None:
    """--evasion-label fooled: plain PGD examples keep weight 1; an evasion example weighs 1
    in the type loss exactly when the clean branch misclassifies it, else 0."""
    from models.layers import MIX_CLEAN
    from training.attacks import pgd as pgd_module
    from training.attacks.base import preserved_modes

    seen = {}
    original = pgd_module.PGD.perturb

    def spy(self, xb, yb):
        seen.update(lam=self.loss_kwargs["weight"])
        return original(self, xb, yb)

    monkeypatch.setattr(pgd_module.PGD, "perturb", spy)
    torch.manual_seed(0)
    model = create_model("awnet_smallcnn").train()
    cfg = TrainConfig(method="awnet", teacher_free=True, attack_steps=3, router_adaptive=True,
                      evasion_loss="margin", evasion_label="fooled").resolve(0.3, False)  # fmt: skip
    method = AWNetMethod(cfg, model, torch.device("cpu"))
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    xa, weight = method.craft_weighted(model, x, y)
    lam = seen["lam"]
    with preserved_modes(model, mix=MIX_CLEAN), torch.no_grad():
        fooled = model(xa).argmax(1) != y
    assert bool((weight[lam == 0] == 1).all())
    assert torch.equal(weight[lam > 0], fooled[lam > 0].float())
    assert 0 < int((lam > 0).sum()) < 64  # both kinds drawn
    assert model.training and model.mix_mode == "router"  # modes restored
    loss, figures = method.loss(model, x, y)
    assert torch.isfinite(loss) and 0.0 <= figures["type_adv_share"] <= 1.0
