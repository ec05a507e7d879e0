"""Attacks from an established library (torchattacks), as this project's Attack objects.

Why torchattacks and not our own code: an evaluation that only uses the attacks the model
was trained against proves little; AutoAttack's parameter-free attacks are the field's
reference (Croce & Hein, ICML 2020), and RobustBench reports them. torchattacks is installed
without its declared dependencies (it declares torchvision, which does not load beside our
CPU torch pin; see docs/decisions.md).

``torchattacks.AutoAttack`` builds its components with torchattacks' default of 10
iterations; the reference AutoAttack (``version='standard'``) runs APGD-CE and APGD-T for
100 iterations, FAB-T for 100 and Square for 5,000 queries, the targeted attacks over the 9
highest other classes. :func:`autoattack_components` builds those components at the
reference budgets; :class:`Ensemble` chains them the way AutoAttack does (each attack only
on the points still classified correctly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from training.attacks.base import Attack

AUTOATTACK_STEPS = 100
AUTOATTACK_SQUARE_QUERIES = 5000


def _torchattacks():
    try:
        import torchattacks
    except ImportError as exc:  # pragma: no cover - a set-up problem, not a code path
        raise RuntimeError(
            "the evaluation needs torchattacks: pip install --no-deps 'torchattacks==3.5.1' scipy "
            "(make setup does it)"
        ) from exc
    return torchattacks


class LibraryAttack(Attack):
    """A torchattacks attack built by ``factory(model)`` when the attack runs.

    Built late so it sees the model with our modes already set (eval, forced mix); the
    library's own mode switching then finds eval mode and leaves it.
    """

    def __init__(
        self, model: nn.Module, eps: float, factory: Callable[[nn.Module], Any], label: str, mix: Any = None
    ) -> None:
        super().__init__(model, eps, mix=mix)
        self.factory = factory
        self.label = label

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        atk = self.factory(self.model)
        x_adv = atk(x, y)
        return self.project(x_adv, x)  # the library already projects; this only guards eps


def apgd(model: nn.Module, eps: float, loss: str = "ce", steps: int = AUTOATTACK_STEPS, seed: int = 0,
         restarts: int = 1, mix: Any = None) -> LibraryAttack:  # fmt: skip
    """APGD (Croce & Hein 2020) with the CE or the DLR loss."""
    ta = _torchattacks()
    return LibraryAttack(
        model, eps, lambda m: ta.APGD(m, norm="Linf", eps=eps, steps=steps, n_restarts=restarts, seed=seed, loss=loss),
        f"APGD-{loss.upper()} ({steps} steps)", mix=mix,
    )  # fmt: skip


def _targets(attack: Any, targets: int | None) -> Any:
    """Limit a targeted attack to the ``targets`` highest other classes (None: all, K - 1)."""
    if targets is not None:
        attack.n_target_classes = min(int(targets), attack.n_target_classes)
    return attack


def apgd_t(model: nn.Module, eps: float, num_classes: int, steps: int = AUTOATTACK_STEPS, seed: int = 0,
           targets: int | None = None) -> LibraryAttack:  # fmt: skip
    ta = _torchattacks()
    return LibraryAttack(
        model, eps,
        lambda m: _targets(ta.APGDT(m, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, n_classes=num_classes), targets),
        f"APGD-T ({steps} steps, {targets or num_classes - 1} targets)",
    )  # fmt: skip


def fab_t(model: nn.Module, eps: float, num_classes: int, steps: int = AUTOATTACK_STEPS, seed: int = 0,
          targets: int | None = None) -> LibraryAttack:  # fmt: skip
    ta = _torchattacks()
    return LibraryAttack(
        model, eps,
        lambda m: _targets(ta.FAB(m, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=seed, multi_targeted=True,
                                  n_classes=num_classes), targets),
        f"FAB-T ({steps} steps, {targets or num_classes - 1} targets)",
    )  # fmt: skip


def square(model: nn.Module, eps: float, queries: int = AUTOATTACK_SQUARE_QUERIES, seed: int = 0) -> LibraryAttack:
    """Square (Andriushchenko et al. 2020): gradient-free, so masked gradients do not stop it."""
    ta = _torchattacks()
    return LibraryAttack(
        model, eps, lambda m: ta.Square(m, norm="Linf", eps=eps, n_queries=queries, n_restarts=1, seed=seed),
        f"Square ({queries} queries)",
    )  # fmt: skip


def autoattack_components(model: nn.Module, eps: float, num_classes: int, seed: int = 0,
                          steps: int = AUTOATTACK_STEPS, square_queries: int = AUTOATTACK_SQUARE_QUERIES,
                          targets: int | None = None) -> list[tuple[str, LibraryAttack]]:  # fmt: skip
    """AutoAttack ``standard``: APGD-CE, APGD-T, FAB-T, Square, at the reference budgets
    (``targets`` None: the reference's K - 1 target classes)."""
    return [
        ("apgd-ce", apgd(model, eps, "ce", steps=steps, seed=seed)),
        ("apgd-t", apgd_t(model, eps, num_classes, steps=steps, seed=seed, targets=targets)),
        ("fab-t", fab_t(model, eps, num_classes, steps=steps, seed=seed, targets=targets)),
        ("square", square(model, eps, queries=square_queries, seed=seed)),
    ]


class Ensemble(Attack):
    """Attacks in sequence, each on the points the previous ones did not flip (AutoAttack's
    rule). ``last_counts`` holds how many points were still correct after each component."""

    def __init__(self, model: nn.Module, eps: float, components: Sequence[tuple[str, Attack]]) -> None:
        super().__init__(model, eps)
        self.components = list(components)
        self.last_counts: list[tuple[str, int]] = []

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = x.clone()
        with torch.no_grad():
            alive = self.model(x).argmax(1) == y
        self.last_counts = [("clean", int(alive.sum()))]
        for name, attack in self.components:
            idx = alive.nonzero().flatten()
            if idx.numel():
                xa = attack(x[idx], y[idx])
                with torch.no_grad():
                    fooled = self.model(xa).argmax(1) != y[idx]
                x_adv[idx[fooled]] = xa[fooled]
                alive[idx[fooled]] = False
            self.last_counts.append((name, int(alive.sum())))
        return x_adv
