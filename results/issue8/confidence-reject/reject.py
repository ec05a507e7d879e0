"""Confidence thresholding as the adversarial flag: does it catch what the router misses?

Item 4 of the evaluation issue allows "another method the detection literature supports".
The one that held up best there under adaptive attack is the simplest: an adversarially
trained model *rejects* its low-confidence inputs (Stutz, Hein, Schiele 2020, "Confidence-
Calibrated Adversarial Training", whose AT baseline with a confidence threshold at 99 %
clean TPR is the strong one on MNIST), and the attacker must then find a perturbation that
is misclassified *with high confidence*. This measures, on a trained checkpoint:

- "confidence": flag when the served prediction's max softmax is below the threshold that
  flags 1 % of the validation digits (any model, static or AW-Net);
- for AW-Net also "router" (p_adv at its own 1 %-FPR threshold, what the product serves
  today) and "router or confidence" (each at 0.5 %, the union's validation FPR printed).

Attacks on the first N test digits at eps (end to end through the whole model; AW-Net's
router, signals and soft MixBN included): APGD-CE and APGD-T from torchattacks (final
example), and the high-confidence attacks the thresholds call for: targeted PGD toward
every wrong class (maximise log p_target, 100 steps), on AW-Net also with + lambda times
the router's clean margin (lambda 0.3, 1, 3, toward the three likeliest wrong classes).
Every PGD iterate is checked, so a digit counts as *missed* by a detector when any
iterate of any attack is misclassified and not flagged by it (the attacker keeps the
best); *fooled* when any iterate or final example is misclassified. Every example is
checked within eps and [0, 1].

Usage: python results/issue8/confidence-reject/reject.py CHECKPOINT [--n 500] [--steps 100] [--out CARD.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
import torchattacks  # noqa: E402

from models import is_awnet  # noqa: E402
from training.attacks.losses import router_margin  # noqa: E402
from training.checkpoint import load_model  # noqa: E402
from training.data.embedded import load_mnist5k  # noqa: E402


def tensors(split: str, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    ds = load_mnist5k(split)
    n = len(ds) if n is None else min(n, len(ds))
    return torch.stack([ds[i][0] for i in range(n)]), torch.tensor(
        [int(ds[i][1]) for i in range(n)]
    )


class Judge:
    """Forward the served model; remember per digit which detectors some attack got past."""

    def __init__(self, model: torch.nn.Module, awnet: bool, n: int) -> None:
        self.model, self.awnet = model, awnet
        self.thr: dict[str, float] = {}
        self.fooled = torch.zeros(n, dtype=torch.bool)
        self.missed: dict[str, torch.Tensor] = {}
        self.by_family: dict[
            str, dict[str, torch.Tensor]
        ] = {}  # family -> fooled / missed per detector
        self.family = "clean"

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits, type margin toward clean or zeros, p_adv or zeros), with gradients."""
        if self.awnet:
            out = self.model.forward_all(x)
            return out.logits, router_margin(out.type_logits), out.p_adv
        logits = self.model(x)
        z = torch.zeros(len(x))
        return logits, z, z

    @torch.no_grad()
    def scores(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(prediction, {detector: adversarial score, higher = more adversarial})."""
        logits, _, p_adv = self.outputs(x)
        s = {"confidence": 1 - F.softmax(logits, 1).amax(1)}
        if self.awnet:
            s["router"] = p_adv
        return logits.argmax(1), s

    def flags(self, s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        f = {k: s[k] >= self.thr[k] for k in s}
        if self.awnet:
            f["router or confidence"] = (s["router"] >= self.thr["router@0.5"]) | (
                s["confidence"] >= self.thr["confidence@0.5"]
            )
        return f

    def calibrate(self, x: torch.Tensor) -> dict[str, float]:
        """Thresholds flagging 1 % (0.5 % each for the union) of the validation digits."""
        _, s = self.scores(x)
        for k, v in s.items():
            self.thr[k] = float(torch.quantile(v, 0.99))
            self.thr[f"{k}@0.5"] = float(torch.quantile(v, 0.995))
        return {k: f.float().mean().item() for k, f in self.flags(s).items()}

    def check(self, xa: torch.Tensor, y: torch.Tensor, idx: slice) -> None:
        pred, s = self.scores(xa)
        wrong = pred != y
        self.fooled[idx] |= wrong
        fam = self.by_family.setdefault(self.family, {})
        fam.setdefault("fooled", torch.zeros_like(self.fooled))[idx] |= wrong
        for k, f in self.flags(s).items():
            self.missed.setdefault(k, torch.zeros_like(self.fooled))[idx] |= wrong & ~f
            fam.setdefault(k, torch.zeros_like(self.fooled))[idx] |= wrong & ~f


def targeted_pgd(
    judge: Judge,
    x: torch.Tensor,
    y: torch.Tensor,
    t: torch.Tensor,
    lam: float,
    eps: float,
    steps: int,
    idx: slice,
    zero_start: bool = False,
) -> None:
    """Maximise log p_t (+ lam * the router's clean margin), checking every iterate.

    ``zero_start`` starts from the clean digit instead of a random point of the ball: a
    detector trained to call large perturbations uncertain (CCAT) is flat where a random
    start lands, so the attacker also walks out from the clean digit, and within smaller
    balls (``eps`` below the budget)."""
    step = 2.5 * eps / steps
    xa = x.clone() if zero_start else (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for i in range(steps):
        xa.requires_grad_(True)
        logits, margin, _ = judge.outputs(xa)
        loss = -F.cross_entropy(logits, t, reduction="sum") + lam * margin.sum()
        (g,) = torch.autograd.grad(loss, xa)
        lr = step if i < steps // 2 else step / 4  # a finer second half, as APGD's step decay
        xa = torch.min(torch.max(xa.detach() + lr * g.sign(), x - eps), x + eps).clamp(0, 1)
        judge.check(xa, y, idx)


def evaluate(
    model: torch.nn.Module,
    n: int = 500,
    eps: float = 0.3,
    steps: int = 100,
    batch: int = 250,
    seed: int = 0,
    strong: bool = False,
) -> dict:
    """Calibrate the detectors on the validation digits, attack the first ``n`` test digits,
    and return the card (clean, worst case, per detector: FPRs, missed, flagged of fooled).
    ``strong`` adds the digit blend (x + clip(v - x, -eps, eps) for 100 validation digits v)
    and targeted PGD from the clean digit (200 steps, at eps and eps / 3) and
    within smaller balls (eps / 6, eps / 3, 2 eps / 3), toward the three likeliest wrong classes."""
    torch.manual_seed(seed)
    t0 = time.time()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    awnet = is_awnet(model)
    x, y = tensors("test", n)
    judge = Judge(model, awnet, len(x))
    xv = tensors("val")[0]
    val_fpr = judge.calibrate(xv)
    pred, s = judge.scores(x)
    clean = (pred == y).float().mean().item()
    test_fpr = {k: f.float().mean().item() for k, f in judge.flags(s).items()}
    print(f"clean {clean:.1%}; FPR val {val_fpr}, test {test_fpr}")
    judge.check(x, y, slice(0, len(x)))
    lams = [0.0] + ([0.3, 1.0, 3.0] if awnet else [])
    for i in range(0, len(x), batch):
        sl = slice(i, i + batch)
        xb, yb = x[sl], y[sl]
        for name, atk in (
            ("apgd-ce", torchattacks.APGD(model, eps=eps, steps=steps, loss="ce", seed=seed)),
            ("apgd-t", torchattacks.APGDT(model, eps=eps, steps=steps, n_classes=10, seed=seed)),
        ):
            judge.family = name
            with tqdm(total=1, desc=f"{name} [{i}:{i + len(xb)}]", leave=False):
                xa = atk(xb, yb)
            assert (xa - xb).abs().max() <= eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1
            judge.check(xa, yb, sl)
        with torch.no_grad():
            order = (
                judge.outputs(xb)[0]
                .masked_fill(F.one_hot(yb, 10).bool(), float("-inf"))
                .argsort(1, descending=True)
            )
        runs = [(lam, r) for lam in lams for r in range(9 if lam == 0 else 3)]
        judge.family = "targeted PGD, random start"
        for lam, r in tqdm(
            runs, desc=f"high-confidence targeted PGD [{i}:{i + len(xb)}]", leave=False
        ):
            targeted_pgd(judge, xb, yb, order[:, r], lam, eps, steps, sl)
        if strong:
            # digit blend: step eps toward each of 100 validation digits (black box, no gradient)
            judge.family = "digit blend"
            for xo in tqdm(xv[:100], desc=f"digit blend [{i}:{i + len(xb)}]", leave=False):
                judge.check((xb + (xo - xb).clamp(-eps, eps)).clamp(0, 1), yb, sl)
            runs = [(z, rad, r) for z, rad in ((True, eps), (True, eps / 3), (False, eps / 6), (False, eps / 3), (False, 2 * eps / 3))
                    for r in range(3)]  # fmt: skip
            for z, rad, r in tqdm(
                runs, desc=f"zero-start / small-ball targeted PGD [{i}:{i + len(xb)}]", leave=False
            ):
                judge.family = (
                    f"targeted PGD, {'clean start' if z else 'random start'}, radius {rad:.3g}"
                )
                targeted_pgd(
                    judge,
                    xb,
                    yb,
                    order[:, r],
                    0.0,
                    rad,
                    2 * steps if z else steps,
                    sl,
                    zero_start=z,
                )
    fooled = judge.fooled.float()
    rows = []
    for k, m in judge.missed.items():
        rows.append(
            {
                "detector": k,
                "val_fpr": val_fpr[k],
                "test_fpr": test_fpr[k],
                "missed": m.float().mean().item(),
                "flagged_of_fooled": 1 - m.float().sum().item() / max(fooled.sum().item(), 1),
            }
        )
        print(
            f"{k:22s} val FPR {val_fpr[k]:5.1%} test FPR {test_fpr[k]:5.1%}  missed {rows[-1]['missed']:6.1%}  "
            f"flagged of fooled {rows[-1]['flagged_of_fooled']:6.1%}"
        )
    families = {
        name: {k: v.float().mean().item() for k, v in fam.items()}
        for name, fam in judge.by_family.items()
    }
    for name, fam in families.items():
        print(f"  {name:44s} " + "  ".join(f"{k} {v:6.1%}" for k, v in fam.items()))
    worst = 1 - fooled.mean().item()
    print(f"clean {clean:.1%}  worst case {worst:.1%}  ({time.time() - t0:.0f} s)")
    return {
        "awnet": awnet,
        "n": len(x),
        "eps": eps,
        "steps": steps,
        "seed": seed,
        "strong": strong,
        "clean": clean,
        "worst": worst,
        "thresholds": judge.thr,
        "detectors": rows,
        "by_family": families,  # per attack family: share of digits fooled, and missed per detector
        "seconds": round(time.time() - t0),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--eps", type=float, default=0.3)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--strong", action="store_true", help="add zero-start and small-ball targeted PGD"
    )
    ap.add_argument(
        "--out",
        default=None,
        help="JSON card (default: beside this script, named after the run folder)",
    )
    a = ap.parse_args()
    print(a.checkpoint)
    card = {
        "checkpoint": a.checkpoint,
        **evaluate(load_model(a.checkpoint)[0], a.n, a.eps, a.steps, a.batch, a.seed, a.strong),
    }
    run = Path(a.checkpoint).parent
    out = Path(
        a.out
        or Path(__file__).parent
        / f"card-{run.parent.parent.name}-{run.parent.name}-{run.name}.json"
    )
    out.write_text(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
