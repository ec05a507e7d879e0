"""Losses an attack maximises. Each takes (model, x_adv, y, ref) and returns a scalar."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from models import is_awnet


def _forward(model: nn.Module, x: torch.Tensor):
    if is_awnet(model):
        return model.forward_all(x)
    return None


def cw_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample: the true class's logit minus the best other one (negative = misclassified)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return true - other


def router_margin(type_logits: torch.Tensor) -> torch.Tensor:
    """Per sample: the router's type logit for "clean" minus that for "adversarial"."""
    return type_logits[:, 0] - type_logits[:, 1]


def ce_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def cw_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None, kappa: float = 0.0
) -> torch.Tensor:
    """Carlini-Wagner margin, -max(z_y - max_{k != y} z_k + kappa, 0) (CW-inf with PGD).

    The clamp sits on the misclassified side: a sample keeps its gradient however
    confidently it is classified, and saturates only once it is misclassified by margin
    ``kappa``. (The authors of RAT evaluate with kappa 50: ``loss_kwargs={"kappa": 50}``.)
    """
    return -(cw_margin(model(x), y) + kappa).clamp(min=0.0).mean()


def kl_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
    """TRADES inner maximisation: KL(p(x) || p(x_adv)) with p(x) fixed (``ref``)."""
    assert ref is not None
    return F.kl_div(F.log_softmax(model(x), dim=1), ref, reduction="batchmean")


def ce_evade_router_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None,
    weight: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Adaptive attack on AW-Net: raise the classification loss while pushing the router's
    p_adv toward "clean" (maximise CE + weight * log p_clean). ``weight`` is the attacker's
    lambda, one for the batch or one per sample (adaptive router training mixes them)."""
    out = _forward(model, x)
    if out is None:
        return ce_loss(model, x, y, ref)
    log_p_clean = F.log_softmax(out.type_logits, dim=1)[:, 0]
    ce = F.cross_entropy(out.logits, y, reduction="none")
    return (ce + weight * log_p_clean).mean()


def ce_evade_router_margin_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None,
    weight: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """Adaptive attack on AW-Net against a low threshold: CE + weight * the router's logit
    margin toward "clean" (type logit clean minus adversarial). log p_clean saturates once
    p_adv is small, so its gradient vanishes exactly where a threshold calibrated at 1 %
    clean FPR (p_adv ~1e-4) sits; the margin's does not."""
    out = _forward(model, x)
    if out is None:
        return ce_loss(model, x, y, ref)
    ce = F.cross_entropy(out.logits, y, reduction="none")
    return (ce + weight * router_margin(out.type_logits)).mean()


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

ATTACK_LOSSES: dict[str, LossFn] = {
    "ce": ce_loss,
    "cw": cw_loss,
    "kl": kl_loss,
    "ce-evade-router": ce_evade_router_loss,
    "ce-evade-router-margin": ce_evade_router_margin_loss,
}
