"""The papers' dataset protocols: ``NAME@full-train`` (the whole training set, validation on
the test split) next to the default 90/10 hold-out, and Tiny-ImageNet-200 read from its
standard layout (a small fake tree written here; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.tinyimagenet_classes import TINYIMAGENET_CLASSES
from training.config import TrainConfig
from training.data import DatasetUnavailableError, build_dataset, get_dataset_info, make_loader
from training.data import torchvision_sets as tvs
from training.data.embedded import load_mnist5k_arrays

WNIDS = sorted(TINYIMAGENET_CLASSES)
TREE_WNIDS = [WNIDS[150], WNIDS[3], WNIDS[77]]  # a subset, deliberately unsorted as wnids.txt is


def _fake_official(name, train, root, download):
    n = 200 if train else 50
    images = np.random.RandomState(1 if train else 2).randint(0, 256, size=(n, 3, 32, 32)).astype(np.uint8)
    return images, (np.arange(n) % 10).astype(np.int64)


def test_cifar_full_train_uses_every_training_image(monkeypatch) -> None:
    monkeypatch.setattr(tvs, "_load_official", _fake_official)
    full_images, _ = _fake_official("cifar10", True, None, False)
    test_images, _ = _fake_official("cifar10", False, None, False)
    tr = build_dataset("cifar10@full-train", "train", augment=True)
    va = build_dataset("cifar10@full-train", "val")
    assert len(tr) == 200 and torch.equal(tr.images, torch.from_numpy(full_images))
    assert va.split == "test" and torch.equal(va.images, torch.from_numpy(test_images))
    assert tr.transform is not None and va.transform is None
    assert len(build_dataset("cifar10", "train")) == 180  # the default hold-out is unchanged
    assert build_dataset("svhn@full-train", "train").info.name == "svhn"


def test_mnist5k_full_train() -> None:
    a = load_mnist5k_arrays()
    tr = build_dataset("mnist5k@full-train", "train")
    va = build_dataset("mnist5k@full-train", "val")
    te = build_dataset("mnist5k@full-train", "test")
    assert (len(tr), len(va), len(te)) == (4500, 500, 500)
    want = np.concatenate([a["train_idx"], a["val_idx"]])
    assert torch.equal(tr.images[:, 0], torch.from_numpy(a["images"][want]))
    assert torch.equal(va.images, te.images) and torch.equal(va.images, build_dataset("mnist5k", "test").images)
    assert (len(build_dataset("mnist5k", "train")), len(build_dataset("mnist5k", "val"))) == (4000, 500)


def _png(path: Path, value: int, size: int = 8) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)


@pytest.mark.parametrize("with_val", [False, True])
def test_imagefolder_full_train(tmp_path, with_val) -> None:
    splits = ("train", "val", "test") if with_val else ("train", "test")
    for split in splits:
        for c in ("a", "b"):
            for i in range(5):
                _png(tmp_path / split / c / f"{i}.png", 10 * i)
    name = f"imagefolder:{tmp_path}"
    tr, va = build_dataset(f"{name}@full-train", "train"), build_dataset(f"{name}@full-train", "val")
    assert len(tr) == (20 if with_val else 10)
    assert [str(f) for f in va.files] == [str(f) for f in build_dataset(name, "test").files]
    assert len(build_dataset(name, "train")) == (10 if with_val else 8)


def test_full_train_through_the_trainer(tmp_path) -> None:
    from training.trainer import Trainer

    t = Trainer(TrainConfig(dataset="mnist5k@full-train", out=str(tmp_path)))
    assert len(t.train_set) == 4500 and t.val_set.split == "test"
    assert t.cfg.to_dict()["dataset"] == "mnist5k@full-train"  # what config.json records


# ---- Tiny-ImageNet -----------------------------------------------------------------------


def _jpeg(path: Path, value: int, mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 64)
    Image.new(mode, (64, 64), color).save(path, format="JPEG")


def _tiny_tree(root: Path, per_class: int = 10, val_per_class: int = 2) -> Path:
    """The standard layout with a few classes: wnids.txt, words.txt, train/, val/."""
    tree = root / "tiny-imagenet-200"
    tree.mkdir(parents=True)
    (tree / "wnids.txt").write_text("\n".join(TREE_WNIDS) + "\n")
    (tree / "words.txt").write_text("".join(f"{w}\t{TINYIMAGENET_CLASSES[w]}, other words\n" for w in WNIDS))
    for k, w in enumerate(TREE_WNIDS):
        for i in range(per_class):
            _jpeg(tree / "train" / w / "images" / f"{w}_{i}.JPEG", 20 * k + i, mode="L" if i == 0 else "RGB")
        (tree / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for j in range(val_per_class * len(TREE_WNIDS)):
        w = TREE_WNIDS[j % len(TREE_WNIDS)]
        _jpeg(tree / "val" / "images" / f"val_{j}.JPEG", 5 * j)
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t63\t63")
    (tree / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tree


def test_tinyimagenet_info_needs_no_files() -> None:
    info = get_dataset_info("tinyimagenet")
    assert (info.channels, info.size, info.num_classes) == (3, (64, 64), 200)
    assert info.eps == pytest.approx(8 / 255) and len(info.mean) == len(info.std) == 3
    assert len(set(info.class_names)) == 200 and info.class_names[0] == "goldfish"  # n01443537


def test_tinyimagenet_splits_from_the_standard_layout(tmp_path) -> None:
    tree = _tiny_tree(tmp_path)
    labels = {w: WNIDS.index(w) for w in TREE_WNIDS}
    for root in (tmp_path, tree):  # the folder holding tiny-imagenet-200/, or the tree itself
        tr = build_dataset("tinyimagenet", "train", root=root)
        va = build_dataset("tinyimagenet", "val", root=root)
        te = build_dataset("tinyimagenet", "test", root=root)
        assert (len(tr), len(va), len(te)) == (27, 3, 6)
        assert sorted(va.labels.tolist()) == sorted(labels.values())  # one held out per class
        assert set(map(str, tr.files)).isdisjoint(map(str, va.files))
    assert [f.name for f in te.files] == [f"val_{j}.JPEG" for j in range(6)]  # annotation order
    assert te.labels.tolist() == [labels[TREE_WNIDS[j % 3]] for j in range(6)]
    assert te.class_names[labels[TREE_WNIDS[0]]] == TINYIMAGENET_CLASSES[TREE_WNIDS[0]]
    x, y = tr[0]  # the first file of the first class is a grey JPEG: read as RGB
    assert x.shape == (3, 64, 64) and x.dtype == torch.float32 and 0.0 <= x.min() <= x.max() <= 1.0
    assert isinstance(y, int)
    xs, ys = te.tensors()
    assert xs.shape == (6, 3, 64, 64) and ys.tolist() == te.labels.tolist()
    batch, _ = next(iter(make_loader(tr, batch_size=4, shuffle=True, seed=0)))
    assert batch.shape == (4, 3, 64, 64)


def test_tinyimagenet_full_train_and_augment(tmp_path) -> None:
    _tiny_tree(tmp_path)
    tr = build_dataset("tinyimagenet@full-train", "train", root=tmp_path, augment=True)
    va = build_dataset("tinyimagenet@full-train", "val", root=tmp_path)
    assert len(tr) == 30 and tr.transform is not None and tr[5][0].shape == (3, 64, 64)
    assert [str(f) for f in va.files] == [str(f) for f in build_dataset("tinyimagenet", "test", root=tmp_path).files]


def test_tinyimagenet_errors(tmp_path) -> None:
    with pytest.raises(DatasetUnavailableError, match="never downloaded"):
        build_dataset("tinyimagenet", "train", root=tmp_path / "absent")
    with pytest.raises(ValueError, match="never downloaded"):
        build_dataset("tinyimagenet", "train", root=tmp_path, download=True)
    tree = _tiny_tree(tmp_path / "bad")
    (tree / "wnids.txt").write_text("n99999999\n")
    with pytest.raises(DatasetUnavailableError, match="n99999999"):
        build_dataset("tinyimagenet", "train", root=tree)
    tree = _tiny_tree(tmp_path / "noval")
    (tree / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetUnavailableError, match="val_annotations.txt"):
        build_dataset("tinyimagenet", "test", root=tree)
