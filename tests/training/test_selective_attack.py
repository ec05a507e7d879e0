"""The threshold-aware adaptive attacks on the shipped AW-Net: selective PGD and the router
logit-margin evasion (training.attacks.selective, training.attacks.losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.paths import SHIPPED_CHECKPOINT, shipped_checkpoint_available
from training.attacks import PGD, SelectivePGD

pytestmark = pytest.mark.skipif(not shipped_checkpoint_available(), reason="no shipped checkpoint")
EPS = 0.3


@pytest.fixture(scope="module")
def shipped():
    from training.checkpoint import load_model
    from training.data import build_dataset
    from training.evaluation.runner import router_scores
    from training.export.calibrate import threshold_for_fpr

    model, _ = load_model(SHIPPED_CHECKPOINT, "cpu")
    model.eval()
    xv, _ = build_dataset("mnist5k", "val").tensors()
    threshold = threshold_for_fpr(router_scores(model, xv), 0.01)  # the pure 1 %-FPR rule
    x, y = build_dataset("mnist5k", "test").tensors()
    return model, threshold, x[:100], y[:100]


@torch.no_grad()
def _judge(model, x, y, threshold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = model.forward_all(x, mix="router")
    wrong = (out.logits.argmax(1) != y).numpy()
    return wrong, (out.p_adv >= threshold).numpy(), out.p_adv.numpy()


def test_selective_pgd_stays_in_the_threat_model_and_restores_modes(shipped) -> None:
    model, threshold, x, y = shipped
    x0 = x.clone()
    model.train()
    x_adv = SelectivePGD(model, EPS, threshold, steps=5)(x[:8], y[:8])
    assert model.training and torch.equal(x, x0)
    assert (x_adv - x[:8]).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()


def test_margin_evasion_pushes_p_adv_lower_than_log_p_clean(shipped) -> None:
    """log p_clean saturates near p_adv = 0; the margin keeps pulling (why the suite has both)."""
    model, threshold, x, y = shipped
    torch.manual_seed(0)
    logp = PGD(model, eps=EPS, steps=20, loss="ce-evade-router", loss_kwargs={"weight": 1.0})(x, y)
    margin = PGD(model, eps=EPS, steps=20, loss="ce-evade-router-margin", loss_kwargs={"weight": 1.0})(x, y)
    p_logp, p_margin = _judge(model, logp, y, threshold)[2], _judge(model, margin, y, threshold)[2]
    assert np.median(p_margin) < 0.1 * np.median(p_logp)


def test_threshold_aware_attacks_miss_more_than_plain_pgd(shipped) -> None:
    """Against the router at its threshold, selective PGD and the margin evasion leave more
    digits misclassified and unflagged than PGD-CE with the same steps (which it flags)."""
    model, threshold, x, y = shipped
    torch.manual_seed(0)
    plain = PGD(model, eps=EPS, steps=40, loss="ce")(x, y)
    selective = SelectivePGD(model, EPS, threshold, steps=40)(x, y)
    margin = PGD(model, eps=EPS, steps=40, loss="ce-evade-router-margin", loss_kwargs={"weight": 0.1})(x, y)
    missed = {}
    for name, xa in (("plain", plain), ("selective", selective), ("margin", margin)):
        wrong, flagged, _ = _judge(model, xa, y, threshold)
        missed[name] = int((wrong & ~flagged).sum())
    assert missed["selective"] > missed["plain"] and missed["margin"] > missed["plain"], missed


def test_selective_pgd_bad_settings(shipped) -> None:
    model = shipped[0]
    with pytest.raises(ValueError):
        SelectivePGD(model, EPS, 0.5, loss="kl")
    with pytest.raises(ValueError):
        SelectivePGD(model, EPS, 0.5, steps=0)
