"""``build_dataset``: one entry point for every dataset name."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from .base import check_split
from .info import IMAGEFOLDER_PREFIX, get_dataset_info

__all__ = ["build_dataset"]


def build_dataset(
    name: str,
    split: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    augment: bool = False,
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> Dataset:
    """Dataset ``name`` for ``split`` ("train", "val" or "test").

    Items are ``(image float32 [C, H, W] in [0, 1], label int)``; the dataset has ``.info``
    (:class:`DatasetInfo`), ``.labels`` and ``.tensors()``.

    * ``mnist5k``: the embedded default (4000/500/500); ``augment`` is ignored (digits).
    * ``cifar10``, ``cifar100``, ``svhn``: through torchvision, read from ``root``
      (default ``$AWNET_DATA_ROOT`` or ``~/.cache/awnet/datasets``), downloaded there only
      when ``download=True``. "val" = seeded stratified 10% of the official train set.
      ``augment``: random crop (4-pixel padding) + horizontal flip (no flip for svhn).
    * ``imagefolder:PATH``: see :mod:`training.data.imagefolder`; ``size``/``channels``
      override the first image's.

    Raises :class:`DatasetUnavailableError` (with how-to) when the data cannot be loaded.
    """
    check_split(split)
    key = name.strip()
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        from .imagefolder import load_imagefolder

        path = key[len(IMAGEFOLDER_PREFIX) :]
        return load_imagefolder(path, split, augment=augment, size=size, channels=channels)
    info = get_dataset_info(key)  # ValueError for unknown names
    if info.name == "mnist5k":
        from .embedded import load_mnist5k

        return load_mnist5k(split)
    from .torchvision_sets import load_torchvision_set

    return load_torchvision_set(info.name, split, root=root, download=download, augment=augment)
