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
