"""Clean accuracy of AW-Net checkpoints through the router, the forced clean branch and the
forced adversarial branch, and the router's p_adv on the clean test digits; static models
beside them (the first 500 embedded test digits, as `evaluate --n 500`). Seconds per
checkpoint. Usage: python -m experiments.branch_divergence CKPT [CKPT ...]; the recorded
run: results/issue8/branch-divergence/output.txt."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import load_model
from training.data.embedded import load_mnist5k


def main(paths: list[str]) -> int:
    torch.set_num_threads(1)
    ds = load_mnist5k("test")
    x = torch.stack([ds[i][0] for i in range(500)])
    y = torch.tensor([int(ds[i][1]) for i in range(500)])
    for path in paths:
        model, _ = load_model(path)
        model.eval()
        name = Path(path).parent.name
        with torch.no_grad():
            if not hasattr(model, "forward_all"):
                print(f"{name:10s} clean acc {(model(x).argmax(1) == y).float().mean() * 100:.1f}%")
                continue
            for mix in ("router", "clean", "adv"):
                out = model.forward_all(x, mix=mix)
                acc = (out.logits.argmax(1) == y).float().mean() * 100
                print(f"{name:10s} mix={mix:6s} clean acc {acc:.1f}%")
            p = model.forward_all(x, mix="router").p_adv.numpy()
            print(f"  p_adv on clean: mean {p.mean():.4f} median {np.median(p):.2e} "
                  f"p90 {np.quantile(p, 0.9):.3f} >0.5 {np.mean(p > 0.5) * 100:.1f}%")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
