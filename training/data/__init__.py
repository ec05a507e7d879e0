"""Data layer of the training module: datasets, splits, augmentation, loaders.

Datasets: ``mnist5k`` (embedded default, no download), ``cifar10``, ``cifar100``, ``svhn``
(optional torchvision) and ``imagefolder:PATH``. See ``docs/data.md``.
"""

from .augment import RandomCropFlip, random_crop_flip
from .base import SPLITS, VAL_FRACTION, VAL_SEED, TensorImageDataset, stratified_holdout
from .datasets import build_dataset
from .embedded import MNIST5K_PATH
from .imagefolder import ImageFolderDataset
from .info import DatasetInfo, DatasetUnavailableError, get_dataset_info, list_datasets
from .loader import make_loader

__all__ = [
    "MNIST5K_PATH",
    "SPLITS",
    "VAL_FRACTION",
    "VAL_SEED",
    "DatasetInfo",
    "DatasetUnavailableError",
    "ImageFolderDataset",
    "RandomCropFlip",
    "TensorImageDataset",
    "build_dataset",
    "get_dataset_info",
    "list_datasets",
    "make_loader",
    "random_crop_flip",
    "stratified_holdout",
]
