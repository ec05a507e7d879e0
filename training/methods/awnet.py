"""The AW-Net recipe (Wei, Zhao, Li; TPAMI 2024): adversarial distillation into the two
MixBN branches, the router's type loss, and MTARD's adaptive loss balance."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models import is_awnet, unwrap
from models.layers import MIX_CLEAN
from training.attacks.base import preserved_modes
from training.config import KD_REDUCTIONS, TrainConfig
from training.distributed import mean_over_ranks
from training.methods.base import Method

CLEAN, ADV = 0, 1


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float, reduction: str = "mtard"
) -> torch.Tensor:
    """KL(teacher || student) at temperature t (scaled by t^2, Hinton et al.).

    ``reduction``: ``"mtard"`` averages the element-wise KL over batch x classes, as
    MTARD's code does (``torch.mean`` of its per-element KL), i.e. the per-sample KL / K;
    ``"batchmean"`` is the per-sample KL averaged over the batch (K times larger, so the
    type loss weighs K times less against it).
    """
    log_q = F.log_softmax(student_logits / t, 1)
    kl = F.kl_div(log_q, F.softmax(teacher_logits / t, 1), reduction="sum")
    if reduction == "mtard":
        kl = kl / log_q.numel()
    elif reduction == "batchmean":
        kl = kl / log_q.shape[0]
    else:
        raise ValueError(f"unknown kd reduction {reduction!r}; choose from {', '.join(KD_REDUCTIONS)}")
    return kl * (t * t)


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
      loss, before the step's total is formed (MTARD); w_adv = 1 - w_nat. The rate
      follows the learning-rate factor (:meth:`set_lr_factor`): MTARD multiplies both by
      0.1 at the milestones. Under DDP the two losses are averaged over the ranks first,
      so every rank holds the same weights.
    - the KL terms average over batch x classes by default (``kd_reduction``, MTARD).
    With ``teacher_free`` the two KL terms become cross-entropies on the labels.
    """

    name = "awnet"

    def __init__(self, cfg: TrainConfig, model: nn.Module, device: torch.device, teachers=None) -> None:
        super().__init__(cfg, model, device)
        if not is_awnet(model):
            raise ValueError("the awnet method needs an AW-Net model")
        self.teachers = teachers  # (clean, robust) or None
        self.w_nat = 0.5
        self.init_losses: tuple[float, float] | None = None
        self.lr_factor = 1.0

    def set_lr_factor(self, factor: float) -> None:
        """The learning-rate multiplier of the coming step; the balance rate is scaled by it
        (MTARD: rate x 0.1 at each lr milestone; with a cosine schedule it follows the curve)."""
        self.lr_factor = float(factor)

    def _balance(self, l_nat: float, l_adv: float) -> None:
        """MTARD's normalisation loss balance, on the losses averaged over the DDP ranks."""
        l_nat, l_adv = mean_over_ranks([l_nat, l_adv], self.device)
        if self.init_losses is None:
            self.init_losses = (max(l_nat, 1e-8), max(l_adv, 1e-8))
        r_nat = l_nat / self.init_losses[0]
        r_adv = l_adv / self.init_losses[1]
        target = r_nat / max(r_nat + r_adv, 1e-12)
        rate = self.cfg.balance_rate * self.lr_factor
        self.w_nat = self.w_nat - rate * (self.w_nat - target)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's adversarial examples (see :meth:`craft_weighted` for their type labels)."""
        return self.craft_weighted(model, x, y)[0]

    def craft_weighted(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's adversarial examples and each one's weight as "adversarial" in the type loss.

        Plain: PGD on the student (CE, through the soft router), every example weight 1.
        With ``router_adaptive`` each sample also draws an evader's lambda from
        ``evasion_lambdas`` (0 = plain PGD) and, for lambda > 0, crafts through the soft
        router or the forced clean branch with equal odds, maximising CE + lambda * log
        p_clean (``evasion_loss`` "margin": lambda * the router's logit margin, which still
        pulls once p_adv is tiny): the attacks of the evaluation that hide from the router.
        Lambda ramps in with the eps warm-up, so the router first learns plain attacks. One
        PGD either way: no extra cost per step.

        ``evasion_label`` "fooled" gives an evasion example weight 1 only when the clean
        branch misclassifies it (the branch a hidden input is served by, so exactly the
        inputs the router must flag) and 0 otherwise: the eps-ball holds the clean digit
        itself, so asking the router to flag every evasion example asks it to flag clean
        digits too (what "all" did: docs/results.md). Asymmetric adversarial training of
        a detector, after Yin et al. (ICLR 2020).
        """
        n = x.shape[0]
        if not self.cfg.router_adaptive:
            return self.pgd(model)(x, y), torch.ones(n, device=x.device)
        lambdas = torch.tensor([0.0, *self.cfg.evasion_lambdas], device=x.device)
        ramp = self.eps / self.cfg.eps if self.cfg.eps else 1.0
        lam = lambdas[torch.randint(len(lambdas), (n,), device=x.device)] * ramp
        through_clean = (torch.rand(n, device=x.device) < 0.5) & (lam > 0)
        mix = torch.where(through_clean, torch.zeros(n, device=x.device), torch.full((n,), -1.0, device=x.device))
        loss = "ce-evade-router-margin" if self.cfg.evasion_loss == "margin" else "ce-evade-router"
        x_adv = self.pgd(model, loss=loss, mix=mix, loss_kwargs={"weight": lam})(x, y)
        weight = torch.ones(n, device=x.device)
        if self.cfg.evasion_label == "fooled":
            bare = unwrap(model)
            with preserved_modes(bare, mix=MIX_CLEAN), torch.no_grad():
                fooled = bare(x_adv).argmax(1) != y
            weight = torch.where(lam > 0, fooled.float(), weight)
        return x_adv, weight

    def loss(self, model, x, y):
        x_adv, adv_weight = self.craft_weighted(model, x, y)
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
            l_nat = kd_loss(out_c.logits, tc, t, self.cfg.kd_reduction)
            l_adv = kd_loss(out_a.logits, ta, t, self.cfg.kd_reduction)
        n = x.shape[0]
        l_adv_type = F.cross_entropy(out_a.type_logits, torch.full((n,), ADV, device=x.device), reduction="none")
        l_type = F.cross_entropy(out_c.type_logits, torch.full((n,), CLEAN, device=x.device)) + (
            (adv_weight * l_adv_type).sum() / adv_weight.sum().clamp_min(1.0)
        )
        self._balance(l_nat.item(), l_adv.item())
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
            flagged = (out_a.type_logits.argmax(1) == ADV).float()
            router_acc = 0.5 * (
                (out_c.type_logits.argmax(1) == CLEAN).float().mean()
                + (adv_weight * flagged).sum() / adv_weight.sum().clamp_min(1.0)
            )
        figures.update(
            l_nat=l_nat.item(), l_adv=l_adv.item(), l_type=l_type.item(), w_nat=w_nat, router_acc=router_acc.item()
        )
        if self.cfg.router_adaptive:
            figures["type_adv_share"] = adv_weight.mean().item()  # share of the batch labelled adversarial
        return total, figures

    def state_dict(self) -> dict[str, Any]:
        return {"w_nat": self.w_nat, "init_losses": self.init_losses}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_nat = float(state.get("w_nat", 0.5))
        init = state.get("init_losses")
        self.init_losses = tuple(init) if init is not None else None
