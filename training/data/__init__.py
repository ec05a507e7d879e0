"""Data layer of the training module: datasets, splits, augmentation, loaders.

Datasets: ``mnist5k`` (embedded default, no download), ``cifar10``, ``cifar100``, ``svhn``
(optional torchvision), ``tinyimagenet`` (its standard folder layout) and
``imagefolder:PATH``; ``NAME@full-train`` is the papers' protocol (the whole training set,
validation on the test split). See ``docs/data.md``.
"""

from .augment import RandomCropFlip, random_crop_flip
from .base import SPLITS, VAL_FRACTION, VAL_SEED, TensorImageDataset, stratified_holdout
from .datasets import build_dataset, get_dataset_info
from .embedded import MNIST5K_PATH
from .imagefolder import ImageFolderDataset
from .info import (
    FULL_TRAIN_SUFFIX,
    DatasetInfo,
    DatasetName,
    DatasetUnavailableError,
    dataset_source,
    list_datasets,
    parse_dataset_name,
    split_protocol,
)
from .loader import make_loader

__all__ = [
    "FULL_TRAIN_SUFFIX",
    "MNIST5K_PATH",
    "SPLITS",
    "VAL_FRACTION",
    "VAL_SEED",
    "DatasetInfo",
    "DatasetName",
    "DatasetUnavailableError",
    "ImageFolderDataset",
    "RandomCropFlip",
    "TensorImageDataset",
    "build_dataset",
    "dataset_source",
    "get_dataset_info",
    "list_datasets",
    "make_loader",
    "parse_dataset_name",
    "random_crop_flip",
    "split_protocol",
    "stratified_holdout",
]
