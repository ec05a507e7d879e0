"""``build_dataset``: one entry point for every dataset name."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from .base import check_split
from .info import IMAGEFOLDER_PREFIX, get_dataset_info, split_protocol

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
    * ``tinyimagenet``: Tiny-ImageNet-200's standard layout under ``root``, never
      downloaded; "test" is the official (labelled) val set. See
      :mod:`training.data.tinyimagenet`.
    * ``imagefolder:PATH``: see :mod:`training.data.imagefolder`; ``size``/``channels``
      override the first image's.
    * any of these + ``@full-train`` (e.g. ``cifar10@full-train``): the papers' protocol,
      "train" is the whole training set (nothing held out) and "val" is the test split.

    Raises :class:`DatasetUnavailableError` (with how-to) when the data cannot be loaded.
    """
    check_split(split)
    key, full_train = split_protocol(name)
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        from .imagefolder import load_imagefolder

        path = key[len(IMAGEFOLDER_PREFIX) :]
        return load_imagefolder(path, split, augment=augment, size=size, channels=channels, full_train=full_train)
    info = get_dataset_info(key)  # ValueError for unknown names
    if info.name == "mnist5k":
        from .embedded import load_mnist5k

        return load_mnist5k(split, full_train=full_train)
    if info.name == "tinyimagenet":
        if download:
            raise ValueError("tinyimagenet is never downloaded: drop download (--download)")
        from .tinyimagenet import load_tinyimagenet

        return load_tinyimagenet(split, root=root, augment=augment, full_train=full_train)
    from .torchvision_sets import load_torchvision_set

    return load_torchvision_set(info.name, split, root=root, download=download, augment=augment, full_train=full_train)
