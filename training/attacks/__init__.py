"""Attacks as small objects (torchattacks style): settings in the constructor, the loop in
``perturb``; every attack restores the model's train/eval and MixBN modes and never
mutates its input."""

from training.attacks.base import Attack, preserved_modes
from training.attacks.blend import DigitBlend
from training.attacks.fgsm import FGSM
from training.attacks.losses import ATTACK_LOSSES
from training.attacks.pgd import PGD
from training.attacks.selective import SelectivePGD

__all__ = ["ATTACK_LOSSES", "FGSM", "PGD", "Attack", "DigitBlend", "SelectivePGD", "preserved_modes"]
