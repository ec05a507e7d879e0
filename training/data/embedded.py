"""The embedded default dataset ``mnist5k``: 5,000 real MNIST digits shipped as one npz.

Only ``embedded/mnist5k.npz`` is read (see ``embedded/README.md`` for its provenance and
licence); its fixed, class-stratified split is 4000 train / 500 val / 500 test.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import TensorImageDataset, read_split
from .info import builtin_info

__all__ = ["MNIST5K_PATH", "load_mnist5k", "load_mnist5k_arrays"]

MNIST5K_PATH = Path(__file__).resolve().parent / "embedded" / "mnist5k.npz"


@lru_cache(maxsize=1)
def load_mnist5k_arrays() -> dict[str, np.ndarray]:
    """The npz's arrays (read once per process): images, labels, *_idx, class_names."""
    with np.load(MNIST5K_PATH, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for a in arrays.values():
        a.setflags(write=False)
    return arrays


def load_mnist5k(split: str, full_train: bool = False) -> TensorImageDataset:
    """The ``mnist5k`` dataset for ``split`` ("train", "val" or "test"); never augmented.

    ``full_train``: "train" is train + val (4500, train first), "val" is the test split.
    """
    split = read_split(split, full_train)
    a = load_mnist5k_arrays()
    idx = a[f"{split}_idx"]
    if full_train and split == "train":
        idx = np.concatenate([idx, a["val_idx"]])
    images = torch.from_numpy(a["images"][idx]).unsqueeze(1)  # fancy indexing copies
    labels = torch.from_numpy(a["labels"][idx].astype(np.int64))
    return TensorImageDataset(images, labels, builtin_info("mnist5k"), split)
