"""The evaluate command: library attacks stay in the threat model, AutoAttack reaches 0 % at
eps 1, a checkpoint and its export give the same figures, and the masking checks can fail."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from artifact_contract import Robustness
from models import create_model
from tests.support.paths import SHIPPED_CHECKPOINT as SHIPPED_CKPT
from tests.support.paths import SHIPPED_VERSION_DIR as SHIPPED_DIR
from training import report
from training.evaluation import library
from training.evaluation.cli import SANITY_FAILED
from training.evaluation.command import evaluate_target, failed_checks, markdown_table
from training.evaluation.target import Target, load_target
from training.export.exporter import card_summary

EPS = 0.3


def _digits(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    from training.data import build_dataset

    x, y = build_dataset("mnist5k", "test").tensors()
    return x[:n], y[:n]


@pytest.fixture(scope="module")
def shipped() -> nn.Module:
    return load_target(SHIPPED_CKPT).model


LIBRARY_ATTACKS = {
    "apgd-ce": lambda m: library.apgd(m, EPS, "ce", steps=5),
    "apgd-dlr": lambda m: library.apgd(m, EPS, "dlr", steps=5),
    "apgd-t": lambda m: library.apgd_t(m, EPS, 10, steps=5, targets=2),
    "fab-t": lambda m: library.fab_t(m, EPS, 10, steps=5, targets=2),
    "square": lambda m: library.square(m, EPS, queries=20),
}


@pytest.mark.parametrize("name", sorted(LIBRARY_ATTACKS))
def test_library_attack_keeps_eps_and_range_and_modes(shipped, name) -> None:
    x, y = _digits(8)
    shipped.train()  # the attack must run in eval mode and give the mode back
    attack = LIBRARY_ATTACKS[name](shipped)
    xa = attack(x, y)
    assert shipped.training and shipped.mix_mode == "router"
    assert xa.shape == x.shape and float((xa - x).abs().max()) <= EPS + 1e-6
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    shipped.eval()


def test_autoattack_at_eps_one_gives_zero(shipped) -> None:
    x, y = _digits(16)
    aa = library.Ensemble(shipped, 1.0, library.autoattack_components(shipped, 1.0, 10, steps=10, square_queries=50))
    xa = aa(x, y)
    with torch.no_grad():
        acc = float((shipped(xa).argmax(1) == y).float().mean())
    assert acc == 0.0, aa.last_counts


def test_checkpoint_and_export_give_the_same_figures() -> None:
    ckpt, export = load_target(SHIPPED_CKPT), load_target(SHIPPED_DIR)
    assert export.source == "onnx" and export.parity_max_abs is not None and export.parity_max_abs < 1e-3
    kw = dict(n=32, budget="quick", attacks=["fgsm", "pgd20"], sanity_checks=False, progress=False, log=lambda *_: None)
    a, b = evaluate_target(ckpt, **kw), evaluate_target(export, **kw)
    assert a["clean"]["acc"] == b["clean"]["acc"] and a["clean"]["router_fpr"] == b["clean"]["router_fpr"]
    assert a["clean"]["p_adv_mean"] == pytest.approx(b["clean"]["p_adv_mean"], abs=1e-5)  # folded router BN
    assert [r["acc"] for r in a["attacks"]] == [r["acc"] for r in b["attacks"]]
    # both cards record the training recipe (the report merges seeds only when recipes agree)
    assert report.recipe(a) == report.recipe(b) and report.recipe(a)["method"] == "awnet"
    # calibrated == manifest, to float32 rounding: torch's CPU kernels are not bitwise equal
    # across CPU types (10 ulps apart on another machine than the one that exported)
    assert a["settings"]["threshold"] == pytest.approx(b["settings"]["threshold"], rel=1e-5)


class GradientBlock(nn.Module):
    """Input quantisation to 8 bits: the forward barely changes the image, the gradient is 0
    everywhere (the textbook masked defence, Athalye et al. 2018)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 255) / 255


def _masked_model() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("smallcnn")
    x, y = _digits(400)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):  # a few epochs of plain training: clean accuracy well above chance
        for i in range(0, 400, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[i:i + 100]), y[i:i + 100]).backward()
            opt.step()
    model.eval()
    model.normalize = GradientBlock()
    return model


def test_masking_checks_fire_on_a_masked_model(tmp_path) -> None:
    model = _masked_model()
    target = Target(model=model, source="checkpoint", path=tmp_path, arch="smallcnn", method="standard",
                    dataset="mnist5k", data_root=None, eps=EPS, awnet=False)  # fmt: skip
    card = evaluate_target(target, n=64, budget="quick", attacks=["pgd20", "pgd10", "square100"], progress=False,
                           log=lambda *_: None)  # fmt: skip
    failed = {c["name"] for c in failed_checks(card)}
    assert "eps = 1 gives 0 %" in failed
    assert "black-box attack not stronger than white-box" in failed
    assert "FAIL" in markdown_table(card)
    summary = Robustness.from_dict(card_summary(card))  # what the manifest would carry
    assert not summary.sanity_passed and not summary.has_router
    assert summary.worst_case_acc == card["worst_case"]["acc"]


