"""The ideal AW-Net of the trade-off setting: two separate networks and a router on robust features.

AW-Net's branches share their filters, and in `mnist1k-eps0.3-w8` they do not diverge
(../branch-divergence). This asks what is left if they did, in the most generous form: the
clean branch *is* the standard model, the adversarial branch *is* the PGD-AT model (no
shared filter at all), and the router is a detector that reads both networks' features and
logits (the robust branch's own features, the router input the docs list as untried), not
the raw pixels. Served: the robust model's answer when the detector flags (p_adv >=
threshold at 1 % FPR on the validation digits), the standard model's otherwise (hard
switch, as the service's manifest threshold would; the attacks step through the soft
blend p_adv * robust + (1 - p_adv) * standard of the probabilities).

Detector training: clean training digits (label clean) against PGD-20 examples on the
standard model, on the robust model and, with --adaptive, router-evasion examples on the
current detector (CE of the standard model + lambda * the detector's clean margin, lambda
drawn from 0.03-1 per batch) and, with --e2e too, PGD-10 examples end to end through the
current soft switch (adversarial training of the router), all labelled adversarial.

Attacks, each on the first N test digits at eps 0.3, worst case per digit over all:
APGD-CE and APGD-T (torchattacks, 100 steps) end to end through the soft switch; APGD-CE on
each network alone, transferred; router evasion (CE on the standard model + lambda times
the detector's clean margin, lambda 0.03-1, 100 steps); selective PGD (CE on the standard
model while it is right, then the detector's margin, orthogonal to the CE gradient, while
flagged; the first misclassified and unflagged iterate kept). A digit is *missed* when an
attack misclassifies it and the detector does not flag that example.

Usage: python results/issue8/ideal-switch/switch.py STANDARD.pt ROBUST.pt [--adaptive [--e2e]] [--n 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import torchattacks  # noqa: E402

from training.attacks.pgd import PGD  # noqa: E402
from training.checkpoint import load_model  # noqa: E402
from training.data.embedded import load_mnist5k  # noqa: E402

EPS = 0.3


def tensors(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_mnist5k(split)
    n = len(ds) if n is None else min(n, len(ds))
    return torch.stack([ds[i][0] for i in range(n)]), torch.tensor([int(ds[i][1]) for i in range(n)])


class Switch(nn.Module):
    """Standard and robust networks, a detector on both networks' features and logits."""

    def __init__(self, standard: nn.Module, robust: nn.Module) -> None:
        super().__init__()
        self.standard, self.robust = standard.eval(), robust.eval()
        for p in [*standard.parameters(), *robust.parameters()]:
            p.requires_grad_(False)
        d = standard.feature_dim + robust.feature_dim + 2 * 10
        self.detector = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 1))
        self.threshold_logit = 0.0

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fs, fr = self.standard.forward_features(x), self.robust.forward_features(x)
        ls, lr = self.standard.fc(fs), self.robust.fc(fr)
        z = torch.cat([fs, fr, F.log_softmax(ls, 1), F.log_softmax(lr, 1)], 1)
        return ls, lr, self.detector(z).squeeze(1)  # detector logit: > threshold_logit = adversarial

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # the soft switch the attacks step through
        ls, lr, d = self.parts(x)
        p = torch.sigmoid(d - self.threshold_logit)[:, None]
        return torch.log(p * F.softmax(lr, 1) + (1 - p) * F.softmax(ls, 1) + 1e-12)

    @torch.no_grad()
    def served(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction of the hard switch, flagged) per sample."""
        ls, lr, d = self.parts(x)
        flagged = d >= self.threshold_logit
        return torch.where(flagged, lr.argmax(1), ls.argmax(1)), flagged


def evasion(sw: Switch, x: torch.Tensor, y: torch.Tensor, lam: float, steps: int) -> torch.Tensor:
    """CE on the standard model + lam * the detector's clean margin (-logit), L-inf PGD."""
    step = 2.5 * EPS / steps
    xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(steps):
        xa.requires_grad_(True)
        ls, _, d = sw.parts(xa)
        loss = F.cross_entropy(ls, y, reduction="sum") - lam * d.sum()
        (g,) = torch.autograd.grad(loss, xa)
        xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    return xa.detach()


