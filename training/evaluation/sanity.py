"""Sanity checks of an evaluation (Carlini et al. 2019, "On Evaluating Adversarial
Robustness", section 5): figures that break them mean the attacks, not the model, failed,
most often through masked gradients. Each check returns a verdict with its figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Accuracy points by which a check may be off before it fails (attack randomness).
TOLERANCE = 0.01
#: How much stronger the black-box attack may be than the best white-box one.
BLACK_BOX_MARGIN = 0.02


@dataclass
class Check:
    name: str
    passed: bool
    detail: str
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def eps_monotone(acc_by_eps: dict[float, float], tol: float = TOLERANCE) -> Check:
    eps = sorted(acc_by_eps)
    accs = [acc_by_eps[e] for e in eps]
    bad = [(eps[i], eps[i + 1]) for i in range(len(eps) - 1) if accs[i + 1] > accs[i] + tol]
    return Check("accuracy falls as eps grows", not bad,
                 "ok" if not bad else f"accuracy rises from eps {bad[0][0]:g} to {bad[0][1]:g}",
                 {f"{e:g}": a for e, a in zip(eps, accs, strict=True)})  # fmt: skip


def eps_one_is_zero(acc_at_one: float) -> Check:
    return Check("eps = 1 gives 0 %", acc_at_one == 0.0,
                 "ok" if acc_at_one == 0.0 else f"{acc_at_one:.1%} still correct at eps 1: the attack cannot reach "
                 "inputs that any image can be turned into (masked or obfuscated gradients)", {"acc_eps1": acc_at_one})  # fmt: skip


def more_steps_not_weaker(acc_few: float, acc_many: float, few: int, many: int, tol: float = TOLERANCE) -> Check:
    ok = acc_many <= acc_few + tol
    return Check("more steps never raise accuracy", ok,
                 "ok" if ok else f"PGD-{many} leaves {acc_many:.1%} correct, PGD-{few} {acc_few:.1%}",
                 {f"pgd{few}": acc_few, f"pgd{many}": acc_many})  # fmt: skip


def black_box_not_stronger(acc_black: float, acc_white: dict[str, float], margin: float = BLACK_BOX_MARGIN) -> Check:
    best_name = min(acc_white, key=acc_white.get)
    best = acc_white[best_name]
    ok = acc_black >= best - margin
    return Check("black-box attack not stronger than white-box", ok,
                 "ok" if ok else f"Square leaves {acc_black:.1%} correct, the best white-box attack ({best_name}) "
                 f"{best:.1%}: a sign of masked gradients", {"black_box": acc_black, "best_white_box": best,
                                                             "best_white_box_attack": best_name, "margin": margin})  # fmt: skip


def black_box_adds_little(stages: dict[str, int], n: int, margin: float = BLACK_BOX_MARGIN) -> Check:
    """AutoAttack's own reading: Square, run after the gradient attacks, should flip almost
    nothing they left standing; if it flips more than ``margin`` of the images, the
    gradients were masked."""
    names = list(stages)
    before = stages[names[names.index("square") - 1]]
    added = (before - stages["square"]) / n
    ok = added <= margin
    return Check("black-box attack not stronger than white-box", ok,
                 "ok" if ok else f"Square flips {added:.1%} of the images after the gradient attacks: masked gradients",
                 {"square_added": added, "margin": margin})  # fmt: skip


def flag_not_masked(missed_free: float, missed_gradient: dict[str, float], margin: float = BLACK_BOX_MARGIN) -> Check:
    """The black-box check on the detector: a gradient-free attack (the digit blend) should
    not get more images misclassified *and* unflagged than the best gradient attack; if it
    does, the router holds only where its gradients mislead (docs/results.md: CCAT's flag)."""
    best_name = max(missed_gradient, key=missed_gradient.get)
    best = missed_gradient[best_name]
    ok = missed_free <= best + margin
    return Check("gradient-free attack gets past the router no more than the gradient ones", ok,
                 "ok" if ok else f"the digit blend misses {missed_free:.1%} of the images, the best gradient attack "
                 f"({best_name}) {best:.1%}: the router's gradients mislead the attacks (masking)",
                 {"gradient_free_missed": missed_free, "best_gradient_missed": best,
                  "best_gradient_attack": best_name, "margin": margin})  # fmt: skip
