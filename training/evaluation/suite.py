"""The attack set of ``python -m training evaluate``: one registry of named attacks.

Every attack knows the whole model: on AW-Net the gradient attacks run end to end through
the router, the signals and the soft MixBN (the served mode), and the adaptive ones add
what an attacker who knows the router would do (Carlini et al. 2019; Tramer et al. 2020):
evade the router while misclassifying, through the soft router and through the forced clean
branch, transfer from the clean branch, and a gradient-free probe of the router (the digit
blend) that shows when the router holds only against gradients. Robust accuracy is the worst case per sample
over all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from models.layers import MIX_CLEAN
from training.attacks import FGSM, PGD, DigitBlend, SelectivePGD
from training.attacks.base import Attack
from training.evaluation import library

DEFAULT_LAMBDAS = (0.3, 1.0, 3.0)
#: the name of the gradient-free probe of the router (the masking check on the flag reads it)
DIGIT_BLEND = "digit-blend"
#: the margin evader's lambdas: the logit margin is unbounded, so its weights sit lower
#: (at 0.3 it already hides every example from the 1 %-FPR threshold, docs/results.md)
MARGIN_LAMBDAS = (0.03, 0.1, 0.3)
BUDGETS = ("standard", "reproduce", "quick")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of the suite: how to build it and what it says about the model."""

    name: str
    title: str
    library: str  # "torchattacks" or "awnet-serve"
    family: str  # "white-box", "black-box", "adaptive" or "transfer"
    crafted_on: str  # what the attacker differentiates: "router (end to end)", "clean branch", "queries"
    build: Callable[[nn.Module], Attack]


@dataclass(frozen=True)
class Budget:
    """Iterations per attack.

    ``standard``: AutoAttack at its reference budgets, PGD/CW/adaptive at 100 steps, and
    Square (1,000 queries) alone as the black-box check.
    ``reproduce``: what six models can afford on two CPU cores (docs/decisions.md): PGD, CW
    and the adaptive attacks at 50 steps; AutoAttack's APGD-CE (100 steps), APGD-T (100
    steps, 3 targets) and Square (1,000 queries) without FAB-T; the black-box check reads
    what Square adds after the gradient attacks instead of a second Square run.
    ``quick``: for tests and smoke runs, never a reported figure.
    """

    pgd_steps: int
    lib_steps: int
    square_queries: int
    aa_square_queries: int
    targets: int | None = None
    fab: bool = True
    standalone_square: bool = True

    @classmethod
    def named(cls, name: str) -> Budget:
        if name == "standard":
            return cls(pgd_steps=100, lib_steps=library.AUTOATTACK_STEPS, square_queries=1000,
                       aa_square_queries=library.AUTOATTACK_SQUARE_QUERIES)  # fmt: skip
        if name == "reproduce":
            return cls(pgd_steps=50, lib_steps=library.AUTOATTACK_STEPS, square_queries=1000, aa_square_queries=1000,
                       targets=3, fab=False, standalone_square=False)  # fmt: skip
        if name == "quick":
            return cls(pgd_steps=10, lib_steps=10, square_queries=100, aa_square_queries=100)
        raise ValueError(f"unknown budget {name!r}; choose from {BUDGETS}")

    @property
    def square_attack(self) -> str:
        """The suite entry that runs Square: alone where the budget has it, else inside AutoAttack."""
        return f"square{self.square_queries}" if self.standalone_square else "autoattack"


def _pgd(eps: float, steps: int, loss: str = "ce", mix=None, **loss_kwargs) -> Callable[[nn.Module], Attack]:
    return lambda m: PGD(m, eps=eps, step_size=2.5 * eps / steps, steps=steps, loss=loss, mix=mix,
                         loss_kwargs=loss_kwargs or None)  # fmt: skip


