"""Router threshold calibrated for a target false-positive rate on clean validation data."""

from __future__ import annotations

import numpy as np

#: The export's threshold rule, also applied by ``evaluate`` to checkpoints (no manifest):
#: the threshold for this clean false-positive rate on the validation split, never below the floor.
#: The floor is 0 (the pure FPR rule): a floor of 0.5 let router-evasion PGD through that the
#: 1 %-FPR threshold (p_adv ~1e-4 on the shipped model) flags (docs/decisions.md, docs/results.md).
DEFAULT_TARGET_FPR = 0.01
DEFAULT_THRESHOLD_FLOOR = 0.0


def threshold_for_fpr(clean_scores: np.ndarray, target_fpr: float) -> float:
    """Smallest threshold t (verdict adversarial when p_adv >= t) whose false-positive
    rate on ``clean_scores`` is at most ``target_fpr``."""
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError("target FPR must lie in [0, 1)")
    s = np.sort(np.asarray(clean_scores, dtype=np.float64))[::-1]  # descending
    allowed = int(np.floor(target_fpr * s.size))  # how many clean samples may be flagged
    if allowed >= s.size:
        return 0.0
    # flag at most `allowed` samples: threshold just above the (allowed+1)-th highest score
    t = float(np.nextafter(np.float32(s[allowed]), np.float32(np.inf)))
    return min(t, 1.0)


def rates(clean_scores: np.ndarray, adv_scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """(FPR on clean, TPR on adversarial) at ``threshold``."""
    return float(np.mean(clean_scores >= threshold)), float(np.mean(adv_scores >= threshold))


def calibrated_threshold(clean_scores: np.ndarray, target_fpr: float, floor: float) -> tuple[float, float]:
    """(threshold, FPR-rule threshold): the export's rule, max(FPR threshold, floor), the one
    the service applies (verdict adversarial when p_adv >= threshold)."""
    fpr_thr = threshold_for_fpr(clean_scores, target_fpr)
    return max(fpr_thr, floor), fpr_thr