def selective(sw: Switch, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    """Per sample: CE on the standard model while it is right; the detector's margin,
    orthogonal to that CE gradient, while flagged; keep the first fooling, unflagged iterate."""
    step = 2.5 * EPS / steps
    xa = (x + torch.empty_like(x).uniform_(-EPS, EPS)).clamp(0, 1)
    best, done = x.clone(), torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        xa.requires_grad_(True)
        ls, _, d = sw.parts(xa)
        ce = F.cross_entropy(ls, y, reduction="none")
        (gc,) = torch.autograd.grad(ce.sum(), xa, retain_graph=True)
        (gd,) = torch.autograd.grad(-d.sum(), xa)
        with torch.no_grad():
            pred, flagged = ls.argmax(1), d >= sw.threshold_logit
            ok = (pred != y) & ~flagged & ~done
            best[ok], done = xa[ok].detach(), done | ok
            g2, c2 = gd.flatten(1), gc.flatten(1)
            ortho = (g2 - (g2 * c2).sum(1, keepdim=True) / c2.pow(2).sum(1, keepdim=True).clamp_min(1e-20) * c2).view_as(gd)
            g = torch.where((pred == y)[:, None, None, None], gc, ortho)
            xa = torch.min(torch.max(xa.detach() + step * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    best[~done] = xa[~done]
    return best


def train_detector(sw: Switch, x: torch.Tensor, y: torch.Tensor, adaptive: bool, e2e: bool, epochs: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(sw.detector.parameters(), lr=1e-3)
    pgd_s, pgd_r = PGD(sw.standard, EPS, steps=20), PGD(sw.robust, EPS, steps=20)
    for ep in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        bar = tqdm(range(0, len(x), 64), desc=f"detector epoch {ep + 1}/{epochs}", leave=False)
        for i in bar:
            idx = perm[i:i + 64]
            xb, yb = x[idx], y[idx]
            advs = [pgd_s(xb, yb), pgd_r(xb, yb)]
            if adaptive and ep > 0:
                lam = float(torch.tensor([0.03, 0.1, 0.3, 1.0])[torch.randint(4, (1,), generator=g)])
                sw.detector.eval()
                advs.append(evasion(sw, xb, yb, lam, steps=20))
                if e2e:
                    advs.append(PGD(sw, EPS, steps=10)(xb, yb))
            sw.detector.train()
            xs = torch.cat([xb, *advs])
            t = torch.cat([torch.zeros(len(xb)), torch.ones(len(xs) - len(xb))])
            w = torch.cat([torch.full((len(xb),), float(len(advs))), torch.ones(len(xs) - len(xb))])
            _, _, d = sw.parts(xs)
            loss = F.binary_cross_entropy_with_logits(d, t, weight=w)
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    sw.detector.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("standard")
    ap.add_argument("robust")
    ap.add_argument("--adaptive", action="store_true")
    ap.add_argument("--e2e", action="store_true", help="with --adaptive: also end-to-end PGD on the soft switch")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--train-n", type=int, default=1000, help="the setting's training digits")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON card (default: beside this script)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    t0 = time.time()
    sw = Switch(load_model(a.standard)[0], load_model(a.robust)[0])
    xt, yt = tensors("train", a.train_n)
    train_detector(sw, xt, yt, a.adaptive, a.e2e, a.epochs, a.seed)
    with torch.no_grad():
        xv, _ = tensors("val")
        dv = sw.parts(xv)[2]
        sw.threshold_logit = float(torch.quantile(dv, 0.99))  # 1 % FPR on the validation digits
        x, y = tensors("test", a.n)
        pred, flagged = sw.served(x)
        ls, lr, _ = sw.parts(x)
    clean = (pred == y).float().mean().item()
    print(f"clean: served {clean:.1%} (standard {(ls.argmax(1) == y).float().mean():.1%}, robust "
          f"{(lr.argmax(1) == y).float().mean():.1%}), test FPR {flagged.float().mean():.1%}, detector trained "
          f"{time.time() - t0:.0f} s")
    attacks = {
        "apgd-ce (soft switch)": lambda xb, yb: torchattacks.APGD(sw, eps=EPS, steps=a.steps, loss="ce", seed=a.seed)(xb, yb),
        "apgd-t (soft switch)": lambda xb, yb: torchattacks.APGDT(sw, eps=EPS, steps=a.steps, n_classes=10, seed=a.seed)(xb, yb),
        "apgd-ce on robust, transferred": lambda xb, yb: torchattacks.APGD(sw.robust, eps=EPS, steps=a.steps, seed=a.seed)(xb, yb),
        "apgd-ce on standard, transferred": lambda xb, yb: torchattacks.APGD(sw.standard, eps=EPS, steps=a.steps, seed=a.seed)(xb, yb),
        **{f"evasion lambda {lam:g}": (lambda xb, yb, lam=lam: evasion(sw, xb, yb, lam, a.steps)) for lam in (0.03, 0.1, 0.3, 1.0)},
        "selective": lambda xb, yb: selective(sw, xb, yb, a.steps),
    }  # fmt: skip
    fooled_any = pred != y
    missed_any = torch.zeros_like(fooled_any)
    rows = []
    for name, attack in attacks.items():
        preds, flags = [], []
        for i in tqdm(range(0, len(x), 100), desc=name, leave=False):
            xa = attack(x[i:i + 100], y[i:i + 100])
            assert (xa - x[i:i + 100]).abs().max() <= EPS + 1e-6 and xa.min() >= 0 and xa.max() <= 1
            p, f = sw.served(xa)
            preds.append(p)
            flags.append(f)
        p, f = torch.cat(preds), torch.cat(flags)
        wrong = p != y
        fooled_any |= wrong
        missed_any |= wrong & ~f
        rows.append({"attack": name, "acc": 1 - wrong.float().mean().item(), "flagged": f.float().mean().item(),
                     "missed": (wrong & ~f).float().mean().item()})  # fmt: skip
        print(f"{name:34s} acc {rows[-1]['acc']:6.1%}  flagged {rows[-1]['flagged']:6.1%}  missed {rows[-1]['missed']:6.1%}")
    worst = 1 - fooled_any.float().mean().item()
    detected = 1 - missed_any.float().sum().item() / max(fooled_any.float().sum().item(), 1)
    print(f"worst case {worst:.1%}  WRA {(clean + worst) / 2:.1%}  missed {missed_any.float().mean():.1%}  "
          f"flagged of fooled {detected:.1%}  ({time.time() - t0:.0f} s)")
    card = {"standard": a.standard, "robust": a.robust, "adaptive": a.adaptive, "e2e": a.e2e, "n": a.n, "eps": EPS, "steps": a.steps,
            "seed": a.seed, "clean": clean, "test_fpr": flagged.float().mean().item(), "worst": worst,
            "wra": (clean + worst) / 2, "missed": missed_any.float().mean().item(), "detected_of_fooled": detected,
            "attacks": rows, "seconds": round(time.time() - t0)}  # fmt: skip
    out = Path(a.out or Path(__file__).parent / f"card{'-adaptive' if a.adaptive else ''}{'-e2e' if a.e2e else ''}.json")
    out.write_text(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
