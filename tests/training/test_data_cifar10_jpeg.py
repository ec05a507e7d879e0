"""``cifar10-jpeg`` (the JPEG archive or its folder: checked, decoded once, cached) and the
embedded ``cifar10-jpeg2k``. The failure cases run on small archives made here; the real
archive is read where ``../shared/datasets`` has it (CI does), never downloaded."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.paths import ROOT
from training.data import DatasetUnavailableError, build_dataset, stratified_holdout
from training.data.cifar10_jpeg import (
    CIFAR10_JPEG,
    CIFAR10_JPEG2K_PATH,
    load_cifar10_jpeg2k_arrays,
)
from training.data.jpeg_tree import JpegTreeSpec, content_digest, load_jpeg_tree

SHARED_ARCHIVE = ROOT.parent / "shared" / "datasets" / CIFAR10_JPEG.archive_name
EMBEDDED_README = ROOT / "training" / "data" / "embedded" / "README.md"

# --------------------------------------------------------------------------- embedded 2k


def test_embedded_file_is_small_and_its_readme_gives_its_sha256():
    data = CIFAR10_JPEG2K_PATH.read_bytes()
    assert len(data) < 2_200_000
    readme = EMBEDDED_README.read_text()
    assert hashlib.sha256(data).hexdigest() in readme
    assert CIFAR10_JPEG.archive_sha256 in readme


def test_embedded_splits_sizes_classes_and_protocol():
    sizes = {s: build_dataset("cifar10-jpeg2k", s) for s in ("train", "val", "test")}
    assert {s: len(d) for s, d in sizes.items()} == {"train": 900, "val": 100, "test": 1000}
    for split, per_class in (("train", 90), ("val", 10), ("test", 100)):
        assert np.bincount(sizes[split].labels.numpy(), minlength=10).tolist() == [per_class] * 10
    a = load_cifar10_jpeg2k_arrays()
    keep, held = stratified_holdout(a["train_labels"])  # the cifar10 protocol
    assert sorted(map(bytes, sizes["val"].images.numpy())) == sorted(map(bytes, a["train_images"][held]))
    assert sizes["train"].labels[:20].tolist() == list(range(10)) * 2  # re-interleaved
    full = build_dataset("cifar10-jpeg2k@full-train", "train")
    assert len(full) == 1000 and len(build_dataset("cifar10-jpeg2k@full-train", "val")) == 1000
    assert sizes["test"].class_names[3] == "cat" and sizes["test"].info.input_config.channels == 3
    x, y = sizes["test"][0]
    assert x.shape == (3, 32, 32) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert y == 0  # class-interleaved: airplane, automobile, ...
    assert sizes["test"].labels[:10].tolist() == list(range(10))


def test_embedded_train_augments_by_default():
    from training.data.info import parse_dataset_name

    assert parse_dataset_name("cifar10-jpeg2k").augmented_by_default
    assert parse_dataset_name("cifar10-jpeg").augmented_by_default
    assert not parse_dataset_name("mnist5k").augmented_by_default
    aug = build_dataset("cifar10-jpeg2k", "train", augment=True)
    assert aug.transform is not None


# --------------------------------------------------------------------------- small trees


def _jpeg(rgb: tuple[int, int, int], size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, rgb).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


CLASSES = ("cat", "ship")
COUNTS = {"train": 4, "test": 2}


def _tree() -> dict[str, bytes]:
    files = {}
    for split, n in COUNTS.items():
        for k, c in enumerate(CLASSES):
            for i in range(n):
                files[f"{split}/{c}/{i:04d}.jpg"] = _jpeg((200 * k, 10 * i, 50))
    return files


def _pack(files: dict[str, bytes], path: Path, prefix: str = "tiny") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{prefix}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _spec(files: dict[str, bytes], archive: Path | None) -> JpegTreeSpec:
    sha = hashlib.sha256(archive.read_bytes()).hexdigest() if archive else "0" * 64
    return JpegTreeSpec(name="tiny", prefix="tiny", archive_name="tiny.tar.gz", archive_sha256=sha,
                        content_sha256=content_digest(files), classes=CLASSES, counts=COUNTS)  # fmt: skip


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("AWNET_CACHE_DIR", str(d))
    return d


def _unpack(files: dict[str, bytes], root: Path) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_archive_and_folder_give_the_same_class_interleaved_arrays(tmp_path, cache):
    files = _tree()
    archive = _pack(files, tmp_path / "tiny.tar.gz")
    spec = _spec(files, archive)
    a = load_jpeg_tree(spec, tmp_path)  # the folder holding the archive
    assert a["train_images"].shape == (8, 3, 32, 32) and a["test_images"].shape == (4, 3, 32, 32)
    assert a["train_labels"].tolist() == [0, 1] * 4
    assert len(list(cache.glob("tiny-*.npz"))) == 1
    folder = _unpack(files, tmp_path / "extracted" / "tiny")
    for root in (folder, folder.parent):  # the tree itself or the folder holding it
        for p in cache.glob("*.npz"):
            p.unlink()
        b = load_jpeg_tree(spec, root)
        assert all(np.array_equal(a[k], b[k]) for k in a if k.endswith(("images", "labels")))


def test_a_second_load_reads_the_cache(tmp_path, cache, monkeypatch):
    files = _tree()
    archive = _pack(files, tmp_path / "tiny.tar.gz")
    spec = _spec(files, archive)
    first = load_jpeg_tree(spec, archive)
    from training.data import jpeg_tree

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(jpeg_tree, "_decode_all", no_decoding)
    second = load_jpeg_tree(spec, archive)
    assert np.array_equal(first["test_images"], second["test_images"])
    # a damaged cache file is decoded again, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("AWNET_CACHE_DIR", str(cache))
    next(cache.glob("*.npz")).write_bytes(b"not an npz")
    assert np.array_equal(load_jpeg_tree(spec, archive)["test_images"], first["test_images"])


def _error(spec: JpegTreeSpec, root: Path) -> str:
    with pytest.raises(DatasetUnavailableError) as e:
        load_jpeg_tree(spec, root)
    return str(e.value)


def test_wrong_checksum_names_both_digests(tmp_path, cache):
    files = _tree()
    archive = _pack(files, tmp_path / "tiny.tar.gz")
    spec = dataclasses.replace(_spec(files, archive), archive_sha256="f" * 64)
    msg = _error(spec, archive)
    assert "sha256" in msg and "f" * 64 in msg and str(archive) in msg


def test_truncated_archive_is_an_error_not_a_smaller_dataset(tmp_path, cache):
    files = _tree()
    archive = _pack(files, tmp_path / "tiny.tar.gz")
    truncated = tmp_path / "cut" / "tiny.tar.gz"
    truncated.parent.mkdir()
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    spec = _spec(files, truncated)  # even with a checksum that matches the cut bytes
    msg = _error(spec, truncated)
    assert "cannot be read as a .tar.gz" in msg and str(truncated) in msg
    # and with the real checksum, the checksum says it first
    assert "sha256" in _error(_spec(files, archive), truncated)


def test_missing_class_folder_is_named(tmp_path, cache):
    files = _tree()
    kept = {r: d for r, d in files.items() if not r.startswith("test/ship/")}
    folder = _unpack(kept, tmp_path / "tiny")
    assert "test/ship/ is missing" in _error(_spec(files, None), folder)


def test_a_missing_or_extra_file_is_named(tmp_path, cache):
    files = _tree()
    short = dict(files)
    del short["train/cat/0003.jpg"]
    assert "train/cat/ holds 3 files, expected 4" in _error(
        _spec(files, None), _unpack(short, tmp_path / "a" / "tiny")
    )
    extra = {**files, "train/dog/0000.jpg": _jpeg((1, 2, 3))}
    assert "unexpected file 'train/dog/0000.jpg'" in _error(
        _spec(files, None), _unpack(extra, tmp_path / "b" / "tiny")
    )


def test_unreadable_or_wrong_size_image_is_named(tmp_path, cache):
    files = _tree()
    bad = {**files, "train/ship/0002.jpg": b"\xff\xd8 not a jpeg"}
    msg = _error(_spec(bad, None), _unpack(bad, tmp_path / "a" / "tiny"))
    assert "train/ship/0002.jpg is not a readable image" in msg
    big = {**files, "test/cat/0001.jpg": _jpeg((9, 9, 9), size=(64, 48))}
    msg = _error(_spec(big, None), _unpack(big, tmp_path / "b" / "tiny"))
    assert re.search(r"test/cat/0001.jpg is 64x48, expected 32x32", msg)


def test_a_changed_file_fails_the_content_digest(tmp_path, cache):
    files = _tree()
    changed = {**files, "test/cat/0000.jpg": _jpeg((7, 7, 7))}
    msg = _error(_spec(files, None), _unpack(changed, tmp_path / "tiny"))
    assert "content digest" in msg


def test_nothing_there_says_how_to_get_it(tmp_path, cache):
    with pytest.raises(DatasetUnavailableError, match="--data-root"):
        build_dataset("cifar10-jpeg", "test", root=tmp_path)
    with pytest.raises(ValueError, match="never downloaded"):
        build_dataset("cifar10-jpeg", "test", root=tmp_path, download=True)


# --------------------------------------------------------------------------- the archive


needs_archive = pytest.mark.skipif(
    not SHARED_ARCHIVE.is_file(), reason=f"{SHARED_ARCHIVE} not here (the dataset is optional)"
)


@needs_archive
def test_the_real_archive_splits_like_cifar10_and_embeds_the_2k(tmp_path, monkeypatch):
    monkeypatch.setenv("AWNET_CACHE_DIR", str(tmp_path))
    test = build_dataset("cifar10-jpeg", "test", root=SHARED_ARCHIVE)
    train = build_dataset("cifar10-jpeg", "train", root=SHARED_ARCHIVE.parent)
    val = build_dataset("cifar10-jpeg", "val", root=SHARED_ARCHIVE.parent)
    assert (len(train), len(val), len(test)) == (45000, 5000, 10000)
    assert np.bincount(val.labels.numpy()).tolist() == [500] * 10
    assert np.bincount(train.labels[:1000].numpy()).tolist() == [100] * 10  # balanced prefix
    assert len(build_dataset("cifar10-jpeg@full-train", "train", root=SHARED_ARCHIVE)) == 50000
    # the embedded files are the archive's first 100 per class, byte for byte
    a = load_cifar10_jpeg2k_arrays()
    assert np.array_equal(a["test_images"], test.images.numpy()[:1000])
