"""Do more epochs, or the clean teacher as initialisation, make the branches diverge?

The trade-off setting's seed 0 (`SETTING=mnist1k-eps0.3-w8 SEED=0 ONLY="standard pgd-at awnet"
make reproduce` with RUNS_ROOT=$RUNS first), then two AW-Net variants on the same teachers:
three times the epochs, and the clean teacher as initialisation. Each variant: the branch
check (``branches``) and the three strongest attacks of the reproduction's cards, written to
results/issue8/branch-divergence/{ep24,initclean}-card. Hours of training on CPU.
Usage: RUNS=runs/issue8/branch-divergence python -m experiments.branch_divergence.variants
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CARDS = Path("results/issue8/branch-divergence")
VARIANTS = {"ep24": ("24", "pgd-at"), "initclean": ("8", "standard")}  # epochs, init from


def train_commands(runs: Path) -> list[list[str]]:
    """Each variant's training, then the branch check of the teachers and variants."""
    r = runs / "mnist1k-eps0.3-w8/seed0"
    common = ["--dataset", "mnist5k", "--max-train-samples", "1000", "--eps", "0.3", "--seed", "0",
              "--method", "awnet", "--model", "awnet_smallcnn_w8", "--eps-warmup-epochs", "2",
              "--clean-teacher", f"{r}/standard/best.pt", "--robust-teacher", f"{r}/pgd-at/best.pt"]  # fmt: skip
    cmds = [[sys.executable, "-m", "training", "train", *common, "--out", f"{runs}/{v}",
             "--epochs", epochs, "--eval-every", epochs, "--init-from", f"{r}/{init}/best.pt"]
            for v, (epochs, init) in VARIANTS.items()]  # fmt: skip
    checkpoints = [f"{r}/standard/best.pt", f"{r}/pgd-at/best.pt", f"{r}/awnet/best.pt",
                   f"{runs}/ep24/best.pt", f"{runs}/initclean/last.pt"]  # fmt: skip
    return [*cmds, [sys.executable, "-m", "experiments.branch_divergence", *checkpoints]]


def evaluate_command(runs: Path, variant: str) -> list[str]:
    """The three strongest attacks on a trained variant (its last.pt when the alarm kept no best.pt)."""
    ck = runs / variant / "best.pt"
    if not (ROOT / ck).is_file():
        ck = runs / variant / "last.pt"  # no best.pt: the masking alarm fired
    return [sys.executable, "-m", "training", "evaluate", str(ck), "--n", "500", "--seed", "0",
            "--budget", "reproduce", "--attacks", "autoattack", "apgd-dlr", "pgd20",
            "--out", str(CARDS / f"{variant}-card"), "--allow-failed-checks"]  # fmt: skip


def main() -> int:
    runs = Path(os.environ.get("RUNS", "runs/issue8/branch-divergence"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for cmd in train_commands(runs):
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    for v in VARIANTS:
        subprocess.run(evaluate_command(runs, v), cwd=ROOT, env=env, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
