"""One table of dataset facts (``models.config.DATASETS``): every model's default input
configuration, the training data layer and the trainer all read it, so they agree by
construction (issue 11, "Dataset and input facts are stored twice and disagree")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models import create_model, default_input_config, is_awnet, list_models
from models.config import DATASETS, InputConfig, cifar10_config, digits_config
from tests.support.paths import SHIPPED_CHECKPOINT, SHIPPED_VERSION_DIR
from training.config import TrainConfig
from training.data import build_dataset, get_dataset_info, list_datasets, parse_dataset_name

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MANIFEST = SHIPPED_VERSION_DIR / "manifest.json"
SHIPPED_CKPT = SHIPPED_CHECKPOINT


def _expected_dataset(model_name: str) -> str:
    return "mnist5k" if model_name.removeprefix("awnet_").startswith("smallcnn") else "cifar10"


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_takes_its_input_config_from_the_table(name: str) -> None:
    with torch.device("meta"):  # no weights allocated: the WRNs are tens of millions
        model = create_model(name)
    ic = model.input_config
    facts = DATASETS[_expected_dataset(name)]
    assert ic == facts.input_config == default_input_config(name)
    copies = ["cifar10-jpeg", "cifar10-jpeg2k"] if facts.name == "cifar10" else []  # its JPEG copies share it
    assert [d for d, f in DATASETS.items() if f.input_config == ic] == [facts.name, *copies]
    assert (ic.channels, ic.size, ic.num_classes) == (facts.channels, facts.size, facts.num_classes)
    assert (ic.mean, ic.std, ic.pixel_range) == (facts.mean, facts.std, facts.pixel_range)
    assert list(ic.class_names) == facts.class_names
    norm = model.backbone.normalize if is_awnet(model) else model.normalize
    assert tuple(norm.mean.shape) == (1, facts.channels, 1, 1)


def test_normalisation_inside_a_fresh_model_is_the_tables() -> None:
    model = create_model("smallcnn")
    assert model.normalize.mean.flatten().tolist() == pytest.approx(DATASETS["mnist5k"].mean)
    assert model.normalize.std.flatten().tolist() == pytest.approx(DATASETS["mnist5k"].std)
    assert not model.normalize.identity


@pytest.mark.parametrize("name", list(DATASETS))
def test_training_data_layer_reads_the_same_entries(name: str) -> None:
    assert get_dataset_info(name) is DATASETS[name]
    assert get_dataset_info(f"{name.upper()}@full-train") is DATASETS[name]
    info = DATASETS[name]
    assert info.input_config.class_names == tuple(info.class_names)
    assert len(info.class_names) == info.num_classes == len(set(info.class_names))
    assert len(info.mean) == len(info.std) == info.channels
    assert info.pixel_range == (0.0, 1.0)
    d = info.to_dict()
    assert InputConfig.from_dict(d) == info.input_config  # the checkpoint's "dataset" record
    assert json.loads(json.dumps(d)) == d


def test_the_former_two_places_agree_by_construction() -> None:
    assert digits_config() is DATASETS["mnist5k"].input_config
    assert cifar10_config() is DATASETS["cifar10"].input_config
    assert list_datasets() == list(DATASETS)
    for name in DATASETS:
        assert parse_dataset_name(name).source in ("embedded", "torchvision", "archive", "folder")


def test_the_decided_statistics() -> None:
    """docs/decisions.md, "Dataset facts": the values the data pipeline always used."""
    assert (DATASETS["mnist5k"].mean, DATASETS["mnist5k"].std) == ((0.1307,), (0.3081,))
    assert DATASETS["cifar10"].mean == (0.4914, 0.4822, 0.4465)
    assert DATASETS["cifar10"].std == (0.2470, 0.2435, 0.2616)
    assert (DATASETS["mnist5k"].eps, DATASETS["cifar10"].eps) == (0.3, pytest.approx(8 / 255))


def test_the_table_cannot_be_changed_through_a_view() -> None:
    info = DATASETS["cifar10"]
    info.class_names.append("zebra")
    assert info.num_classes == 10 and "zebra" not in info.class_names
    with pytest.raises(AttributeError):
        info.input_config.mean = (0.5, 0.5, 0.5)  # type: ignore[misc]


def test_augmentation_default_follows_the_source(tmp_path: Path) -> None:
    assert not parse_dataset_name("mnist5k").augmented_by_default
    assert not parse_dataset_name(f"imagefolder:{tmp_path}").augmented_by_default
    for name in ("cifar10", "cifar100", "svhn", "tinyimagenet", "cifar10@full-train"):
        assert parse_dataset_name(name).augmented_by_default, name


def test_the_trainer_takes_the_derived_config(tmp_path: Path) -> None:
    from training.trainer import Trainer

    t = Trainer(TrainConfig(dataset="mnist5k", out=str(tmp_path), max_train_samples=256))
    assert t.input_config is DATASETS["mnist5k"].input_config
    assert t.model.input_config == DATASETS["mnist5k"].input_config
    assert t.cfg.augment is False and t.cfg.eps == 0.3
    assert t._payload(0, {})["dataset"] == DATASETS["mnist5k"].to_dict()
    assert build_dataset("mnist5k", "val").info is DATASETS["mnist5k"]


def test_imagefolder_facts_are_one_input_config(tmp_path: Path) -> None:
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "train" / c).mkdir(parents=True)
        Image.new("L", (6, 5), 10).save(tmp_path / "train" / c / "0.png")
    info = get_dataset_info(f"imagefolder:{tmp_path}")
    assert info.input_config == InputConfig(
        channels=1, size=(5, 6), class_names=("a", "b"), mean=(0.5,), std=(0.5,)
    )
    assert info.name == f"imagefolder:{tmp_path}" and info.eps == pytest.approx(8 / 255)


@pytest.mark.skipif(not SHIPPED_MANIFEST.is_file(), reason="shipped model not built")
def test_shipped_model_uses_the_tables_digits_statistics() -> None:
    inp = json.loads(SHIPPED_MANIFEST.read_text())["input"]
    facts = DATASETS["mnist5k"]
    assert (tuple(inp["mean"]), tuple(inp["std"])) == (facts.mean, facts.std)
    assert tuple(inp["shape"]) == (facts.channels, *facts.size)
    assert tuple(inp["range"]) == facts.pixel_range
    if SHIPPED_CKPT.is_file():
        from training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(SHIPPED_CKPT)
        assert InputConfig.from_dict(ckpt["input_config"]) == facts.input_config
