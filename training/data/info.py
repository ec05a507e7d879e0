"""Dataset metadata: :class:`DatasetInfo`, the registry of known names, and the error type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "DatasetInfo",
    "DatasetUnavailableError",
    "IMAGEFOLDER_PREFIX",
    "get_dataset_info",
    "list_datasets",
]

IMAGEFOLDER_PREFIX = "imagefolder:"


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here; the message says how to get it."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset.

    ``mean``/``std`` are per channel, on the [0, 1] pixel scale, for the model's internal
    normalisation (inputs stay in [0, 1]). ``eps`` is the default L-inf attack budget.
    """

    name: str
    channels: int
    size: tuple[int, int]
    num_classes: int
    class_names: list[str] = field(default_factory=list)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    eps: float = 8 / 255

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        for k in ("size", "mean", "std"):
            d[k] = list(d[k])
        return d


_DIGITS = [str(i) for i in range(10)]

_CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# CIFAR-100 fine labels, in label order (= alphabetical, as in the dataset's meta file).
_CIFAR100_CLASSES = [
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm",
]  # fmt: skip

_REGISTRY: dict[str, DatasetInfo] = {
    "mnist5k": DatasetInfo(
        name="mnist5k", channels=1, size=(28, 28), num_classes=10, class_names=_DIGITS,
        mean=(0.1307,), std=(0.3081,), eps=0.3,
    ),
    "cifar10": DatasetInfo(
        name="cifar10", channels=3, size=(32, 32), num_classes=10, class_names=_CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), eps=8 / 255,
    ),
    "cifar100": DatasetInfo(
        name="cifar100", channels=3, size=(32, 32), num_classes=100,
        class_names=_CIFAR100_CLASSES,
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), eps=8 / 255,
    ),
    "svhn": DatasetInfo(
        name="svhn", channels=3, size=(32, 32), num_classes=10, class_names=_DIGITS,
        mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), eps=8 / 255,
    ),
}  # fmt: skip


def list_datasets() -> list[str]:
    """Built-in dataset names. ``imagefolder:PATH`` is accepted as well."""
    return list(_REGISTRY)


def get_dataset_info(
    name: str, *, size: tuple[int, int] | None = None, channels: int | None = None
) -> DatasetInfo:
    """Metadata for ``name`` (a built-in name or ``imagefolder:PATH``).

    For ``imagefolder:PATH`` the folder's ``train/`` is scanned (class names; channel count
    and size of its first image unless ``size``/``channels`` are given).
    """
    key = name.strip()
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        from .imagefolder import imagefolder_info

        return imagefolder_info(key[len(IMAGEFOLDER_PREFIX) :], size=size, channels=channels)
    try:
        return _REGISTRY[key.lower()]
    except KeyError:
        known = ", ".join([*_REGISTRY, IMAGEFOLDER_PREFIX + "PATH"])
        raise ValueError(f"unknown dataset {name!r}; known: {known}") from None