def test_cli_exits_3_on_failed_checks_and_writes_the_card(tmp_path, monkeypatch) -> None:
    from training.cli import main
    from training.evaluation import command

    model = _masked_model()
    fake = Target(model=model, source="checkpoint", path=tmp_path, arch="smallcnn", method="standard",
                  dataset="mnist5k", data_root=None, eps=EPS, awnet=False)  # fmt: skip
    monkeypatch.setattr(command, "load_target", lambda path, **kw: fake)
    rc = main(["evaluate", "unused.pt", "--n", "32", "--budget", "quick", "--attacks", "pgd20", "square100",
               "--out", str(tmp_path / "card")])  # fmt: skip
    assert rc == SANITY_FAILED
    card = json.loads((tmp_path / "card" / "evaluation.json").read_text())
    assert card["worst_case"]["acc"] <= card["attacks"][0]["acc"]
    assert (tmp_path / "card" / "evaluation.md").read_text().startswith("# Evaluation")


@pytest.mark.slow
def test_shipped_model_full_suite_quick_budget(tmp_path) -> None:
    """Every attack of the AW-Net suite runs on the shipped model; adaptive rows carry router figures."""
    card = evaluate_target(load_target(SHIPPED_DIR), n=24, budget="quick", progress=False, log=lambda *_: None)
    names = {r["name"] for r in card["attacks"]}
    assert {"autoattack", "evade-router-l1", "evade-clean-l3", "evade-margin-l0.1", "selective-ce", "selective-cw",
            "transfer-clean"} <= names
    assert all("router" in r for r in card["attacks"])
    assert 0.0 <= card["worst_case"]["missed"] <= 1.0
    assert card["worst_case"]["acc"] <= min(r["acc"] for r in card["attacks"])
    summary = Robustness.from_dict(card_summary(card))  # the manifest's block, as the service reads it
    assert summary.missed == card["worst_case"]["missed"] and summary.clean_fpr == card["clean"]["router_fpr"]


def _router_target(masked: bool) -> Target:
    """The shipped AW-Net served at threshold 0.5 (where its router lets evasion through),
    optionally behind the 8-bit quantisation that zeroes every input gradient."""
    target = load_target(SHIPPED_CKPT)
    if masked:
        forward_all = target.model.forward_all
        target.model.forward_all = lambda x, mix=None: forward_all(GradientBlock()(x), mix)
    target.threshold = 0.5
    return target


def test_digit_blend_keeps_eps_range_and_modes(shipped) -> None:
    from training.attacks import DigitBlend

    x, y = _digits(32)
    shipped.train()
    xa = DigitBlend(shipped, EPS, threshold=0.5, candidates=16)(x, y)
    assert shipped.training and shipped.mix_mode == "router"
    assert float((xa - x).abs().max()) <= EPS + 1e-6 and float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0
    shipped.eval()
    with torch.no_grad():  # never worse than the clean digit: it is kept when no blend fools the model
        assert int((shipped(xa).argmax(1) != y).sum()) >= int((shipped(x).argmax(1) != y).sum())


@pytest.mark.slow
@pytest.mark.parametrize("masked", [False, True])
def test_flag_masking_check_fires_only_on_a_masked_router(masked) -> None:
    """The digit blend gets past a router whose gradients are zeroed more often than the
    gradient attacks do (they cannot move): the check fails there, and passes unmasked (at
    threshold 0.5 router evasion with 50 steps misses about 19 % of these digits, the blend 12 %)."""
    card = evaluate_target(_router_target(masked), n=100, budget="reproduce", attacks=["evade-router-l1", "digit-blend"],
                           progress=False, log=lambda *_: None)  # fmt: skip
    check = next(c for c in card["sanity"] if c["name"].startswith("gradient-free attack"))
    assert check["passed"] is (not masked), check


def _colour_checkpoint(tmp_path) -> Path:
    """A fresh small CNN trained (nominally) on cifar10-jpeg, whose archive is not here."""
    from models import create_model
    from models.config import DATASETS
    from tests.support.checkpoints import write_checkpoint
    from training.config import TrainConfig

    cfg = TrainConfig(method="pgd-at", model="smallcnn", dataset="cifar10-jpeg",
                      data_root=str(tmp_path / "no-archive")).resolve(8 / 255, True)  # fmt: skip
    model = create_model("smallcnn", input_config=DATASETS["cifar10-jpeg"].input_config)
    return write_checkpoint(tmp_path / "colour.pt", model, "smallcnn", cfg.to_dict())


def test_a_colour_model_is_evaluated_on_the_embedded_images_when_told(tmp_path) -> None:
    from training.data import DatasetUnavailableError
    from training.evaluation.command import evaluate_path

    ckpt = _colour_checkpoint(tmp_path)
    with pytest.raises(DatasetUnavailableError, match="cifar10-jpeg"):
        load_target(ckpt).test_split(8)  # its own data: not on this machine
    card = evaluate_path(ckpt, dataset="cifar10-jpeg2k", n=16, budget="quick", attacks=["fgsm"],
                         sanity_checks=False, progress=False, log=lambda *_: None)  # fmt: skip
    assert card["model"]["dataset"] == "cifar10-jpeg2k" and card["settings"]["n"] == 16
    with pytest.raises(ValueError, match="not the model's"):
        load_target(ckpt, dataset="mnist5k")
