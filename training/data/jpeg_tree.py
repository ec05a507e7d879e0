"""A class-per-folder JPEG tree with a known content, read from its ``.tar.gz`` or its
extracted folder, checked, decoded once and cached as one uint8 array.

The tree is ``PREFIX/<split>/<class>/<file>.jpg``. What is expected of it is a
:class:`JpegTreeSpec`: the splits, the classes, the number of files per class and split,
the archive's sha256 and the *content digest* (sha256 over every file's path and sha256,
in sorted order), which is the same for the archive and its extracted folder. Any
difference (a wrong checksum, a truncated archive, a missing class folder, a missing or
extra file, an unreadable image, a wrong image size) raises
:class:`~training.data.info.DatasetUnavailableError` naming it: never a smaller dataset.

Decoding 60,000 JPEG files takes a minute or so on 2 cores; the result is written once to
``$AWNET_CACHE_DIR`` (default ``~/.cache/awnet/decoded``) under the content digest, so a
later load reads one uncompressed ``.npz`` (seconds). Decoding is Pillow's.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .info import DatasetUnavailableError

__all__ = ["JpegTreeSpec", "cache_dir", "content_digest", "decode_jpeg", "load_jpeg_tree",
           "resolve_source"]  # fmt: skip

_CHUNK = 1 << 20


@dataclass(frozen=True)
class JpegTreeSpec:
    """What a JPEG tree must hold. ``counts[split]`` is the number of files per class."""

    name: str  # dataset name, for messages and the cache file
    prefix: str  # top folder inside the archive (and the extracted folder's name)
    archive_name: str
    archive_sha256: str
    content_sha256: str
    classes: tuple[str, ...]
    counts: dict[str, int]
    size: tuple[int, int] = (32, 32)
    how_to: str = ""

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def fail(self, what: str) -> DatasetUnavailableError:
        how = f" {self.how_to}" if self.how_to else ""
        return DatasetUnavailableError(f"{self.name}: {what}.{how}")


def cache_dir() -> Path:
    """``$AWNET_CACHE_DIR`` if set, else ``~/.cache/awnet/decoded``."""
    env = os.environ.get("AWNET_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "awnet" / "decoded"


def resolve_source(spec: JpegTreeSpec, root: Path) -> Path:
    """The archive or extracted folder ``root`` names: the ``.tar.gz`` itself, a folder
    holding ``spec.archive_name``, the extracted tree (``train/``, ``test/``) or a folder
    holding it as ``spec.prefix/``. The archive wins where both are there (its checksum is
    one read)."""
    if root.is_file():
        return root
    for candidate in (root / spec.archive_name, root / spec.prefix, root):
        if candidate.is_file() or all((candidate / s).is_dir() for s in spec.splits):
            return candidate
    raise spec.fail(
        f"neither {spec.archive_name} nor an extracted {spec.prefix}/ "
        f"({'/, '.join(spec.splits)}/) found under {root}"
    )


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_digest(files: dict[str, bytes]) -> str:
    """sha256 over ``path NUL sha256(bytes) LF`` of every file, paths sorted: one digest for
    the archive and the folder (paths relative to the tree's top, ``split/class/file``)."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{hashlib.sha256(files[rel]).hexdigest()}\n".encode())
    return h.hexdigest()


def _archive_files(spec: JpegTreeSpec, path: Path) -> Iterator[tuple[str, bytes]]:
    """``(split/class/file, bytes)`` of every regular file under ``spec.prefix/``."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                top, _, rel = member.name.partition("/")
                if top != spec.prefix:
                    raise spec.fail(f"{path}: member {member.name!r} is outside {spec.prefix}/")
                f = tar.extractfile(member)
                yield rel, f.read() if f is not None else b""
    except (tarfile.TarError, EOFError, OSError) as e:  # truncated or not a gzip'd tar
        raise spec.fail(f"{path} cannot be read as a .tar.gz ({type(e).__name__}: {e})") from e


def _folder_files(spec: JpegTreeSpec, root: Path) -> Iterator[tuple[str, bytes]]:
    for split in spec.splits:
        for f in sorted((root / split).rglob("*")):
            if f.is_file():
                try:
                    yield f.relative_to(root).as_posix(), f.read_bytes()
                except OSError as e:
                    raise spec.fail(f"{f} cannot be read ({e})") from e


def decode_jpeg(data: bytes, size: tuple[int, int], where: str) -> np.ndarray:
    """One RGB image as uint8 ``[3, H, W]``; ValueError naming ``where`` when it is not a
    readable image of ``size``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if (img.height, img.width) != tuple(size):
                raise ValueError(f"{where} is {img.width}x{img.height}, expected {size[1]}x{size[0]}")
            arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{where} is not a readable image ({type(e).__name__}: {e})") from e
    return arr.transpose(2, 0, 1)


def _check_layout(spec: JpegTreeSpec, source: Path, files: dict[str, bytes]) -> None:
    """Every split and class folder there with its count of files, nothing else."""
    found: dict[tuple[str, str], int] = {}
    for rel in files:
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] not in spec.counts or parts[1] not in spec.classes:
            raise spec.fail(f"{source}: unexpected file {rel!r} (expected <split>/<class>/<file>)")
        found[(parts[0], parts[1])] = found.get((parts[0], parts[1]), 0) + 1
    for split, n in spec.counts.items():
        for c in spec.classes:
            got = found.get((split, c), 0)
            if got == 0:
                raise spec.fail(f"{source}: class folder {split}/{c}/ is missing or empty")
            if got != n:
                raise spec.fail(f"{source}: {split}/{c}/ holds {got} files, expected {n}")


