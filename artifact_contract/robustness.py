"""``evaluation.robustness``: what a model version was measured to withstand.

``python -m training evaluate`` writes a card (every attack, the worst case per image, the
router's figures); ``python -m training export --evaluation CARD`` keeps this summary of it
in the manifest; ``/v1/models`` shows it and the service exports its figures as gauges
(``awnet_model_evaluated_accuracy``, ``awnet_router_evaluated_ratio``) so that the dashboard
can set the adversarial-input rate it observes against what the router was measured to catch.
The keys live here only: the exporter builds a ``Robustness``, the service reads one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from artifact_contract.blocks import Block
from artifact_contract.errors import ArtifactError
from artifact_contract.fields import is_number, is_positive_int

ROBUSTNESS_KEY = "robustness"  # under the manifest's ``evaluation`` block
_SHARES = ("clean_acc", "worst_case_acc", "worst_case_wra", "missed", "detected_share", "clean_fpr",
           "worst_case_adaptive_acc")  # fmt: skip


@dataclass(kw_only=True)
class Robustness(Block):
    """The summary of one evaluation card. Shares are fractions in [0, 1] of the card's
    ``samples`` test images at L-inf ``eps``; the router's figures are None without a router."""

    card_format: str
    split: str
    samples: int
    eps: float
    budget: str
    clean_acc: float
    worst_case_acc: float  # worst case per image over every attack, adaptive ones included
    worst_case_wra: float  # (clean + worst case) / 2
    attacks: dict[str, float]  # accuracy per attack
    sanity_passed: bool  # Carlini et al.'s checks of the card (docs/results.md)
    missed: float | None = None  # misclassified by some attack and not flagged
    detected_share: float | None = None  # of the images some attack misclassifies: flagged
    clean_fpr: float | None = None  # clean images flagged
    worst_case_adaptive_acc: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: Any = "evaluation.robustness") -> Robustness:
        """Validate a parsed block; every error names ``where`` and the field."""
        if not isinstance(data, dict):
            raise ArtifactError(f"{where}: evaluation.robustness must be an object")
        known, extra = cls._split(data)
        try:
            block = cls(**known, extra=extra)
        except TypeError as exc:  # a required key is missing
            raise ArtifactError(f"{where}: evaluation.robustness: {exc}") from None
        return block.validate(where)

    def validate(self, where: Any = "evaluation.robustness") -> Robustness:
        for name in _SHARES:
            value = getattr(self, name)
            if value is not None and not (is_number(value) and 0.0 <= float(value) <= 1.0):
                raise ArtifactError(f"{where}: evaluation.robustness.{name} must be a number in [0, 1], got {value!r}")
        if not (is_number(self.eps) and float(self.eps) > 0):
            raise ArtifactError(f"{where}: evaluation.robustness.eps must be a positive number, got {self.eps!r}")
        if not is_positive_int(self.samples):
            raise ArtifactError(f"{where}: evaluation.robustness.samples must be a positive integer")
        if not isinstance(self.sanity_passed, bool):
            raise ArtifactError(f"{where}: evaluation.robustness.sanity_passed must be true or false")
        if not isinstance(self.attacks, dict) or not all(is_number(v) for v in self.attacks.values()):
            raise ArtifactError(f"{where}: evaluation.robustness.attacks must map attack names to accuracies")
        return self

    @property
    def has_router(self) -> bool:
        return self.detected_share is not None


def robustness_of(evaluation: dict[str, Any] | None, where: Any = "evaluation") -> Robustness | None:
    """The ``evaluation.robustness`` block of a manifest, validated; None when absent."""
    if not isinstance(evaluation, dict) or ROBUSTNESS_KEY not in evaluation:
        return None
    return Robustness.from_dict(evaluation[ROBUSTNESS_KEY], where)
