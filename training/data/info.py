"""Dataset metadata: :class:`DatasetInfo`, the registry of known names, and the error type."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .tinyimagenet_classes import TINYIMAGENET_CLASSES

__all__ = [
    "FULL_TRAIN_SUFFIX",
    "DatasetInfo",
    "DatasetUnavailableError",
    "IMAGEFOLDER_PREFIX",
    "dataset_source",
    "get_dataset_info",
    "list_datasets",
    "split_protocol",
]

IMAGEFOLDER_PREFIX = "imagefolder:"
#: Appended to any dataset name: train on the whole official training set and validate on
#: the test set (the papers' protocol). Part of the name so that every tool rebuilding a
#: split from a run's config (trainer, export calibration, evaluation) gets the same one.
FULL_TRAIN_SUFFIX = "@full-train"


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

# Sorted WordNet ids are the labels (torchvision ImageFolder's order on train/).
_TINYIMAGENET_NAMES = [TINYIMAGENET_CLASSES[w] for w in sorted(TINYIMAGENET_CLASSES)]

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
    "tinyimagenet": DatasetInfo(
        name="tinyimagenet", channels=3, size=(64, 64), num_classes=200,
        class_names=_TINYIMAGENET_NAMES,
        mean=(0.4802, 0.4481, 0.3975), std=(0.2302, 0.2265, 0.2262), eps=8 / 255,
    ),
}  # fmt: skip

# Where each built-in dataset comes from: decides which options act on it.
_SOURCES = {"mnist5k": "embedded", "cifar10": "torchvision", "cifar100": "torchvision",
            "svhn": "torchvision", "tinyimagenet": "folder"}  # fmt: skip


def list_datasets() -> list[str]:
    """Built-in dataset names. ``imagefolder:PATH`` and the ``@full-train`` suffix are accepted as well."""
    return list(_REGISTRY)


def split_protocol(name: str) -> tuple[str, bool]:
    """``(name without the suffix, full_train)`` for a dataset name like ``cifar10@full-train``."""
    key = name.strip()
    if key.lower().endswith(FULL_TRAIN_SUFFIX):
        return key[: -len(FULL_TRAIN_SUFFIX)], True
    return key, False


def dataset_source(name: str) -> str:
    """Where ``name``'s images come from, without reading them: ``"embedded"`` (mnist5k),
    ``"torchvision"`` (cifar10/100, svhn), ``"folder"`` (tinyimagenet, read from a root) or
    ``"imagefolder"`` (``imagefolder:PATH``). ValueError for unknown names."""
    key, _ = split_protocol(name)
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        return "imagefolder"
    return _SOURCES[get_dataset_info(key).name]


def get_dataset_info(
    name: str, *, size: tuple[int, int] | None = None, channels: int | None = None
) -> DatasetInfo:
    """Metadata for ``name`` (a built-in name or ``imagefolder:PATH``, either possibly with
    the ``@full-train`` suffix, which changes the splits, not the metadata).

    For ``imagefolder:PATH`` the folder's ``train/`` is scanned (class names; channel count
    and size of its first image unless ``size``/``channels`` are given).
    """
    key, _ = split_protocol(name)
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        from .imagefolder import imagefolder_info

        return imagefolder_info(key[len(IMAGEFOLDER_PREFIX) :], size=size, channels=channels)
    try:
        return _REGISTRY[key.lower()]
    except KeyError:
        known = ", ".join([*_REGISTRY, IMAGEFOLDER_PREFIX + "PATH"]) + f" (each optionally + {FULL_TRAIN_SUFFIX})"
        raise ValueError(f"unknown dataset {name!r}; known: {known}") from None
