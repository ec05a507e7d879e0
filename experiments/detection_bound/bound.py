"""Tramer's reduction applied to two evaluation cards.

Tramer (ICML 2022, "Detecting adversarial examples is (nearly) as hard as classifying
them"): a classifier with a detector whose robust risk with detection is R at distance eps
yields a (computationally inefficient) classifier with robust risk R at eps / 2, and the
converse. Robust risk with detection counts a digit as lost when its clean version is
misclassified or flagged, or when some perturbation within eps is misclassified and not
flagged. From an evaluation card it is at most clean error + clean FPR + missed.

This reads two `evaluate` cards: the AW-Net card (eps 0.3, its router flags at the
manifest threshold) and the best static classifier's card at eps / 2. It prints the robust
risk with detection of the AW-Net as measured, the largest one item 4's goal allows (clean
FPR 1 %, at least 90 % of the fooled digits flagged: missed <= 10 % of the fooled share),
and the robust accuracy at eps / 2 that each implies, beside the static model's measured
worst case at eps / 2 (docs/results.md, "What item 4's goal implies"; printed outputs in
results/issue8/half-eps-bound/):

    python -m experiments.detection_bound \
        results/issue8/chain-pgdat-teacher-fpr1/evaluation.json \
        results/issue8/half-eps-bound/pgd-at-eps0.15/evaluation.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GOAL_FPR, GOAL_FLAGGED = 0.01, 0.90


def report(detector_card: str, half_eps_card: str) -> None:
    """Print the measured and the goal's robust risk with detection, and what each implies."""
    det = json.loads(Path(detector_card).read_text())
    half = json.loads(Path(half_eps_card).read_text())
    eps, half_eps = det["settings"]["eps"], half["settings"]["eps"]
    if abs(half_eps - eps / 2) > 1e-6:
        sys.exit(f"the second card is at eps {half_eps}, not {eps} / 2")
    clean_err = 1.0 - det["clean"]["acc"]
    fpr = det["clean"]["router_fpr"]
    worst = det["worst_case"]
    fooled, missed = worst["misclassified_by_some_attack"], worst["missed"]
    measured = clean_err + fpr + missed
    goal = clean_err + GOAL_FPR + (1.0 - GOAL_FLAGGED) * fooled
    print(f"AW-Net card {detector_card}: n {det['clean']['n']}, eps {eps}, {len(worst['attacks'])} attacks")
    print(f"  clean error {100 * clean_err:.1f} %, clean FPR {100 * fpr:.1f} %, "
          f"fooled by some attack {100 * fooled:.1f} %, missed {100 * missed:.1f} %")
    print(f"  robust risk with detection at eps {eps}: measured <= {100 * measured:.1f} % "
          f"-> implies a classifier with >= {100 * (1 - measured):.1f} % at eps {half_eps}")
    print(f"  item 4's goal (FPR <= {100 * GOAL_FPR:.0f} %, missed <= {100 * (1 - GOAL_FLAGGED):.0f} % "
          f"of the fooled): <= {100 * goal:.1f} % -> implies >= {100 * (1 - goal):.1f} % at eps {half_eps}")
    hw = half["worst_case"]
    print(f"static card {half_eps_card}: {half['model']['method']} {half['model']['arch']}, "
          f"n {half['clean']['n']}, eps {half_eps}, {len(hw['attacks'])} attacks")
    print(f"  clean {100 * half['clean']['acc']:.1f} %, worst case {100 * hw['acc']:.1f} % at eps {half_eps}")
    gap = (1 - goal) - hw["acc"]
    print(f"  the goal implies {100 * gap:+.1f} points of robust accuracy at eps {half_eps} "
          f"beyond this classifier")


def main(argv: list[str]) -> int:
    """``DETECTOR_CARD HALF_EPS_CARD``, else the usage."""
    if len(argv) != 2:
        sys.exit(__doc__)
    report(argv[0], argv[1])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
