"""The digit blend against AW-Net's router: does a gradient-free attack get past the flag
more often than the evaluation's gradient attacks (Carlini et al.'s masking sign, on the flag)?

For each of the first 500 test digits x and each of the first 100 validation digits v:
x + clip(v - x, -eps, eps), clipped to [0, 1]. A digit is fooled when some blend (or the
clean digit) is misclassified, missed when that example's p_adv is below the threshold (the
manifest's when given, else the 1 %-FPR threshold on the validation digits). CCAT's flag
gives way to this probe (../ccat); compare the missed share with the AW-Net's card.

Usage: python results/issue8/confidence-reject/blend_probe.py CHECKPOINT [THRESHOLD] [--eps 0.3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reject import tensors  # noqa: E402

from training.checkpoint import load_model  # noqa: E402


@torch.no_grad()
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("threshold", nargs="?", type=float, default=None)
    ap.add_argument("--eps", type=float, default=0.3)
    a = ap.parse_args()
    model = load_model(a.checkpoint)[0].eval()
    x, y = tensors("test", 500)
    xv = tensors("val")[0]
    thr = (
        a.threshold
        if a.threshold is not None
        else float(torch.quantile(model.forward_all(xv).p_adv, 0.99))
    )
    out = model.forward_all(x)
    fooled = out.logits.argmax(1) != y
    missed = fooled & (out.p_adv < thr)
    for v in xv[:100]:
        out = model.forward_all((x + (v - x).clamp(-a.eps, a.eps)).clamp(0, 1))
        wrong = out.logits.argmax(1) != y
        fooled |= wrong
        missed |= wrong & (out.p_adv < thr)
    share = 1 - missed.sum().item() / max(fooled.sum().item(), 1)
    print(f"{a.checkpoint} (threshold {thr:.3g}): digit blend fooled {fooled.float().mean():.1%}, "
          f"missed {missed.float().mean():.1%}, flagged {share:.1%} of the fooled")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
