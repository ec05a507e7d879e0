"""CIFAR-10, CIFAR-100 and SVHN through torchvision (optional dependency).

Nothing is downloaded unless ``download=True``. The "val" split is a seeded, class-
stratified 10% of the official training set (:func:`~training.data.base.stratified_holdout`),
"train" is the other 90%, and "test" is the official test set. With ``full_train`` (the
papers' protocol) "train" is the whole official training set and "val" the test set.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import RandomCropFlip
from .base import TensorImageDataset, read_split, stratified_holdout
from .info import DatasetUnavailableError, builtin_info

__all__ = ["TORCHVISION_SETS", "default_root", "load_torchvision_set"]

# name -> (torchvision class, folder/files torchvision expects under root, horizontal flip?)
TORCHVISION_SETS: dict[str, tuple[str, str, bool]] = {
    "cifar10": ("CIFAR10", "a folder holding cifar-10-batches-py", True),
    "cifar100": ("CIFAR100", "a folder holding cifar-100-python", True),
    # Digits: no horizontal flip.
    "svhn": ("SVHN", "a folder holding train_32x32.mat and test_32x32.mat", False),
}


def default_root() -> Path:
    """``$AWNET_DATA_ROOT`` if set, else ``~/.cache/awnet/datasets``."""
    env = os.environ.get("AWNET_DATA_ROOT")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "awnet" / "datasets"


def _how_to(name: str) -> str:
    holder = TORCHVISION_SETS[name][1]
    return f"rerun with --download, or pass --data-root pointing to {holder}"


def _import_tv_datasets(name: str) -> Any:
    try:
        return importlib.import_module("torchvision.datasets")
    except Exception as e:  # ImportError, or a torchvision built for another torch
        raise DatasetUnavailableError(
            f"dataset {name!r} needs torchvision, which cannot be imported here "
            f"({type(e).__name__}: {e}). To get it: pip install torchvision (a build matching "
            f"your torch {torch.__version__}), then {_how_to(name)}. "
            "The embedded default 'mnist5k' and 'imagefolder:PATH' need no torchvision."
        ) from e


def _load_official(
    name: str, train: bool, root: Path, download: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Official train or test split as (uint8 [N, C, H, W], int64 [N])."""
    tvd = _import_tv_datasets(name)
    cls = getattr(tvd, TORCHVISION_SETS[name][0])
    try:
        if name == "svhn":
            ds = cls(str(root), split="train" if train else "test", download=download)
            images = np.asarray(ds.data)  # already [N, 3, 32, 32]
            labels = np.asarray(ds.labels)  # torchvision maps label 10 to 0
        else:
            ds = cls(str(root), train=train, download=download)
            images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # [N, 32, 32, 3] -> NCHW
            labels = np.asarray(ds.targets)
    except Exception as e:
        what = "could not be downloaded" if download else "was not found"
        raise DatasetUnavailableError(
            f"dataset {name!r} {what} under {root} ({type(e).__name__}: {e}). "
            f"To get it: {_how_to(name)}."
        ) from e
    return np.ascontiguousarray(images, dtype=np.uint8), labels.astype(np.int64)


def load_torchvision_set(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    augment: bool = False,
    full_train: bool = False,
) -> TensorImageDataset:
    """``cifar10``/``cifar100``/``svhn`` as an in-memory dataset (see module docstring)."""
    split = read_split(split, full_train)
    if name not in TORCHVISION_SETS:
        raise ValueError(f"not a torchvision dataset: {name!r}")
    root_path = Path(root).expanduser() if root is not None else default_root()
    images, labels = _load_official(name, split != "test", root_path, download)
    if split != "test" and not full_train:
        keep, held = stratified_holdout(labels)
        idx = keep if split == "train" else held
        images, labels = images[idx], labels[idx]
    transform = None
    if augment:
        transform = RandomCropFlip(padding=4, flip=TORCHVISION_SETS[name][2])
    return TensorImageDataset(
        torch.from_numpy(images), torch.from_numpy(labels), builtin_info(name), split, transform
    )
