"""``python -m training analyze weights|router`` on the shipped AW-Net checkpoint and a
randomly initialised static smallcnn (a few samples, a few PGD steps: seconds, not minutes)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from models import create_model
from models.config import digits_config
from tests.support.checkpoints import write_checkpoint
from tests.support.paths import SHIPPED_CHECKPOINT as AWNET_CKPT
from tests.support.paths import SHIPPED_VERSION_DIR
from training.analysis.common import load
from training.analysis.router import roc_curve, router_attacks, threshold_of
from training.analysis.weights import bn_scale, conv_bns_by_name, excess_kurtosis, static_weight_set
from training.attacks import ATTACK_LOSSES
from training.checkpoint import load_model, model_kwargs
from training.cli import main
from training.config import TrainConfig
from training.evaluation.suite import MARGIN_LAMBDAS

MANIFEST = SHIPPED_VERSION_DIR / "manifest.json"
LAYERS = ["conv1", "conv2", "conv3", "conv4"]

pytestmark = pytest.mark.skipif(not AWNET_CKPT.is_file(), reason="shipped checkpoint missing")


@pytest.fixture(scope="module")
def static_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised smallcnn saved as a standard-method checkpoint (BN statistics
    changed from their defaults so that folding does something)."""
    torch.manual_seed(0)
    cfg = TrainConfig(method="standard", model="smallcnn")
    ic = digits_config()
    model = create_model("smallcnn", input_config=ic)
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3, model.bn4):
            bn.running_var.uniform_(0.5, 4.0)
            bn.weight.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("static") / "standard" / "last.pt"
    return write_checkpoint(path, model, "smallcnn", cfg.to_dict(), model_kwargs(cfg))


def test_excess_kurtosis_of_known_distributions() -> None:
    rng = np.random.default_rng(0)
    g = rng.normal(size=200_000)
    assert abs(excess_kurtosis(g)) < 0.05
    assert excess_kurtosis(rng.uniform(-1, 1, size=200_000)) == pytest.approx(-1.2, abs=0.03)
    lap = rng.laplace(size=200_000)
    assert excess_kurtosis(lap) == pytest.approx(3.0, abs=0.2)
    assert excess_kurtosis(lap) == pytest.approx(float(stats.kurtosis(lap, fisher=True, bias=True)), rel=1e-9)
    assert excess_kurtosis(torch.from_numpy(g)) == pytest.approx(excess_kurtosis(g))
    assert math.isnan(excess_kurtosis(np.ones(10)))


def test_every_conv_pairs_with_its_bn_and_folds(static_ckpt: Path) -> None:
    model, ckpt = load_model(static_ckpt)
    pairs = conv_bns_by_name(model)
    assert {k: bn for k, (_, bn) in pairs.items()} == {f"conv{i}": getattr(model, f"bn{i}") for i in range(1, 5)}
    ws = static_weight_set(model, "standard", str(static_ckpt), "standard", fold=True)
    s = model.bn2.weight / torch.sqrt(model.bn2.running_var + model.bn2.eps)
    expect = (model.conv2.weight * s[:, None, None, None]).detach().double().numpy().ravel()
    np.testing.assert_allclose(ws.layers["conv2"], expect, rtol=1e-6)
    awnet, _ = load_model(AWNET_CKPT)
    apairs = conv_bns_by_name(awnet)
    assert list(apairs) == LAYERS  # router convs excluded
    assert all(bn is getattr(awnet.backbone, f"bn{i + 1}") for i, (_, bn) in enumerate(apairs.values()))
    assert not torch.allclose(bn_scale(apairs["conv4"][1], "clean"), bn_scale(apairs["conv4"][1], "adv"))


def test_roc_curve_and_threshold() -> None:
    fpr, tpr = roc_curve(np.array([0.1, 0.2]), np.array([0.3, 0.9]))
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert (1.0 in tpr[fpr == 0])  # perfectly separated
    target = load(AWNET_CKPT)
    thr, source = threshold_of(target)  # a checkpoint: the exporter's rule, as evaluate applies it
    assert 0.0 < thr < 1.0 and source.startswith("calibrated on")
    if MANIFEST.is_file():
        served = json.loads(MANIFEST.read_text())["router"]["threshold"]
        assert threshold_of(target, MANIFEST.parent)[0] == served
        assert thr == pytest.approx(served)  # the checkpoint calibrated by the exporter's rule = the manifest


