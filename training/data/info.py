"""Dataset names: the built-in ones, ``imagefolder:PATH``, the ``@full-train`` suffix, where
each one's images come from, and the error type.

The facts about each built-in dataset (channels, size, classes, mean/std, eps) are not kept
here: they are :data:`models.config.DATASETS`, the table the models' default input
configurations come from. :func:`parse_dataset_name` is the one place a name is taken
apart; :func:`training.data.datasets.get_dataset_info` and ``build_dataset`` dispatch on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import DATASETS, DatasetInfo, dataset_info

__all__ = [
    "FULL_TRAIN_SUFFIX",
    "IMAGEFOLDER_PREFIX",
    "DatasetInfo",
    "DatasetName",
    "DatasetUnavailableError",
    "builtin_info",
    "dataset_source",
    "list_datasets",
    "parse_dataset_name",
    "split_protocol",
]

IMAGEFOLDER_PREFIX = "imagefolder:"
#: Appended to any dataset name: train on the whole official training set and validate on
#: the test set (the papers' protocol). Part of the name so that every tool rebuilding a
#: split from a run's config (trainer, export calibration, evaluation) gets the same one.
FULL_TRAIN_SUFFIX = "@full-train"

#: Where each built-in dataset's images come from: decides its loader and which options act
#: on it. Keyed like the facts table (checked below).
_SOURCES = {"mnist5k": "embedded", "cifar10": "torchvision", "cifar10-jpeg": "archive",
            "cifar10-jpeg2k": "embedded", "cifar100": "torchvision", "svhn": "torchvision",
            "tinyimagenet": "folder"}  # fmt: skip
if set(_SOURCES) != set(DATASETS):  # pragma: no cover - a dataset added to one table only
    raise RuntimeError(
        f"training/data/info.py sources {sorted(_SOURCES)} != models.config.DATASETS"
    )
#: Sources whose training split is augmented (random crop + flip) unless --no-augment.
_AUGMENTED_BY_DEFAULT = ("torchvision", "folder", "archive")
#: Embedded datasets of natural images: augmented like their full versions (the digits never).
_AUGMENTED_EMBEDDED = ("cifar10-jpeg2k",)


class DatasetUnavailableError(RuntimeError):
    """A dataset cannot be loaded here; the message says how to get it."""


@dataclass(frozen=True)
class DatasetName:
    """A dataset name taken apart: ``key`` (a built-in name, lower-case, or ``imagefolder:PATH``),
    ``source`` (``"embedded"``, ``"torchvision"``, ``"archive"``, ``"folder"`` or
    ``"imagefolder"``),
    ``folder`` (PATH for ``imagefolder:PATH``, else None) and ``full_train`` (the suffix)."""

    key: str
    source: str
    full_train: bool
    folder: str | None = None

    @property
    def augmented_by_default(self) -> bool:
        """Whether training augments this dataset unless told otherwise (not the digits,
        not an ``imagefolder:`` tree, whose content is unknown)."""
        return self.source in _AUGMENTED_BY_DEFAULT or self.key in _AUGMENTED_EMBEDDED

    @property
    def augmentable(self) -> bool:
        """Whether ``--augment`` may be given (every dataset but the embedded digits)."""
        return self.key != "mnist5k"


def list_datasets() -> list[str]:
    """Built-in dataset names. ``imagefolder:PATH`` and the ``@full-train`` suffix are accepted as well."""
    return list(DATASETS)


def split_protocol(name: str) -> tuple[str, bool]:
    """``(name without the suffix, full_train)`` for a dataset name like ``cifar10@full-train``."""
    key = name.strip()
    if key.lower().endswith(FULL_TRAIN_SUFFIX):
        return key[: -len(FULL_TRAIN_SUFFIX)], True
    return key, False


def parse_dataset_name(name: str) -> DatasetName:
    """Take ``name`` apart (see :class:`DatasetName`); ValueError for unknown names. Reads
    no files."""
    key, full_train = split_protocol(name)
    if key.lower().startswith(IMAGEFOLDER_PREFIX):
        return DatasetName(key, "imagefolder", full_train, folder=key[len(IMAGEFOLDER_PREFIX) :])
    key = key.lower()
    if key not in _SOURCES:
        known = (
            ", ".join([*DATASETS, IMAGEFOLDER_PREFIX + "PATH"])
            + f" (each optionally + {FULL_TRAIN_SUFFIX})"
        )
        raise ValueError(f"unknown dataset {name!r}; known: {known}")
    return DatasetName(key, _SOURCES[key], full_train)


def dataset_source(name: str) -> str:
    """Where ``name``'s images come from, without reading them: ``"embedded"`` (mnist5k,
    cifar10-jpeg2k), ``"torchvision"`` (cifar10/100, svhn), ``"archive"`` (cifar10-jpeg, its
    .tar.gz or extracted folder under a root), ``"folder"`` (tinyimagenet, read from a root)
    or ``"imagefolder"`` (``imagefolder:PATH``). ValueError for unknown names."""
    return parse_dataset_name(name).source


def builtin_info(name: str) -> DatasetInfo:
    """The facts of a built-in dataset (the table's entry; the suffix is allowed). For any
    name, ``imagefolder:PATH`` included, use :func:`training.data.get_dataset_info`."""
    parsed = parse_dataset_name(name)
    if parsed.source == "imagefolder":
        raise ValueError(f"{name!r} is not a built-in dataset: use get_dataset_info")
    return dataset_info(parsed.key)
