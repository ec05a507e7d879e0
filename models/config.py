"""What a model expects as input, and the one table of dataset facts it is derived from.

Models carry their input configuration (timm's ``pretrained_cfg``); this module owns the
facts behind it: every built-in dataset's channels, size, class names, pixel range,
normalisation statistics and default attack budget, in :data:`DATASETS`. A model's
default :class:`InputConfig` *is* a table entry's ``input_config`` (``digits_config()``
is ``DATASETS["mnist5k"].input_config``), and ``training.data`` reads the same entries,
so no fact is written twice. Nothing here imports torch or ``training``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from models.tinyimagenet_classes import TINYIMAGENET_CLASSES

__all__ = [
    "CIFAR10_CLASSES",
    "DATASETS",
    "DatasetInfo",
    "InputConfig",
    "cifar10_config",
    "dataset_info",
    "digits_config",
]


@dataclass(frozen=True)
class InputConfig:
    """What a model expects: NCHW float32 images with pixels in ``pixel_range``.

    ``mean``/``std`` are applied *inside* the model, so attack budgets (eps) stay in
    pixel units of the [0, 1] input.
    """

    channels: int
    size: tuple[int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    pixel_range: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        if not self.mean:
            object.__setattr__(self, "mean", (0.0,) * self.channels)
        if not self.std:
            object.__setattr__(self, "std", (1.0,) * self.channels)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if any(s <= 0 for s in self.std):
            raise ValueError("std must be positive")
        if len(self.class_names) < 2:
            raise ValueError("a classifier needs at least two classes")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["class_names"] = list(self.class_names)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["pixel_range"] = list(self.pixel_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputConfig:
        return cls(
            channels=int(d["channels"]),
            size=tuple(d["size"]),
            class_names=tuple(d["class_names"]),
            mean=tuple(d.get("mean", ())),
            std=tuple(d.get("std", ())),
            pixel_range=tuple(d.get("pixel_range", (0.0, 1.0))),
        )

    def replace(self, **kw: Any) -> InputConfig:
        return replace(self, **kw)


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: its name, the :class:`InputConfig` a model of it takes
    (channels, size, class names, pixel range, per-channel ``mean``/``std`` on the [0, 1]
    scale for the model's internal normalisation) and ``eps``, its default L-inf attack
    budget. The input fields are read through to ``input_config``, never stored twice.
    """

    name: str
    input_config: InputConfig
    eps: float = 8 / 255

    @property
    def channels(self) -> int:
        return self.input_config.channels

    @property
    def size(self) -> tuple[int, int]:
        return self.input_config.size

    @property
    def num_classes(self) -> int:
        return self.input_config.num_classes

    @property
    def class_names(self) -> list[str]:
        """A fresh list (the table itself stays immutable)."""
        return list(self.input_config.class_names)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.input_config.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.input_config.std

    @property
    def pixel_range(self) -> tuple[float, float]:
        return self.input_config.pixel_range

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly and flat (what checkpoints record under ``"dataset"``)."""
        ic = self.input_config.to_dict()
        return {"name": self.name, "channels": ic["channels"], "size": ic["size"],
                "num_classes": self.num_classes, "class_names": ic["class_names"],
                "mean": ic["mean"], "std": ic["std"], "pixel_range": ic["pixel_range"],
                "eps": self.eps}  # fmt: skip


def _dataset(
    name: str, channels: int, size: tuple[int, int], class_names: tuple[str, ...],
    mean: tuple[float, ...], std: tuple[float, ...], eps: float,
) -> DatasetInfo:  # fmt: skip
    ic = InputConfig(channels=channels, size=size, class_names=class_names, mean=mean, std=std)
    return DatasetInfo(name=name, input_config=ic, eps=eps)


DIGITS = tuple(str(i) for i in range(10))

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

# CIFAR-100 fine labels, in label order (= alphabetical, as in the dataset's meta file).
CIFAR100_CLASSES = (
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
)  # fmt: skip

# Sorted WordNet ids are the labels (torchvision ImageFolder's order on train/).
TINYIMAGENET_NAMES = tuple(TINYIMAGENET_CLASSES[w] for w in sorted(TINYIMAGENET_CLASSES))

#: The dataset facts, by name (docs/decisions.md, "Dataset facts"). The statistics are the
#: training sets' per-channel mean/std; what trained checkpoints and the shipped model use.
DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        _dataset("mnist5k", 1, (28, 28), DIGITS, (0.1307,), (0.3081,), eps=0.3),
        _dataset("cifar10", 3, (32, 32), CIFAR10_CLASSES,
                 (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), eps=8 / 255),
        # The JPEG copy of CIFAR-10 (training/data/cifar10_jpeg.py) and its embedded 2,000:
        # CIFAR-10's facts, so that a model of either serves CIFAR-10-like photos alike.
        *(_dataset(name, 3, (32, 32), CIFAR10_CLASSES,
                   (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), eps=8 / 255)
          for name in ("cifar10-jpeg", "cifar10-jpeg2k")),
        _dataset("cifar100", 3, (32, 32), CIFAR100_CLASSES,
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), eps=8 / 255),
        _dataset("svhn", 3, (32, 32), DIGITS,
                 (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), eps=8 / 255),
        _dataset("tinyimagenet", 3, (64, 64), TINYIMAGENET_NAMES,
                 (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262), eps=8 / 255),
    )
}  # fmt: skip


def dataset_info(name: str) -> DatasetInfo:
    """The table's entry for a built-in dataset name (case-insensitive); KeyError otherwise."""
    try:
        return DATASETS[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; built in: {', '.join(DATASETS)}") from None


def digits_config() -> InputConfig:
    """28x28 grey digits: the embedded MNIST subset's (``mnist5k``) input configuration."""
    return DATASETS["mnist5k"].input_config


def cifar10_config() -> InputConfig:
    """32x32 RGB CIFAR-10, with its channel statistics applied inside the model."""
    return DATASETS["cifar10"].input_config