def test_router_attacks_are_the_evaluate_suites() -> None:
    target = load(AWNET_CKPT)
    specs = router_attacks(target, 0.3, 20, lambdas=(1.0,), evade_clean_branch=True)
    margin = [f"evade-margin-l{lam:g}" for lam in MARGIN_LAMBDAS]
    assert [s.name for s in specs] == ["pgd20", "evade-router-l1", "evade-clean-l1", *margin, "transfer-clean"]
    built = {s.name: s.build(target.model) for s in specs}
    assert all(a.steps == 20 and a.step_size == pytest.approx(2.5 * 0.3 / 20) for a in built.values())
    assert (built["evade-router-l1"].loss, built["evade-router-l1"].loss_kwargs, built["evade-router-l1"].mix) == (
        "ce-evade-router", {"weight": 1.0}, None)
    assert (built["evade-clean-l1"].loss_kwargs, built["evade-clean-l1"].mix) == ({"weight": 1.0}, "clean")
    assert (built["transfer-clean"].loss, built["transfer-clean"].mix) == ("ce", "clean")
    assert (built[margin[0]].loss, built[margin[0]].loss_kwargs) == ("ce-evade-router-margin", {"weight": MARGIN_LAMBDAS[0]})
    assert [s.name for s in router_attacks(target, 7, 5, lambdas=(0.5,))] == ["pgd5", "evade-router-l0.5", *margin, "transfer-clean"]


def test_analyze_weights_command(static_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    rc = main(["analyze", "weights", str(static_ckpt), str(AWNET_CKPT), "--out", str(out), "--n", "16", "--steps", "5"])
    assert rc == 0
    for f in ("weights_hist.png", "weights_stats.png", "weights.json", "weights.md"):
        assert (out / f).stat().st_size > 0
    report = json.loads((out / "weights.json").read_text())
    labels = ["standard", "awnet clean branch", "awnet adversarial branch"]
    assert [m["label"] for m in report["models"]] == labels
    assert report["bn_folded"] is True and "BN-folded" in report["weights"]
    assert list(report["layers"]) == LAYERS
    for layer in LAYERS:
        for lab in labels:
            st = report["layers"][layer][lab]
            assert st["std"] > 0 and math.isfinite(st["kurtosis"]) and st["folded"] is True
        # the two branches share W but not omega and BN: their effective filters differ
        assert report["layers"][layer][labels[1]]["std"] != report["layers"][layer][labels[2]]["std"]
    assert "awnet adversarial branch" in capsys.readouterr().out

    raw = tmp_path / "raw"
    assert main(["analyze", "weights", str(static_ckpt), "--out", str(raw), "--raw", "--labels", "rand"]) == 0
    rr = json.loads((raw / "weights.json").read_text())
    model, _ = load_model(static_ckpt)
    assert rr["bn_folded"] is False
    assert rr["layers"]["conv1"]["rand"]["std"] == pytest.approx(float(model.conv1.weight.detach().double().std(unbiased=False)))


def test_analyze_router_command(tmp_path: Path, static_ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r"
    argv = ["analyze", "router", str(AWNET_CKPT), "--out", str(out), "--n", "16", "--steps", "5",
            "--lambdas", "0.5", "2", "--no-progress"]  # fmt: skip
    if MANIFEST.is_file():
        argv += ["--manifest", str(MANIFEST)]
    assert main(argv) == 0
    for f in ("router_hist.png", "router_roc.png", "router.json", "router.md"):
        assert (out / f).stat().st_size > 0
    report = json.loads((out / "router.json").read_text())
    attacks = report["attacks"]
    margin = [f"evade-margin-l{lam:g}" for lam in MARGIN_LAMBDAS]
    names = ["pgd5", "evade-router-l0.5", "evade-router-l2", *margin, "transfer-clean"]  # the evaluate suite's names
    assert list(attacks) == ["clean", *names]
    for key in names:
        r = attacks[key]
        assert 0 <= r["router"]["auc"] <= 1 and 0 <= r["router"]["flagged"] <= 1
        assert 0 <= r["router"]["missed"] <= 1 - r["acc"] + 1e-9
    worst = report["worst_case"]
    assert worst["attacks"] == names
    assert worst["acc"] <= min(attacks[k]["acc"] for k in names)
    assert worst["missed"] >= max(attacks[k]["router"]["missed"] for k in names)
    assert report["n"] == 16 and report["steps"] == 5 and report["eps"] == pytest.approx(0.3)
    assert report["step_size"] == pytest.approx(2.5 * 0.3 / 5)
    assert set(ATTACK_LOSSES) == {"ce", "cw", "kl", "ce-evade-router", "ce-evade-router-margin"}  # none per run
    assert "| evade-router-l2 |" in capsys.readouterr().out

    assert main(["analyze", "router", str(static_ckpt), "--out", str(tmp_path / "s"), "--n", "4"]) == 2
