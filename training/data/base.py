"""In-memory image dataset and the seeded stratified hold-out used for validation splits."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .info import DatasetInfo

__all__ = ["SPLITS", "VAL_FRACTION", "VAL_SEED", "TensorImageDataset", "check_split",
           "read_split", "stratified_holdout"]  # fmt: skip

SPLITS = ("train", "val", "test")
#: Share of the official training set held out as "val" (cifar10/100, svhn, imagefolder).
VAL_FRACTION = 0.1
#: Seed of that hold-out (numpy's legacy RandomState: its stream is frozen across versions).
VAL_SEED = 0


def check_split(split: str) -> str:
    """Validate a split name."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def read_split(split: str, full_train: bool) -> str:
    """The split to read: under the full-train protocol (``NAME@full-train``) nothing is held
    out of the training set, so "val" is the test split, as in the papers (which select on it)."""
    check_split(split)
    return "test" if full_train and split == "val" else split


def stratified_holdout(
    labels: Sequence[int] | np.ndarray, fraction: float = VAL_FRACTION, seed: int = VAL_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out), holding out ``fraction`` of every class.

    Per class: ``round(fraction * n)`` images, at least 1 when the class has 2 or more.
    Deterministic for a given ``labels``/``fraction``/``seed``; both outputs are sorted.
    """
    labels = np.asarray(labels)
    rs = np.random.RandomState(seed)
    keep: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_out = int(round(fraction * idx.size))
        n_out = min(max(n_out, 1), idx.size - 1) if idx.size >= 2 else 0
        idx = idx[rs.permutation(idx.size)]
        held.append(idx[:n_out])
        keep.append(idx[n_out:])
    empty = np.empty(0, dtype=np.int64)
    k = np.sort(np.concatenate(keep)).astype(np.int64) if keep else empty
    h = np.sort(np.concatenate(held)).astype(np.int64) if held else empty
    return k, h


class LabelledImages(Dataset):
    """What every dataset here exposes besides items: ``info``, ``labels``, class names."""

    info: DatasetInfo
    labels: torch.Tensor

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    @property
    def targets(self) -> list[int]:
        """Labels as a Python list (torchvision-style)."""
        return self.labels.tolist()


class TensorImageDataset(LabelledImages):
    """Images held in memory as one uint8 tensor ``[N, C, H, W]`` plus int64 labels.

    ``dataset[i]`` is ``(float32 [C, H, W] in [0, 1], int label)``; ``transform`` (e.g.
    :class:`~training.data.augment.RandomCropFlip`) is applied per item.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        info: DatasetInfo,
        split: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError("images must be a uint8 tensor [N, C, H, W]")
        if labels.shape != (images.shape[0],):
            raise ValueError("labels must be a 1-D tensor with one label per image")
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64).contiguous()
        self.info = info
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].to(torch.float32).div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images as float32 ``[N, C, H, W]`` in [0, 1] and labels int64 ``[N]`` (no augmentation)."""
        return self.images.to(torch.float32).div_(255.0), self.labels.clone()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.info.name!r}, split={self.split!r}, "
            f"n={len(self)}, shape={tuple(self.images.shape[1:])}, transform={self.transform!r})"
        )
