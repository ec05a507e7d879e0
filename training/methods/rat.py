"""Randomized adversarial training (Jin et al., CVPR 2023), as the authors' code has it
(``TRADES_first_second/trades_first_second.py``).

1. Per batch a copy of the model gets Gaussian noise (absolute sigma, default 1e-4) on
   its conv weights and crafts the adversarial examples; training forwards use the
   clean weights.
2. The Taylor-expansion regulariser becomes soft-label targets built from the last
   layer's cross-entropy gradient summed over the feature axis,
   g_k = mean_i (p_ik - onehot_ik) * sum_d h_id (closed form, no extra backward), on the
   natural (g) and the adversarial (g') batch. With a = |g|, a' = |g'|, b = g*g,
   b' = g'*g', T(gap) the K x K table whose row y keeps 1 - c on y and spreads c over
   the other classes in proportion to the shifted, normalised gap, and p, p' the
   model's outputs on the natural and adversarial batch (KL summed, divided by the
   batch size):

   F1 = 1/2 [KL(T(a - a')[y] || p') + KL(T(a' - a)[y] || p)]
   F2 = 1/2 [KL(T(b' - b)[y] || p') + KL(T(b' - b)[y] || p)]

   (the authors' code uses the b' - b table in both halves of F2; we do the same).

Applying it to PGD-AT and AW-Net (scaling their main terms by 1 - alpha) is this
project's extension; the authors' code covers TRADES and TRADES-AWP.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from models import is_awnet, unwrap
from training.config import TrainConfig


class RATRegulariser:
    """Weight noise for crafting and the F1 / F2 soft-label terms of one RAT run."""

    def __init__(self, cfg: TrainConfig, num_classes: int) -> None:
        self.sigma = cfg.rat_sigma
        self.alpha = cfg.rat_alpha
        self.c = cfg.rat_c if cfg.rat_c is not None else 1.0 - 2.0 / num_classes
        self.num_classes = num_classes
        self._copy: nn.Module | None = None

    def noisy_copy(self, model: nn.Module) -> nn.Module:
        """The model's weights plus N(0, sigma^2) on every conv weight (a reused copy)."""
        if self._copy is None:
            self._copy = copy.deepcopy(model)
        self._copy.load_state_dict(model.state_dict())
        if is_awnet(model):
            unwrap(self._copy).mix_mode = unwrap(model).mix_mode
        with torch.no_grad():
            for m in self._copy.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.add_(torch.randn_like(m.weight) * self.sigma)
        self._copy.requires_grad_(False)
        return self._copy

    @staticmethod
    def last_layer_gradient(logits: torch.Tensor, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d mean-CE / d W of the final Linear (K x D), summed over the feature axis: (K,).

        dCE/dW_kd = mean_i (p_ik - onehot_ik) h_id, so the row sums need only the pooled
        features, not a backward pass (the authors take ``fc.weight.grad.sum(1)``).
        """
        p = logits.softmax(1)
        onehot = F.one_hot(y, logits.shape[1]).to(p.dtype)
        return ((p - onehot) * feats.sum(1, keepdim=True)).mean(0)

    def table(self, gap: torch.Tensor) -> torch.Tensor:
        """K x K soft-label table from a per-class gap vector (the authors' ``reg_gap``).

        Row y: 1 - c on y, c spread over the other classes in proportion to gap - min(gap).
        A row with no off-diagonal mass (all gaps equal) spreads c uniformly, where the
        authors' code would divide by zero.
        """
        k = self.num_classes
        shifted = gap - gap.min()
        eye = torch.eye(k, device=gap.device, dtype=gap.dtype)
        spread = shifted.unsqueeze(0).expand(k, k) * (1 - eye)
        total = spread.sum(1, keepdim=True)
        uniform = (1 - eye) / (k - 1)
        spread = torch.where(total > 1e-12, spread / total.clamp(min=1e-12), uniform)
        return eye * (1 - self.c) + spread * self.c

    def terms(
        self,
        logits_clean: torch.Tensor,
        logits_adv: torch.Tensor,
        feats_clean: torch.Tensor,
        feats_adv: torch.Tensor,
        y: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(F1, F2) as in the module docstring; the targets carry no gradient."""
        with torch.no_grad():
            g = self.last_layer_gradient(logits_clean.float(), feats_clean.float(), y)
            ga = self.last_layer_gradient(logits_adv.float(), feats_adv.float(), y)
            a, a_adv = g.abs(), ga.abs()
            b, b_adv = g * g, ga * ga
            t1 = self.table(a - a_adv)[y]
            t1_rev = self.table(a_adv - a)[y]
            t2 = self.table(b_adv - b)[y]
        log_p = F.log_softmax(logits_clean.float(), 1)
        log_p_adv = F.log_softmax(logits_adv.float(), 1)

        def kl(target: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
            return F.kl_div(log_q, target, reduction="batchmean")

        f1 = 0.5 * (kl(t1, log_p_adv) + kl(t1_rev, log_p))
        f2 = 0.5 * (kl(t2, log_p_adv) + kl(t2, log_p))
        return f1, f2
