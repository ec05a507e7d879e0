"""Screening experiment (issue 8, item 4): does a branch-consistency flag catch what the
router misses?

The flag: the served prediction (soft router) differs from the forced adversarial branch's
(optionally only when that branch is confident). Flagged = router score >= the manifest
threshold OR that disagreement. The attacks know both: router-evasion PGD on the router's
logit margin through the served model, and the same with the adversarial branch's CE added
(the attacker makes both agree on a wrong class), 50 steps, eps 0.3, on the first N test
digits of the shipped awnet-mnist/3. Not product code: a record of how the figures in
docs/results.md ("A branch-consistency flag ...") were made.

    OMP_NUM_THREADS=1 .venv/bin/python results/issue8/branch-consistency/screen.py 200
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from models import MIX_ADV, MIX_CLEAN, MIX_ROUTER
from training.attacks.losses import router_margin
from training.checkpoint import load_model
from training.data import build_dataset
from training.evaluation.target import manifest_threshold, read_manifest

EPS, STEPS = 0.3, 50
Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def main(n: int) -> None:
    torch.set_num_threads(1)
    model, _ = load_model("models/checkpoints/awnet-mnist-3.pt", "cpu")
    model.eval()
    threshold = manifest_threshold(read_manifest("models/repository/awnet-mnist/3")[1])

    @torch.no_grad()
    def flags(
        x: torch.Tensor, conf: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        served = model.forward_all(x, mix=MIX_ROUTER)
        adv = model.forward_all(x, mix=MIX_ADV).logits.softmax(1)
        pred = served.logits.argmax(1)
        return pred, served.p_adv >= threshold, (adv.argmax(1) != pred) & (adv.amax(1) >= conf)

    xv, yv = build_dataset("mnist5k", "val").tensors()
    xt, yt = build_dataset("mnist5k", "test").tensors()
    xt, yt = xt[:n], yt[:n]
    for split, x, y in (("val", xv, yv), ("test", xt, yt)):
        for conf in (0.0, 0.5, 0.7, 0.9):
            pred, r, d = flags(x, conf)
            print(f"{split} clean, disagreement at confidence >= {conf}: acc {(pred == y).float().mean():.3f} "
                  f"router FPR {r.float().mean():.3f} disagree {d.float().mean():.3f} union {(r | d).float().mean():.3f}")  # fmt: skip

    def ce_plus(lam: float, mu: float = 0.0, mix: str = MIX_ROUTER) -> Loss:
        """CE of the model in ``mix`` (+ mu * CE of the forced adversarial branch) + lam * router margin."""

        def loss(xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            out = model.forward_all(xa, mix=mix)
            total = F.cross_entropy(out.logits, y, reduction="none") + lam * router_margin(
                out.type_logits
            )
            if mu:
                total = total + mu * F.cross_entropy(
                    model.forward_all(xa, mix=MIX_ADV).logits, y, reduction="none"
                )
            return total.mean()

        return loss

    def pgd(x: torch.Tensor, y: torch.Tensor, loss: Loss) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        xa = (x + (torch.rand(x.shape, generator=gen) * 2 - 1) * EPS).clamp(0, 1)
        for _ in range(STEPS):
            xa.requires_grad_(True)
            (grad,) = torch.autograd.grad(loss(xa, y), xa)
            xa = torch.min(
                torch.max(xa.detach() + 2.5 * EPS / STEPS * grad.sign(), x - EPS), x + EPS
            ).clamp(0, 1)
        return xa.detach()

    attacks = {
        "served, margin 0.03": ce_plus(0.03), "served, margin 0.1": ce_plus(0.1),
        "served + adv branch, margin 0.03": ce_plus(0.03, 1.0), "served + adv branch, margin 0.1": ce_plus(0.1, 1.0),
        "served + adv branch, margin 0.3": ce_plus(0.3, 1.0), "served + 3 adv branch, margin 0.1": ce_plus(0.1, 3.0),
        "clean + adv branch, margin 0.1": ce_plus(0.1, 1.0, MIX_CLEAN),
    }  # fmt: skip
    wrong_any = torch.zeros(n, dtype=torch.bool)
    missed_router, missed_union = wrong_any.clone(), wrong_any.clone()
    for name, loss in attacks.items():
        t0 = time.time()
        pred, r, d = flags(pgd(xt, yt, loss))
        wrong = pred != yt
        wrong_any |= wrong
        missed_router |= wrong & ~r
        missed_union |= wrong & ~(r | d)
        print(f"{name}: acc {1 - wrong.float().mean():.3f} flagged by router {r.float().mean():.3f} "
              f"missed (router) {(wrong & ~r).float().mean():.3f} missed (router or disagreement) "
              f"{(wrong & ~(r | d)).float().mean():.3f} ({time.time() - t0:.0f} s)", flush=True)  # fmt: skip
    share = 1 - missed_union.sum().item() / max(1, wrong_any.sum().item())
    print(f"any attack: fooled {wrong_any.float().mean():.3f}, missed (router) {missed_router.float().mean():.3f}, "
          f"missed (router or disagreement) {missed_union.float().mean():.3f}; flagged share of the fooled {share:.3f}")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
