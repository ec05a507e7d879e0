"""Training runs on the embedded digits: methods, losses going down, exact resume, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import MIX_ADV, MIX_CLEAN
from tests.support.checkpoints import write_checkpoint
from tests.support.paths import ROOT
from tests.support.servers import free_port
from training.checkpoint import load_checkpoint, load_model
from training.config import TrainConfig
from training.hardware import cpu_computes_bfloat16
from training.trainer import Trainer

TINY = dict(max_train_samples=256, batch_size=64, attack_steps=2, eval_attack_steps=2, val_max_samples=64, log_every=1,
            val_attack_steps=5, val_apgdt_steps=3, val_square_samples=32, val_square_queries=50)  # fmt: skip


def tiny(**kw) -> dict:
    """TINY for ``kw``'s method: a standard run takes no training-attack options."""
    robust_only = ("attack_steps", "val_attack_steps", "val_apgdt_steps", "val_square_samples", "val_square_queries")  # fmt: skip
    base = {k: v for k, v in TINY.items() if not (kw.get("method", "standard") == "standard" and k in robust_only)}
    return {**base, **kw}


def _records(run: Path, event: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == event]


def _train(tmp: Path, name: str, **kw) -> Path:
    out = tmp / name
    Trainer(TrainConfig(out=str(out), **tiny(**kw))).fit()
    return out


@pytest.fixture(scope="module")
def teachers(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("teachers")
    clean = _train(tmp, "clean", method="standard", epochs=1)
    robust = _train(tmp, "robust", method="trades", epochs=1)
    return clean / "last.pt", robust / "last.pt"


@pytest.mark.slow
@pytest.mark.parametrize("method,rat", [("standard", False), ("pgd-at", False), ("pgd-at", True),
                                        ("trades", True), ("awnet", False), ("awnet", True)])  # fmt: skip
def test_every_method_trains(tmp_path, teachers, method, rat) -> None:
    extra = {"clean_teacher": str(teachers[0]), "robust_teacher": str(teachers[1])} if method == "awnet" else {}
    out = _train(tmp_path, "run", method=method, rat=rat, epochs=1, **extra)
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["config"]["method"] == method and ckpt["config"]["rat"] == rat
    assert json.loads((out / "config.json").read_text()) == ckpt["config"]
    steps = _records(out, "step")
    assert steps and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    if rat:
        assert "rat_f1" in steps[0] and "rat_f2" in steps[0]
    if method == "awnet":
        assert {"l_nat", "l_adv", "l_type", "w_nat"} <= steps[-1].keys()


@pytest.mark.slow
def test_awnet_run_lowers_losses_and_branches_differ(tmp_path) -> None:
    out = _train(tmp_path, "aw", method="awnet", teacher_free=True, epochs=4, max_train_samples=512, lr=0.05)
    epochs = _records(out, "epoch")
    first, last = epochs[0]["train"], epochs[-1]["train"]
    for key in ("l_nat", "l_adv", "l_type"):
        assert last[key] < first[key], (key, first[key], last[key])
    # the router learnt to tell PGD from clean *at inference* (eval-mode BN statistics)
    assert epochs[-1]["val"]["router_auc"] > 0.7, epochs[-1]["val"]
    model, _ = load_model(out / "last.pt")
    from training.data import build_dataset

    x, _ = build_dataset("mnist5k", "test").tensors()
    with torch.no_grad():
        clean, adv = model(x[:32], mix=MIX_CLEAN), model(x[:32], mix=MIX_ADV)
    assert (clean - adv).abs().max() > 1e-2


@pytest.mark.slow
def test_resume_is_bit_for_bit(tmp_path) -> None:
    kw = dict(method="awnet", teacher_free=True, epochs=2, eps_warmup_epochs=1.0)
    straight = _train(tmp_path, "straight", **kw)
    part = tmp_path / "part"
    Trainer(TrainConfig(out=str(part), stop_after=1, **tiny(**kw))).fit()
    resumed = tmp_path / "resumed"
    Trainer(TrainConfig(out=str(resumed), resume=str(part / "last.pt"), **tiny(**kw))).fit()
    a = [s for s in _records(straight, "step") if s["epoch"] == 2]
    b = [s for s in _records(resumed, "step") if s["epoch"] == 2]
    assert a and len(a) == len(b)
    for sa, sb in zip(a, b, strict=True):
        assert sa["loss"] == sb["loss"] and sa["w_nat"] == sb["w_nat"], (sa, sb)
    sd_a = load_checkpoint(straight / "last.pt")["model"]
    sd_b = load_checkpoint(resumed / "last.pt")["model"]
    assert all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port()), "-m", "training", "train", "--method", "awnet", "--teacher-free",
        "--epochs", "1", "--max-train-samples", "256", "--batch-size", "32", "--attack-steps", "2",
        "--eval-attack-steps", "2", "--val-max-samples", "64", "--val-attack-steps", "5", "--val-apgdt-steps", "3", "--device", "cpu", "--log-every", "1", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (sync,) = _records(out, "ddp_replicas")
    assert sync["world_size"] == 2 and len(sync["param_sha256"]) == 2 and sync["in_sync"]
    steps = _records(out, "step")
    assert steps[-1]["step"] == 256 // (32 * 2)  # each rank saw its shard


def test_cli_help_lists_every_choice() -> None:
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    for word in ("standard", "pgd-at", "trades", "awnet", "awnet_wrn34_r", "mnist5k", "--rat", "--teacher-free", "--resume"):
        assert word in proc.stdout, word


def test_cli_clear_errors(tmp_path) -> None:
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--method", "awnet", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "--teacher-free" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--dataset", "cifar10", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "torchvision" in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not cpu_computes_bfloat16(),
                    reason="no native bfloat16 here: --amp is refused (tests/training/test_hardware_precision.py)")
def test_mixed_precision_option_runs_on_cpu(tmp_path) -> None:
    """--amp: bfloat16 autocast on CPU (float16 + GradScaler on CUDA)."""
    out = _train(tmp_path, "amp", method="awnet", teacher_free=True, epochs=1, amp=True)
    steps = _records(out, "step")
    assert steps and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)


def test_warm_start_copies_static_weights_into_both_branches(tmp_path) -> None:
    from models import create_model
    from training.checkpoint import warm_start_awnet

    static = create_model("smallcnn").eval()
    with torch.no_grad():
        for m in static.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    cfg = TrainConfig(method="standard").resolve(0.3, False)
    path = write_checkpoint(tmp_path / "static.pt", static, "smallcnn", cfg.to_dict())
    aw = create_model("awnet_smallcnn").eval()
    assert warm_start_awnet(aw, path) > 0
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():  # omega starts at 1: both branches are exactly the static model
        torch.testing.assert_close(aw(x, mix=MIX_CLEAN), static(x))
        torch.testing.assert_close(aw(x, mix=MIX_ADV), static(x))
    wrong = create_model("awnet_resnet18")
    with pytest.raises(ValueError, match="does not match"):
        warm_start_awnet(wrong, path)
