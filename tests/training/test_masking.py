"""Robust validation during training: a model with masked gradients trips the alarm, an
ordinary one does not; selection keeps best.pt and says why; export refuses a masked
checkpoint unless forced, and then records the alarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.trainer import Trainer

RUN = dict(method="pgd-at", epochs=2, max_train_samples=512, batch_size=64, attack_steps=5, eval_attack_steps=10,
           val_max_samples=64, val_attack_steps=10, val_square_every=1, val_square_samples=64, val_square_queries=200,
           log_every=100)  # fmt: skip


def quantise_input(module: nn.Module, args: tuple) -> tuple:
    """Input quantisation to 8 bits as a forward pre-hook: zero input gradient, so PGD
    cannot move and looks robust (a hook, so the checkpoint keeps the plain state dict)."""
    return (torch.round(args[0] * 255) / 255, *args[1:])


def _run(tmp: Path, name: str, masked: bool) -> tuple[Path, list[dict]]:
    out = tmp / name
    trainer = Trainer(TrainConfig(out=str(out), **RUN))
    if masked:
        trainer.model.register_forward_pre_hook(quantise_input)
    trainer.fit()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return out, records


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    tmp = tmp_path_factory.mktemp("masking")
    return {"masked": _run(tmp, "masked", True), "ordinary": _run(tmp, "ordinary", False)}


@pytest.mark.slow
def test_masked_model_trips_the_alarm_and_an_ordinary_one_does_not(runs) -> None:
    for name, masked in (("masked", True), ("ordinary", False)):
        out, records = runs[name]
        vals = [r["val"] for r in records if r["event"] == "epoch" and "val" in r]
        assert vals and all({"pgd_acc", "apgd_acc", "square_acc", "acc_eps1", "robust_acc"} <= v.keys() for v in vals)
        alarms = [v["masking"] for v in vals if v["masking"]]
        if masked:
            assert alarms, vals
            assert any("eps 1" in r or "Square" in r for r in alarms[-1]["reasons"])
            assert load_checkpoint(out / "last.pt")["masking_alarm"] is not None
        else:
            assert not alarms, [v["masking"] for v in vals]
            assert load_checkpoint(out / "last.pt")["masking_alarm"] is None


@pytest.mark.slow
def test_selection_log_and_best_checkpoint(runs) -> None:
    out, records = runs["ordinary"]
    selections = [r for r in records if r["event"] == "selection"]
    assert [s["epoch"] for s in selections] == [1, 2]
    assert all(s["reason"] for s in selections)
    best = load_checkpoint(out / "best.pt")
    kept = [s for s in selections if s["kept"]][-1]
    assert best["selection"]["epoch"] == kept["epoch"] == best["epoch"]
    masked_out, masked_records = runs["masked"]
    masked_sel = [r for r in masked_records if r["event"] == "selection"]
    assert all(not s["kept"] and "masking alarm" in s["reason"] for s in masked_sel)
    assert not (masked_out / "best.pt").exists()


@pytest.mark.slow
def test_export_refuses_a_masked_checkpoint_unless_forced(runs, tmp_path) -> None:
    from training.export.exporter import export_checkpoint

    out, _ = runs["masked"]
    with pytest.raises(ValueError, match="masking alarm"):
        export_checkpoint(out / "last.pt", tmp_path / "m" / "1", skip_eval=True, log=lambda *_: None)
    res = export_checkpoint(out / "last.pt", tmp_path / "m" / "1", skip_eval=True, force=True, log=lambda *_: None)
    assert res.manifest["masking_alarm"]["forced"] is True
    assert res.manifest["masking_alarm"]["reasons"]
