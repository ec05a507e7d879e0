"""Methods for static models: standard training, PGD-AT (Madry) and TRADES (Zhang)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import unwrap
from training.methods.base import Method


def _features_and_logits(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward through (possibly DDP-wrapped) model returning (features, logits)."""
    bare = unwrap(model)
    if model is bare:
        feats = bare.forward_features(x)
        return feats, bare.forward_head(feats)
    # under DDP the forward must go through the wrapper: features come from a hook
    store: dict[str, torch.Tensor] = {}
    handle = bare.head.register_forward_hook(lambda m, inp, out: store.__setitem__("f", inp[0]))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return store["f"], logits


class Standard(Method):
    """Cross-entropy on clean data (the clean teacher)."""

    name = "standard"

    def loss(self, model, x, y):
        ce = F.cross_entropy(model(x), y)
        return ce, {"ce": ce.item()}


class PGDAT(Method):
    """Madry et al., ICLR 2018: cross-entropy on PGD examples."""

    name = "pgd-at"

    def loss(self, model, x, y):
        x_adv = self.pgd(model)(x, y)
        if self.rat is None:
            ce = F.cross_entropy(model(x_adv), y)
            return ce, {"ce_adv": ce.item()}
        fc, lc = _features_and_logits(model, x)
        fa, la = _features_and_logits(model, x_adv)
        ce = F.cross_entropy(la, y)
        f1, f2 = self.rat.terms(lc, la, fc, fa, y)
        a = self.rat.alpha
        total = (1 - a) * ce + a * f1 + (a / 2) * f2
        return total, {"ce_adv": ce.item(), "rat_f1": f1.item(), "rat_f2": f2.item()}


class TRADES(Method):
    """Zhang et al., ICML 2019: CE(clean) + beta * KL(p(x) || p(x_adv)) (the robust teacher)."""

    name = "trades"

    def loss(self, model, x, y):
        x_adv = self.pgd(model, loss="kl")(x, y)
        fc, lc = _features_and_logits(model, x)
        fa, la = _features_and_logits(model, x_adv)
        ce = F.cross_entropy(lc, y)
        kl = F.kl_div(F.log_softmax(la, 1), F.softmax(lc, 1), reduction="batchmean")
        beta = self.cfg.trades_beta
        if self.rat is None:
            return ce + beta * kl, {"ce": ce.item(), "kl": kl.item()}
        f1, f2 = self.rat.terms(lc, la, fc, fa, y)
        a = self.rat.alpha
        total = (1 - a) * ce + beta * kl + a * f1 + (a / 2) * f2
        return total, {"ce": ce.item(), "kl": kl.item(), "rat_f1": f1.item(), "rat_f2": f2.item()}