def _check_archive(spec: JpegTreeSpec, source: Path) -> None:
    digest = _sha256_file(source)
    if digest != spec.archive_sha256:
        raise spec.fail(
            f"{source} has sha256 {digest}, expected {spec.archive_sha256} "
            "(a damaged, truncated or different archive)"
        )


def _read_and_check(spec: JpegTreeSpec, source: Path) -> dict[str, bytes]:
    """Every file of the tree, checked against ``spec`` (the archive's checksum is the
    caller's)."""
    files = dict(_archive_files(spec, source) if source.is_file() else _folder_files(spec, source))
    _check_layout(spec, source, files)
    digest = content_digest(files)
    if digest != spec.content_sha256:
        raise spec.fail(
            f"{source}: content digest {digest}, expected {spec.content_sha256} "
            "(some file differs from the published tree)"
        )
    return files


def _interleaved(spec: JpegTreeSpec, split: str, files: dict[str, bytes]) -> list[tuple[str, int]]:
    """The split's files, class-interleaved (the first file of every class, then the
    second...), so that any prefix (``--max-train-samples``) is class-balanced."""
    per_class = [
        sorted(r for r in files if r.startswith(f"{split}/{c}/")) for c in spec.classes
    ]
    return [(per_class[k][i], k) for i in range(spec.counts[split]) for k in range(len(spec.classes))]


def _decode_all(spec: JpegTreeSpec, files: dict[str, bytes]) -> dict[str, np.ndarray]:
    from tqdm import tqdm

    out: dict[str, np.ndarray] = {}
    total = sum(n * len(spec.classes) for n in spec.counts.values())
    with tqdm(total=total, desc=f"decoding {spec.name}", unit="img", mininterval=1.0) as bar:
        for split in spec.splits:
            order = _interleaved(spec, split, files)
            images = np.empty((len(order), 3, *spec.size), dtype=np.uint8)
            for i, (rel, _) in enumerate(order):
                try:
                    images[i] = decode_jpeg(files[rel], spec.size, rel)
                except ValueError as e:
                    raise spec.fail(str(e)) from e
                bar.update()
            out[f"{split}_images"] = images
            out[f"{split}_labels"] = np.array([k for _, k in order], dtype=np.int64)
    return out


def _cache_path(spec: JpegTreeSpec) -> Path:
    return cache_dir() / f"{spec.name}-{spec.content_sha256[:16]}.npz"


def _read_cache(path: Path, spec: JpegTreeSpec) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when there is no cache or it does not hold what ``spec``
    says (a stale or damaged file is decoded again, never trusted)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError):
        return None
    for split, n in spec.counts.items():
        x, y = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if x is None or y is None or x.shape != (n * len(spec.classes), 3, *spec.size):
            return None
    if str(arrays.get("content_sha256", "")) != spec.content_sha256:
        return None
    return arrays


def load_jpeg_tree(spec: JpegTreeSpec, root: Path) -> dict[str, np.ndarray]:
    """``{split}_images`` (uint8 ``[N, 3, H, W]``) and ``{split}_labels`` (int64) of every
    split, class-interleaved; from the cache when it holds this content, else read from
    ``root`` (see :func:`resolve_source`), checked, decoded and cached.

    The archive's checksum is checked on every load (one read of its bytes); a folder is
    checked when it is decoded."""
    source = resolve_source(spec, root)
    path = _cache_path(spec)
    if source.is_file():
        _check_archive(spec, source)
    cached = _read_cache(path, spec)
    if cached is not None:
        return cached
    arrays = _decode_all(spec, _read_and_check(spec, source))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, content_sha256=np.array(spec.content_sha256), **arrays)
    os.replace(tmp, path)
    return arrays