def build_suite(
    eps: float,
    num_classes: int,
    awnet: bool,
    budget: Budget,
    seed: int = 0,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    threshold: float | None = None,
) -> list[AttackSpec]:
    """The full attack set for a model (AW-Net gets the adaptive attacks too; those that
    aim below the served ``threshold`` need it, and are left out without one)."""
    n, lib_steps = budget.pgd_steps, budget.lib_steps
    e2e = "router (end to end)" if awnet else "model"
    specs = [
        AttackSpec("fgsm", "FGSM", "awnet-serve", "white-box", e2e, lambda m: FGSM(m, eps=eps)),
        AttackSpec("pgd20", "PGD-20 (CE)", "awnet-serve", "white-box", e2e, _pgd(eps, 20)),
        AttackSpec(f"pgd{n}", f"PGD-{n} (CE)", "awnet-serve", "white-box", e2e, _pgd(eps, n)),
        AttackSpec(f"cw{n}", f"CW-inf (PGD-{n} on the CW margin)", "awnet-serve", "white-box", e2e,
                   _pgd(eps, n, loss="cw")),
        AttackSpec(
            "autoattack", f"AutoAttack{' standard' if budget.fab else ' without FAB-T'} (APGD-CE, APGD-T{', FAB-T' if budget.fab else ''}: "
            f"{lib_steps} steps, {budget.targets or num_classes - 1} targets; Square {budget.aa_square_queries})",
            "torchattacks", "white-box", e2e,
            lambda m: library.Ensemble(m, eps, [c for c in library.autoattack_components(
                m, eps, num_classes, seed=seed, steps=lib_steps, square_queries=budget.aa_square_queries,
                targets=budget.targets) if budget.fab or c[0] != "fab-t"]),
        ),
        AttackSpec("apgd-dlr", f"APGD-DLR ({lib_steps} steps)", "torchattacks", "white-box", e2e,
                   lambda m: library.apgd(m, eps, "dlr", steps=lib_steps, seed=seed)),
    ]  # fmt: skip
    if budget.standalone_square:
        specs.append(AttackSpec(budget.square_attack, f"Square ({budget.square_queries} queries, alone)",
                                "torchattacks", "black-box", "queries",
                                lambda m: library.square(m, eps, queries=budget.square_queries, seed=seed)))  # fmt: skip
    if not awnet:
        return specs
    for lam in lambdas:
        specs.append(AttackSpec(
            f"evade-router-l{lam:g}", f"router evasion PGD-{n}, lambda {lam:g}, through the soft router",
            "awnet-serve", "adaptive", "router (end to end)", _pgd(eps, n, loss="ce-evade-router", weight=lam),
        ))  # fmt: skip
    for lam in lambdas:
        specs.append(AttackSpec(
            f"evade-clean-l{lam:g}", f"router evasion PGD-{n}, lambda {lam:g}, through the forced clean branch",
            "awnet-serve", "adaptive", "clean branch + router", _pgd(eps, n, loss="ce-evade-router", mix=MIX_CLEAN, weight=lam),
        ))  # fmt: skip
    for lam in MARGIN_LAMBDAS:
        specs.append(AttackSpec(
            f"evade-margin-l{lam:g}", f"router evasion PGD-{n} on the router's logit margin, lambda {lam:g}",
            "awnet-serve", "adaptive", "router (end to end)", _pgd(eps, n, loss="ce-evade-router-margin", weight=lam),
        ))  # fmt: skip
    if threshold is not None:
        for loss in ("ce", "cw"):
            specs.append(AttackSpec(
                f"selective-{loss}", f"selective PGD-{2 * n} ({loss.upper()}, then the router margin while flagged at "
                f"{threshold:.3g})", "awnet-serve", "adaptive", "router (end to end)",
                lambda m, loss=loss: SelectivePGD(m, eps, threshold, steps=2 * n, loss=loss),
            ))  # fmt: skip
    specs.append(AttackSpec(
        DIGIT_BLEND, "digit blend: eps toward each of 100 other images of the batch, no gradient", "awnet-serve",
        "adaptive", "queries", lambda m: DigitBlend(m, eps, threshold),
    ))  # fmt: skip
    specs.append(AttackSpec(
        "transfer-clean", f"PGD-{n} crafted on the forced clean branch, transferred", "awnet-serve", "transfer",
        "clean branch", _pgd(eps, n, mix=MIX_CLEAN),
    ))  # fmt: skip
    return specs


def select(specs: Sequence[AttackSpec], names: Sequence[str] | None) -> list[AttackSpec]:
    """The specs named in ``names`` (all when None); unknown names are an error."""
    if not names:
        return list(specs)
    known = {s.name: s for s in specs}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown attacks {unknown}; this model's suite has {sorted(known)}")
    return [known[n] for n in names]
