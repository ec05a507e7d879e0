"""Training methods by name."""

from training.methods.awnet import AWNetMethod
from training.methods.base import Method
from training.methods.static import PGDAT, TRADES, Standard

METHOD_CLASSES: dict[str, type[Method]] = {
    "standard": Standard,
    "pgd-at": PGDAT,
    "trades": TRADES,
    "awnet": AWNetMethod,
}

__all__ = ["METHOD_CLASSES", "AWNetMethod", "Method", "PGDAT", "Standard", "TRADES"]
