"""Robust validation during training: a model with masked gradients trips the alarm, an
ordinary one does not; APGD-T catches the masking that CE attacks miss (saturated logits);
selection keeps best.pt and says why; export refuses a masked checkpoint unless forced, and
then records the alarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoint import load_checkpoint
from training.config import TrainConfig
from training.data import build_dataset
from training.trainer import Trainer
from training.validation import masking_alarm, robust_validation

RUN = dict(method="pgd-at", epochs=2, max_train_samples=512, batch_size=64, attack_steps=5, eval_attack_steps=10,
           val_max_samples=64, val_attack_steps=10, val_apgdt_targets=3, val_apgdt_steps=10, val_square_every=1,
           val_square_samples=64, val_square_queries=200, log_every=100)  # fmt: skip
ROBUST = ("pgd_acc", "apgd_acc", "apgdt_acc", "square_acc")


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
        assert vals and all({*ROBUST, "acc_eps1", "robust_acc"} <= v.keys() for v in vals)
        for v in vals:  # APGD-T is in the worst-of that selection uses
            assert v["apgdt_targets"] == 3
            assert v["robust_acc"] == min(v[k] for k in ROBUST) <= v["apgdt_acc"], v
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


def _quick_model() -> nn.Module:
    """A small CNN after 16 plain SGD steps on the digits: accurate, not robust."""
    from models import create_model

    torch.manual_seed(0)
    model = create_model("smallcnn")
    x, y = build_dataset("mnist5k", "train").tensors()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for xb, yb in zip(x[:1024].split(64), y[:1024].split(64), strict=True):
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_apgd_t_catches_saturated_logits_that_ce_attacks_miss() -> None:
    """Logits scaled by 1e4 saturate the softmax: CE gradients are exactly zero, so PGD and
    APGD-CE leave the model at its clean accuracy; APGD-T's DLR loss is scale-free and finds
    the examples. Its figure becomes the worst-of and raises the alarm on its own."""
    model, val = _quick_model(), build_dataset("mnist5k", "val")
    cfg = TrainConfig(method="pgd-at", eps=0.3, val_max_samples=64, eval_attack_steps=10, val_attack_steps=10,
                      val_apgdt_targets=3, val_apgdt_steps=10, val_square_every=0)  # fmt: skip
    plain = robust_validation(model, val, cfg, torch.device("cpu"), 1, last=True, progress=False)
    assert plain["clean_acc"] > 0.5 and plain["masking"] is None, plain  # nothing hidden
    model.register_forward_hook(lambda module, args, out: out * 1e4)
    res = robust_validation(model, val, cfg, torch.device("cpu"), 1, last=True, progress=False)
    assert res["pgd_acc"] > 0.5 and res["apgd_acc"] > 0.5, res  # the CE attacks are blind
    assert res["apgdt_acc"] < res["pgd_acc"] - 0.3, res
    assert res["robust_acc"] == res["apgdt_acc"] and res["robust_acc_by"] == "apgd-t"
    assert [r for r in res["masking"]["reasons"] if r.startswith("APGD-T")], res["masking"]
    assert "APGD-CE" not in " ".join(res["masking"]["reasons"])
    assert res["masking"]["figures"]["apgdt_acc"] == res["apgdt_acc"]


def test_alarm_margin_applies_to_apgd_t() -> None:
    # validation of the 16-epoch TRADES run's epoch 6 (docs/results.md): APGD-CE within the margin
    figures = {"pgd_acc": 0.75, "apgd_acc": 0.662}
    assert masking_alarm(figures, 0.10) is None
    alarm = masking_alarm({**figures, "apgdt_acc": 0.60}, 0.10)
    assert alarm and alarm["reasons"] == ["APGD-T 0.600 < PGD 0.750 - 0.1"]
    assert masking_alarm({**figures, "apgdt_acc": 0.66}, 0.10) is None
