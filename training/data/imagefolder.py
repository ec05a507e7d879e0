"""``imagefolder:PATH``: any class-per-folder image tree, read with PIL (no torchvision).

Layout::

    PATH/train/<class>/*.png|jpg|...   (required)
    PATH/val/<class>/*                 (optional: else a seeded, stratified 10% of train)
    PATH/test/<class>/*                (required for split "test")

``imagefolder:PATH@full-train``: "train" is ``train/`` plus ``val/``, "val" is ``test/``.

Class names are the ``train/`` sub-folder names, sorted; label = index in that list.
Every image is converted to the channel count (1 = grey, 3 = RGB) and size of the first
training image (first class folder, first file, sorted by name) unless ``channels``/``size``
are given; other sizes are resized (bilinear).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from models.config import InputConfig

from .augment import RandomCropFlip
from .base import LabelledImages, read_split, stratified_holdout
from .info import IMAGEFOLDER_PREFIX, DatasetInfo, DatasetUnavailableError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "imagefolder_info", "load_imagefolder"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm")  # fmt: skip
_GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

_LAYOUT = (
    "expected PATH/train/<class>/<image>, optional PATH/val/<class>/..., PATH/test/<class>/..."
)


def _root(path: str | os.PathLike[str]) -> Path:
    root = Path(path).expanduser()
    if not (root / "train").is_dir():
        raise DatasetUnavailableError(f"imagefolder: no train/ folder under {root} ({_LAYOUT})")
    return root


def _class_names(root: Path) -> list[str]:
    names = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not names:
        raise DatasetUnavailableError(
            f"imagefolder: no class folders in {root / 'train'} ({_LAYOUT})"
        )
    return names


def _scan(split_dir: Path, class_names: list[str]) -> tuple[list[Path], list[int]]:
    """Image files (sorted by class, then name) and their labels."""
    index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and d.name not in index)
    if unknown:
        raise ValueError(f"imagefolder: {split_dir} has classes not in train/: {unknown}")
    files: list[Path] = []
    labels: list[int] = []
    for c in class_names:
        d = split_dir / c
        if not d.is_dir():
            continue
        for f in sorted(d.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(index[c])
    return files, labels


def imagefolder_info(
    path: str | os.PathLike[str], size: tuple[int, int] | None = None, channels: int | None = None
) -> DatasetInfo:
    """:class:`DatasetInfo` of an ImageFolder tree (mean/std 0.5 per channel, eps 8/255)."""
    root = _root(path)
    names = _class_names(root)
    if size is None or channels is None:
        from PIL import Image

        files, _ = _scan(root / "train", names)
        if not files:
            raise DatasetUnavailableError(f"imagefolder: no images under {root / 'train'}")
        with Image.open(files[0]) as img:
            if channels is None:
                channels = 1 if img.mode in _GREY_MODES else 3
            if size is None:
                size = (img.height, img.width)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = int(size[0]), int(size[1])
    ic = InputConfig(channels=channels, size=(h, w), class_names=tuple(names),
                     mean=(0.5,) * channels, std=(0.5,) * channels)  # fmt: skip
    return DatasetInfo(name=f"{IMAGEFOLDER_PREFIX}{root}", input_config=ic, eps=8 / 255)


def read_image(path: Path, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """One image as uint8 ``[C, H, W]`` with the given channel count and size."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L" if channels == 1 else "RGB")
        if (img.height, img.width) != tuple(size):
            img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
        arr = np.array(img, dtype=np.uint8)
    t = torch.from_numpy(arr)
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


class ImageFolderDataset(LabelledImages):
    """ImageFolder images read lazily with PIL.

    Items are ``(float32 [C, H, W] in [0, 1], int label)``.
    """

    def __init__(
        self,
        files: list[Path],
        labels: list[int],
        info: DatasetInfo,
        split: str,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.files = list(files)
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.info = info
        self.split = split
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int) -> torch.Tensor:
        return read_image(self.files[i], self.info.channels, self.info.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self._read(i).to(torch.float32).div_(255.0)
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (read now) as float32 ``[N, C, H, W]`` in [0, 1], labels int64 ``[N]``."""
        c, (h, w) = self.info.channels, self.info.size
        x = torch.empty((len(self), c, h, w), dtype=torch.uint8)
        for i in range(len(self)):
            x[i] = self._read(i)
        return x.to(torch.float32).div_(255.0), self.labels.clone()

    def __repr__(self) -> str:
        return (
            f"ImageFolderDataset(name={self.info.name!r}, split={self.split!r}, n={len(self)}, "
            f"channels={self.info.channels}, size={self.info.size}, transform={self.transform!r})"
        )


def load_imagefolder(
    path: str | os.PathLike[str],
    split: str,
    augment: bool = False,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    full_train: bool = False,
) -> ImageFolderDataset:
    """The ``split`` of the ImageFolder tree at ``path`` (see module docstring).

    ``augment=True`` adds a random crop (zero padding ``max(1, round(min(H, W) / 8))``,
    i.e. 4 pixels at 32x32) and a horizontal flip. ``full_train``: "train" is all of
    ``train/`` plus ``val/`` when present, "val" is ``test/``.
    """
    split = read_split(split, full_train)
    info = imagefolder_info(path, size=size, channels=channels)
    root = _root(path)
    names = info.class_names
    has_val = (root / "val").is_dir()
    if split == "test":
        if not (root / "test").is_dir():
            raise DatasetUnavailableError(f"imagefolder: no test/ folder under {root} ({_LAYOUT})")
        files, labels = _scan(root / "test", names)
    elif split == "val" and has_val:
        files, labels = _scan(root / "val", names)
    else:
        files, labels = _scan(root / "train", names)
        if full_train and has_val:
            val_files, val_labels = _scan(root / "val", names)
            files, labels = files + val_files, labels + val_labels
        elif not full_train and not has_val:
            keep, held = stratified_holdout(labels)
            idx = keep if split == "train" else held
            files = [files[i] for i in idx]
            labels = [labels[i] for i in idx]
    transform = None
    if augment:
        transform = RandomCropFlip(padding=max(1, round(min(info.size) / 8)), flip=True)
    return ImageFolderDataset(files, labels, info, split, transform)
