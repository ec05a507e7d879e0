"""Robust validation during training that masked gradients cannot fool.

Our own PGD is what the model trains against, so a model can learn to defeat it (masked
or obfuscated gradients) and look more robust the longer it trains. Validation therefore
adds APGD-CE from torchattacks (parameter-free step size, its own loss schedule) on the
validation split, APGD-T (targeted DLR, the ``val_apgdt_targets`` highest other classes:
AutoAttack's second attack, the one that broke a checkpoint APGD-CE had passed; see
docs/results.md, issue 17) on the same images, and every few validations a gradient-free
check: Square on a fixed subset plus PGD at eps = 1 (which must reach 0 %). Checkpoint
selection uses the worst of the robust figures; any of them below PGD by more than
``masking_margin`` raises the alarm.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from models import unwrap
from training.attacks import PGD
from training.config import TrainConfig
from training.metrics import evaluate


def _accuracy(model: nn.Module, attack, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> np.ndarray:
    from training.evaluation.runner import served_forward

    correct = []
    for i in range(0, len(x), batch):
        xa = attack(x[i:i + batch], y[i:i + batch])
        correct.append((served_forward(model, xa)[0].argmax(1) == y[i:i + batch]).numpy())
    return np.concatenate(correct)


def square_due(cfg: TrainConfig, index: int, last: bool) -> bool:
    """Square runs on every ``val_square_every``-th validation (1-based) and on the last."""
    return cfg.val_square_every > 0 and (last or index % cfg.val_square_every == 0)


def robust_validation(
    model: nn.Module, val_set: Dataset, cfg: TrainConfig, device: torch.device, index: int, last: bool,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """Validation figures: clean, PGD (ours), APGD-CE, APGD-T, and when due Square and PGD at
    eps 1 on the fixed subset; ``robust_acc`` is the worst of them, ``masking`` the alarm (or None)."""
    from training.evaluation import library

    bare = unwrap(model)
    t0 = time.time()
    eps = float(cfg.eps)
    pgd = lambda m: PGD(m, eps=eps, step_size=2.5 * eps / cfg.eval_attack_steps, steps=cfg.eval_attack_steps)  # noqa: E731
    res: dict[str, Any] = evaluate(bare, val_set, pgd, device, max_samples=cfg.val_max_samples, progress=progress,
                                   desc="validate")  # fmt: skip
    res["pgd_acc"] = res["adv_acc"]
    robust = {"pgd": res["adv_acc"]}
    if cfg.method == "standard":  # not trained to be robust: nothing to mask, selected on clean accuracy
        res.update(robust_acc=res["adv_acc"], robust_acc_by="pgd", masking=None, seconds=round(time.time() - t0, 1))
        return res
    was_training = bare.training
    bare.eval()
    try:
        x, y = val_set.tensors()
        x, y = x[: cfg.val_max_samples].to(device), y[: cfg.val_max_samples].to(device)
        torch.manual_seed(cfg.seed)
        if cfg.val_attack_steps > 0:
            apgd = library.apgd(bare, eps, "ce", steps=cfg.val_attack_steps, seed=cfg.seed)
            res["apgd_acc"] = float(_accuracy(bare, apgd, x, y).mean())
            robust["apgd"] = res["apgd_acc"]
        if cfg.val_apgdt_targets > 0:  # AW-Net too: its input config is its backbone's
            num_classes = bare.input_config.num_classes
            apgdt = library.apgd_t(bare, eps, num_classes, steps=cfg.val_apgdt_steps, seed=cfg.seed,
                                   targets=cfg.val_apgdt_targets)  # fmt: skip
            res["apgdt_acc"] = float(_accuracy(bare, apgdt, x, y).mean())
            res["apgdt_targets"] = min(cfg.val_apgdt_targets, num_classes - 1)
            robust["apgd-t"] = res["apgdt_acc"]
        if square_due(cfg, index, last):
            xs, ys = x[: cfg.val_square_samples], y[: cfg.val_square_samples]
            square = library.square(bare, eps, queries=cfg.val_square_queries, seed=cfg.seed)
            res["square_acc"] = float(_accuracy(bare, square, xs, ys).mean())
            res["pgd_acc_square_subset"] = float(_accuracy(bare, pgd(bare), xs, ys).mean())
            big = PGD(bare, eps=1.0, step_size=2.5 / 20, steps=20)
            res["acc_eps1"] = float(_accuracy(bare, big, xs, ys).mean())
            res["square_samples"] = int(len(xs))
            robust["square"] = res["square_acc"]
    finally:
        bare.train(was_training)
    res["robust_acc"] = min(robust.values())
    res["robust_acc_by"] = min(robust, key=robust.get)
    res["masking"] = masking_alarm(res, cfg.masking_margin)
    res["seconds"] = round(time.time() - t0, 1)
    return res


def masking_alarm(res: dict[str, Any], margin: float) -> dict[str, Any] | None:
    """The reasons to distrust the PGD figure, with their numbers; None when there are none."""
    reasons = []
    if "apgd_acc" in res and res["apgd_acc"] < res["pgd_acc"] - margin:
        reasons.append(f"APGD-CE {res['apgd_acc']:.3f} < PGD {res['pgd_acc']:.3f} - {margin}")
    if "apgdt_acc" in res and res["apgdt_acc"] < res["pgd_acc"] - margin:
        reasons.append(f"APGD-T {res['apgdt_acc']:.3f} < PGD {res['pgd_acc']:.3f} - {margin}")
    if "square_acc" in res and res["square_acc"] < res["pgd_acc_square_subset"] - margin:
        reasons.append(f"Square {res['square_acc']:.3f} < PGD {res['pgd_acc_square_subset']:.3f} - {margin} "
                       f"(same {res['square_samples']} images)")  # fmt: skip
    if "acc_eps1" in res and res["acc_eps1"] > 0.0:
        reasons.append(f"PGD at eps 1 leaves {res['acc_eps1']:.3f} correct (must be 0)")
    if not reasons:
        return None
    keys = ("pgd_acc", "apgd_acc", "apgdt_acc", "square_acc", "pgd_acc_square_subset", "acc_eps1")
    return {"reasons": reasons, "margin": margin, "figures": {k: res[k] for k in keys if k in res}}
