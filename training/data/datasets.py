"""``get_dataset_info`` and ``build_dataset``: the one dispatch on a dataset name's source."""

from __future__ import annotations

import os

from torch.utils.data import Dataset

from .base import check_split
from .cifar10_jpeg import load_cifar10_jpeg, load_cifar10_jpeg2k
from .embedded import load_mnist5k
from .imagefolder import imagefolder_info, load_imagefolder
from .info import DatasetInfo, builtin_info, parse_dataset_name
from .tinyimagenet import load_tinyimagenet
from .torchvision_sets import load_torchvision_set

__all__ = ["build_dataset", "get_dataset_info"]


def get_dataset_info(
    name: str, *, size: tuple[int, int] | None = None, channels: int | None = None
) -> DatasetInfo:
    """Metadata for ``name`` (a built-in name or ``imagefolder:PATH``, either possibly with
    the ``@full-train`` suffix, which changes the splits, not the metadata).

    A built-in name gives its entry of :data:`models.config.DATASETS`, the table the
    models' input configurations come from (``size``/``channels`` are ignored). For
    ``imagefolder:PATH`` the folder's ``train/`` is scanned (class names; channel count and
    size of its first image unless ``size``/``channels`` are given). The model input
    configuration of either is ``.input_config``.
    """
    ds = parse_dataset_name(name)  # ValueError for unknown names
    if ds.source == "imagefolder":
        return imagefolder_info(ds.folder, size=size, channels=channels)
    return builtin_info(ds.key)


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
    * ``cifar10-jpeg``: the 60,000 CIFAR-10 JPEG files from their ``.tar.gz`` or extracted
      folder under ``root`` (checked, decoded once, cached); the ``cifar10`` splits.
      ``cifar10-jpeg2k``: 2,000 of them embedded (900/100/1,000). See
      :mod:`training.data.cifar10_jpeg`.
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
    ds = parse_dataset_name(name)  # ValueError for unknown names
    if ds.source == "imagefolder":
        return load_imagefolder(
            ds.folder,
            split,
            augment=augment,
            size=size,
            channels=channels,
            full_train=ds.full_train,
        )
    if ds.key == "mnist5k":
        return load_mnist5k(split, full_train=ds.full_train)
    if ds.key == "cifar10-jpeg2k":
        return load_cifar10_jpeg2k(split, augment=augment, full_train=ds.full_train)
    if ds.source == "archive":
        if download:
            raise ValueError("cifar10-jpeg is never downloaded: drop download (--download)")
        return load_cifar10_jpeg(split, root=root, augment=augment, full_train=ds.full_train)
    if ds.source == "folder":
        if download:
            raise ValueError("tinyimagenet is never downloaded: drop download (--download)")
        return load_tinyimagenet(split, root=root, augment=augment, full_train=ds.full_train)
    return load_torchvision_set(
        ds.key, split, root=root, download=download, augment=augment, full_train=ds.full_train
    )
