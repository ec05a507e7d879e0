"""The AW-Net recipe (Wei, Zhao, Li; TPAMI 2024): adversarial distillation into the two
MixBN branches, the router's type loss, and MTARD's adaptive loss balance."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.attacks import unwrap
from training.config import TrainConfig
from training.methods.base import Method

CLEAN, ADV = 0, 1


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher || student) at temperature t (scaled by t^2, Hinton et al.)."""
    return F.kl_div(
        F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean"
    ) * (t * t)


class AWNetMethod(Method):
    """total = w_nat * L_nat + w_adv * L_adv + lambda * L_type.

    - L_nat = KL(clean teacher(x) || student(x) through the clean BN)
    - L_adv = KL(robust teacher(x_adv) || student(x_adv) through the adversarial BN)
    - L_type = CE(type head(x), clean) + CE(type head(x_adv), adversarial)
    - x_adv: PGD on the student itself (eval mode, router in soft mode)
    - the router sees x and x_adv in one batch, so its BN statistics in training match
      the mixed running statistics it uses at inference (with separate batches the type
      head learns on per-type normalised features and inverts at inference)
    - w_nat moves by ``balance_rate`` toward r_nat / (r_nat + r_adv), r = loss / initial
      loss (MTARD); w_adv = 1 - w_nat.
    With ``teacher_free`` the two KL terms become cross-entropies on the labels.
    """

    name = "awnet"

    def __init__(self, cfg: TrainConfig, model: nn.Module, device: torch.device, teachers=None) -> None:
        super().__init__(cfg, model, device)
        if not getattr(unwrap(model), "is_awnet", False):
            raise ValueError("the awnet method needs an AW-Net model")
        self.teachers = teachers  # (clean, robust) or None
        self.w_nat = 0.5
        self.init_losses: tuple[float, float] | None = None

    def _balance(self, l_nat: float, l_adv: float) -> None:
        if self.init_losses is None:
            self.init_losses = (max(l_nat, 1e-8), max(l_adv, 1e-8))
            return
        r_nat = l_nat / self.init_losses[0]
        r_adv = l_adv / self.init_losses[1]
        target = r_nat / max(r_nat + r_adv, 1e-12)
        self.w_nat = self.w_nat - self.cfg.balance_rate * (self.w_nat - target)

    def loss(self, model, x, y):
        x_adv = self.pgd(model)(x, y)
        out_c, out_a = model(x, x_adv=x_adv)
        t = self.cfg.kd_temperature
        if self.teachers is None:
            l_nat = F.cross_entropy(out_c.logits, y)
            l_adv = F.cross_entropy(out_a.logits, y)
        else:
            clean_t, robust_t = self.teachers
            with torch.no_grad():
                tc = clean_t(x)
                ta = robust_t(x_adv)
            l_nat = kd_loss(out_c.logits, tc, t)
            l_adv = kd_loss(out_a.logits, ta, t)
        n = x.shape[0]
        l_type = F.cross_entropy(out_c.type_logits, torch.full((n,), CLEAN, device=x.device)) + F.cross_entropy(
            out_a.type_logits, torch.full((n,), ADV, device=x.device)
        )
        w_nat, w_adv = self.w_nat, 1.0 - self.w_nat
        main = w_nat * l_nat + w_adv * l_adv
        figures: dict[str, float] = {}
        if self.rat is not None:
            f1, f2 = self.rat.terms(out_c.logits, out_a.logits, out_c.features, out_a.features, y)
            a = self.rat.alpha
            main = (1 - a) * main + a * f1 + (a / 2) * f2
            figures.update(rat_f1=f1.item(), rat_f2=f2.item())
        total = main + self.cfg.type_loss_weight * l_type
        with torch.no_grad():
            router_acc = 0.5 * (
                (out_c.type_logits.argmax(1) == CLEAN).float().mean() + (out_a.type_logits.argmax(1) == ADV).float().mean()
            )
        figures.update(
            l_nat=l_nat.item(), l_adv=l_adv.item(), l_type=l_type.item(), w_nat=w_nat, router_acc=router_acc.item()
        )
        self._balance(l_nat.item(), l_adv.item())
        return total, figures

    def state_dict(self) -> dict[str, Any]:
        return {"w_nat": self.w_nat, "init_losses": self.init_losses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_nat = float(state.get("w_nat", 0.5))
        init = state.get("init_losses")
        self.init_losses = tuple(init) if init is not None else None
