"""Randomized adversarial training (Jin et al., CVPR 2023), as the authors' code has it.

1. Per batch a copy of the model gets Gaussian noise (absolute sigma, default 1e-4) on
   its conv weights and crafts the adversarial examples; training forwards use the
   clean weights.
2. The Taylor-expansion regulariser becomes soft-label targets built from the last
   layer's cross-entropy gradient, g_k = mean_i (p_ik - onehot_ik) * sum_c h_ic (closed
   form, no extra backward), on clean (g) and adversarial (g') inputs: first-order gaps
   |g| - |g'| and second-order gaps g*g - g'*g' become tables whose row y keeps 1 - c on
   y and spreads c over the other classes in proportion to the shifted, normalised gap.
   F1 = KL(target1 || p'), F2 = KL(target2 || p).

Applying it to PGD-AT and AW-Net (scaling their main terms by 1 - alpha) is this
project's extension; the authors' code covers TRADES and TRADES-AWP.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from training.config import TrainConfig


class RATRegulariser:
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
        if hasattr(model, "mix_mode"):
            self._copy.mix_mode = model.mix_mode
        with torch.no_grad():
            for m in self._copy.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.add_(torch.randn_like(m.weight) * self.sigma)
        self._copy.requires_grad_(False)
        return self._copy

    @staticmethod
    def last_layer_gradient(logits: torch.Tensor, feats: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        p = logits.softmax(1)
        onehot = F.one_hot(y, logits.shape[1]).to(p.dtype)
        return ((p - onehot) * feats.sum(1, keepdim=True)).mean(0)

    def table(self, gap: torch.Tensor) -> torch.Tensor:
        """K x K soft-label table from a per-class gap vector."""
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
        """(F1, F2): first-order targets against p', second-order targets against p."""
        with torch.no_grad():
            g = self.last_layer_gradient(logits_clean.float(), feats_clean.float(), y)
            ga = self.last_layer_gradient(logits_adv.float(), feats_adv.float(), y)
            t1 = self.table(g.abs() - ga.abs())[y]
            t2 = self.table(g * g - ga * ga)[y]
        f1 = F.kl_div(F.log_softmax(logits_adv, 1), t1, reduction="batchmean")
        f2 = F.kl_div(F.log_softmax(logits_clean, 1), t2, reduction="batchmean")
        return f1, f2
