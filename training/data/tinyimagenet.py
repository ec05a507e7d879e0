"""``tinyimagenet``: Tiny-ImageNet-200 read from its standard folder layout, never downloaded.

Layout (as unzipped from ``tiny-imagenet-200.zip``), under ``--data-root`` or in its
``tiny-imagenet-200/`` sub-folder::

    wnids.txt                          the tree's classes, one WordNet id a line
    words.txt                          WordNet glosses (not needed: names are built in)
    train/<wnid>/images/*.JPEG         500 per class
    val/images/*.JPEG                  10,000 labelled images
    val/val_annotations.txt            <file> TAB <wnid> TAB <box>

The official test set has no labels, so this project's "test" split is the official
``val/``; "train"/"val" are the official ``train/`` split 90/10 (seeded, stratified), or
with ``@full-train`` all of ``train/`` and the official ``val/``. Labels index the 200
sorted WordNet ids, so a tree holding a subset of the classes keeps the same labels.
Images are read lazily with Pillow (grey JPEGs become RGB).
"""

from __future__ import annotations

import os
from pathlib import Path

from models.tinyimagenet_classes import TINYIMAGENET_CLASSES

from .augment import RandomCropFlip
from .base import read_split, stratified_holdout
from .imagefolder import ImageFolderDataset
from .info import DatasetUnavailableError, builtin_info
from .torchvision_sets import default_root

__all__ = ["TINYIMAGENET_DIR", "load_tinyimagenet", "tinyimagenet_root"]

TINYIMAGENET_DIR = "tiny-imagenet-200"
_HOW_TO = (
    "Tiny-ImageNet is never downloaded by this project: fetch tiny-imagenet-200.zip "
    "(http://cs231n.stanford.edu/tiny-imagenet-200.zip), unzip it, and pass --data-root "
    f"pointing to the folder holding {TINYIMAGENET_DIR}/ (or to that folder itself)"
)
_LABELS = {w: i for i, w in enumerate(sorted(TINYIMAGENET_CLASSES))}


def tinyimagenet_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``wnids.txt``: ``root`` or ``root/tiny-imagenet-200``
    (``root`` defaults to ``$AWNET_DATA_ROOT`` or ``~/.cache/awnet/datasets``)."""
    base = Path(root).expanduser() if root is not None else default_root()
    for candidate in (base / TINYIMAGENET_DIR, base):
        if (candidate / "wnids.txt").is_file():
            return candidate
    raise DatasetUnavailableError(
        f"tinyimagenet: no wnids.txt in {base} or {base / TINYIMAGENET_DIR}. {_HOW_TO}."
    )


def _wnids(root: Path) -> list[str]:
    wnids = [w.strip() for w in (root / "wnids.txt").read_text().split() if w.strip()]
    unknown = sorted(set(wnids) - set(_LABELS))
    if unknown:
        raise DatasetUnavailableError(
            f"tinyimagenet: {root / 'wnids.txt'} lists classes that are not Tiny-ImageNet-200's: "
            f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}; for another class-per-folder tree "
            "use imagefolder:PATH"
        )
    return sorted(set(wnids))


def _train_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for w in wnids:
        folder = root / "train" / w / "images"
        if not folder.is_dir():
            raise DatasetUnavailableError(
                f"tinyimagenet: {folder} is missing (wnids.txt lists {w}). {_HOW_TO}."
            )
        found = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpeg", ".jpg"))
        files += found
        labels += [_LABELS[w]] * len(found)
    return files, labels


def _val_files(root: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    """The official val set in its annotation file's order (classes mixed)."""
    ann = root / "val" / "val_annotations.txt"
    if not ann.is_file():
        raise DatasetUnavailableError(f"tinyimagenet: {ann} is missing. {_HOW_TO}.")
    known = set(wnids)
    files: list[Path] = []
    labels: list[int] = []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in known:
            raise ValueError(
                f"tinyimagenet: {ann}:{n}: expected '<file>\\t<wnid from wnids.txt>...', got {line!r}"
            )
        files.append(root / "val" / "images" / parts[0])
        labels.append(_LABELS[parts[1]])
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DatasetUnavailableError(
            f"tinyimagenet: {len(missing)} images of {ann} are missing, e.g. {missing[0]}"
        )
    return files, labels


def load_tinyimagenet(
    split: str,
    root: str | os.PathLike[str] | None = None,
    augment: bool = False,
    full_train: bool = False,
) -> ImageFolderDataset:
    """The ``split`` of Tiny-ImageNet-200 (see module docstring), read lazily.

    ``augment=True``: random crop after 4 pixels of zero padding plus a horizontal flip,
    the usual Tiny-ImageNet adversarial-training augmentation.
    """
    split = read_split(split, full_train)
    tree = tinyimagenet_root(root)
    wnids = _wnids(tree)
    if split == "test":
        files, labels = _val_files(tree, wnids)
    else:
        files, labels = _train_files(tree, wnids)
        if not full_train:
            keep, held = stratified_holdout(labels)
            idx = keep if split == "train" else held
            files = [files[i] for i in idx]
            labels = [labels[i] for i in idx]
    transform = RandomCropFlip(padding=4, flip=True) if augment else None
    return ImageFolderDataset(files, labels, builtin_info("tinyimagenet"), split, transform)
