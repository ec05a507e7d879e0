"""Input configuration carried by every model, so nothing hard-codes it twice (timm style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any


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


def digits_config() -> InputConfig:
    """28x28 grey digits (the embedded MNIST subset)."""
    return InputConfig(channels=1, size=(28, 28), class_names=tuple(str(i) for i in range(10)))


CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)


def cifar10_config() -> InputConfig:
    """32x32 RGB CIFAR-10, with the usual channel statistics applied inside the model."""
    return InputConfig(
        channels=3,
        size=(32, 32),
        class_names=CIFAR10_CLASSES,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2471, 0.2435, 0.2616),
    )
