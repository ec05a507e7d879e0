"""The training loop: seeded, resumable, DDP-aware, with a progress bar and a JSONL log."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset
from tqdm import tqdm

from models import is_awnet, unwrap
from training.attacks import PGD
from training.checkpoint import (
    build_model,
    code_revision,
    load_checkpoint,
    load_model,
    model_kwargs,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.config import TrainConfig
from training.data import build_dataset, get_dataset_info, make_loader, parse_dataset_name
from training.distributed import all_reduce_mean, barrier, cleanup, init_distributed
from training.hardware import cpu_computes_bfloat16
from training.methods import METHOD_CLASSES, AWNetMethod, Method
from training.metrics import evaluate
from training.validation import robust_validation


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at a global step (per-step cosine, or epoch milestones)."""
    total = cfg.epochs * steps_per_epoch
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    epoch = step / max(steps_per_epoch, 1)
    marks = [m * cfg.epochs if m < 1 else m for m in cfg.milestones]
    return cfg.lr_gamma ** sum(epoch >= m for m in marks)


class Trainer:
    def __init__(self, cfg: TrainConfig) -> None:
        self.dist, self.device = init_distributed(cfg.device)
        info = get_dataset_info(cfg.dataset)  # the dataset's facts (models.config.DATASETS)
        self.cfg = cfg.resolve(info.eps, parse_dataset_name(cfg.dataset).augmented_by_default)
        self.info = info
        self.out = Path(cfg.out)
        torch.manual_seed(cfg.seed)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True

        self.train_set = build_dataset(
            cfg.dataset,
            "train",
            root=cfg.data_root,
            download=cfg.download,
            augment=bool(cfg.augment),
        )
        if cfg.max_train_samples > 0:
            self.train_set = Subset(
                self.train_set, range(min(cfg.max_train_samples, len(self.train_set)))
            )
        self.val_set = build_dataset(cfg.dataset, "val", root=cfg.data_root, download=False)
        self.input_config = info.input_config
        self.model_kwargs = model_kwargs(cfg)
        self.model = build_model(cfg.model, self.input_config, self.model_kwargs).to(self.device)
        if cfg.init_from and not cfg.resume:
            if not is_awnet(self.model):
                raise ValueError("--init-from warm-starts AW-Net models only")
            from training.checkpoint import warm_start_awnet

            warm_start_awnet(self.model, cfg.init_from)
        self.loader = make_loader(
            self.train_set, cfg.batch_size, shuffle=True, seed=cfg.seed, num_workers=cfg.workers,
            distributed=self.dist.enabled, drop_last=True,
        )  # fmt: skip
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise ValueError("the training split is smaller than one batch: lower --batch-size")
        self.optimizer = self._make_optimizer()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(self.cfg, s, self.steps_per_epoch)
        )
        use_amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        self.amp_dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        # bfloat16 convolutions on the CPU are fastest in channels-last layout (oneDNN):
        # measured 103 against 74 images/s for a PGD-10 step of smallcnn on 3x32x32, 1 thread
        # (docs/results.md, "The CIFAR-10 setting").
        # Without native bfloat16 (AVX2 only) oneDNN emulates it: measured 2.1 against 32.5
        # images/s in float32 (docs/results.md), so --amp there is refused, not silently slow.
        if cfg.amp and self.device.type == "cpu" and not cpu_computes_bfloat16():
            raise ValueError(
                "--amp on this CPU: it has no native bfloat16 (no AVX-512/AMX), and emulated bfloat16 "
                "trains about 15x slower than float32; drop --amp (--channels-last keeps float32 fast)"
            )
        self.channels_last = self.device.type == "cpu" and (cfg.amp or cfg.channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.method = self._make_method()
        self.start_epoch = 0
        self.global_step = 0
        self.best: dict[str, Any] | None = None  # the selected checkpoint (best.pt)
        self.validations = 0
        if cfg.resume:
            self._resume(cfg.resume)
        self.ddp_model: nn.Module = self.model
        if self.dist.enabled:
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )

    # ---- construction -------------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.cfg.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return torch.optim.SGD(
            params, lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay
        )

    def _make_method(self) -> Method:
        cls = METHOD_CLASSES[self.cfg.method]
        if cls is AWNetMethod:
            teachers = None
            if not self.cfg.teacher_free:
                teachers = tuple(
                    self._load_teacher(p) for p in (self.cfg.clean_teacher, self.cfg.robust_teacher)
                )
            return AWNetMethod(self.cfg, self.model, self.device, teachers=teachers)
        return cls(self.cfg, self.model, self.device)

    def _load_teacher(self, path: str) -> nn.Module:
        teacher, ckpt = load_model(path, self.device)
        if ckpt["input_config"]["class_names"] != list(self.input_config.class_names):
            raise ValueError(f"teacher {path} was trained on other classes than {self.cfg.dataset}")
        teacher.requires_grad_(False)
        if self.channels_last:
            teacher.to(memory_format=torch.channels_last)
        return teacher

    # ---- checkpoints --------------------------------------------------------------------
    def _payload(self, epoch: int, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": "awnet-serve-checkpoint/1",
            "config": self.cfg.to_dict(),
            "model_name": self.cfg.model,
            "model_kwargs": self.model_kwargs,
            "input_config": self.input_config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "method_state": self.method.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "rng": rng_state(),
            "metrics": metrics,
            "masking_alarm": (metrics.get("val") or {}).get("masking"),
            "best": self.best,
            "validations": self.validations,
            "dataset": self.info.to_dict(),
            "code_revision": code_revision(),
        }

    def _resume(self, path: str) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt["model_name"] != self.cfg.model:
            raise ValueError(f"{path} holds a {ckpt['model_name']}, not a {self.cfg.model}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.method.load_state_dict(ckpt.get("method_state", {}))
        self.best = ckpt.get("best")
        self.validations = int(ckpt.get("validations", 0))
        self.start_epoch = int(ckpt["epoch"])
        self.global_step = int(ckpt["global_step"])
        set_rng_state(ckpt["rng"])

    # ---- loop ---------------------------------------------------------------------------
    def current_eps(self, epoch_progress: float) -> float:
        if self.cfg.eps_warmup_epochs <= 0:
            return float(self.cfg.eps)
        return float(self.cfg.eps) * min(1.0, (epoch_progress + 1e-9) / self.cfg.eps_warmup_epochs)

    def _autocast(self):
        if not self.cfg.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        self.loader.generator.manual_seed(self.cfg.seed * 1000 + epoch)
        if self.dist.enabled:
            self.loader.sampler.set_epoch(epoch)
        sums: dict[str, float] = {}
        count = 0
        bar = tqdm(
            self.loader, desc=f"epoch {epoch + 1}/{self.cfg.epochs} [{self.cfg.method}]",
            disable=not self.dist.is_main, dynamic_ncols=True, leave=True, mininterval=0.5,
        )  # fmt: skip
        for i, (x, y) in enumerate(bar):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.method.set_eps(self.current_eps(epoch + i / self.steps_per_epoch))
            if isinstance(self.method, AWNetMethod):  # MTARD: the balance rate follows the lr
                self.method.set_lr_factor(
                    lr_factor(self.cfg, self.global_step, self.steps_per_epoch)
                )
            with self._autocast():
                loss, figures = self.method.loss(self.ddp_model, x, y)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.cfg.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            self.global_step += 1
            figures = {"loss": loss.item(), **figures}
            if not math.isfinite(figures["loss"]):
                raise FloatingPointError(
                    f"loss became {figures['loss']} at step {self.global_step}"
                )
            count += 1
            for k, v in figures.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.global_step == 1 or self.global_step % self.cfg.log_every == 0:
                self._log({"event": "step", "epoch": epoch + 1, "step": self.global_step, "eps": self.method.eps,
                           "lr": self.optimizer.param_groups[0]["lr"], **figures})  # fmt: skip
            post = {
                k: f"{v / count:.4g}"
                for k, v in sums.items()
                if k in ("loss", "l_nat", "l_adv", "l_type", "ce", "ce_adv", "kl", "router_acc")
            }
            # the selected checkpoint's worst-of robust validation accuracy
            if self.best is not None:
                post["best_rob"] = f"{self.best['robust_acc']:.3f}@{self.best['epoch']}"
            bar.set_postfix(post)
        return {
            k: all_reduce_mean(v / max(count, 1), self.dist, self.device) for k, v in sums.items()
        }

    def validate(self, index: int, last: bool) -> dict[str, Any]:
        """Robust validation (training/validation.py): PGD, APGD-CE, APGD-T, and Square when due."""
        return robust_validation(
            self.model, self.val_set, self.cfg, self.device, index, last, progress=self.dist.is_main
        )

    def _select(self, epoch: int, val: dict[str, Any], payload: dict[str, Any]) -> None:
        """Keep ``best.pt``: the highest worst-of robust validation accuracy among checkpoints
        without a masking alarm (ties keep the earlier one); log why."""
        by_clean = self.cfg.method == "standard"  # a standard model is chosen for clean accuracy
        score = float(val["clean_acc"] if by_clean else val["robust_acc"])
        val = {**val, "robust_acc_by": "clean" if by_clean else val["robust_acc_by"]}
        alarm = None if by_clean else val.get("masking")
        prev = self.best
        keep = alarm is None and (prev is None or score > prev["robust_acc"])
        why = (f"masking alarm: {'; '.join(alarm['reasons'])}" if alarm else
               f"{'clean' if by_clean else 'worst robust'} val acc {score:.4f} ({val['robust_acc_by']})"
               + (f" > best so far {prev['robust_acc']:.4f} (epoch {prev['epoch']})" if prev and keep else "")
               + (f" <= best so far {prev['robust_acc']:.4f} (epoch {prev['epoch']})" if prev and not keep else ""))  # fmt: skip
        record = {
            "event": "selection",
            "epoch": epoch,
            "kept": keep,
            "robust_acc": score,
            "reason": why,
        }
        self._log(record)
        if keep:
            self.best = {"epoch": epoch, "robust_acc": score, "by": val["robust_acc_by"]}
            save_checkpoint(
                self.out / "best.pt", {**payload, "selection": {**self.best, "reason": why}}
            )
        tqdm.write(f"selection: epoch {epoch} {'kept as best.pt' if keep else 'not kept'}: {why}")
        if alarm:
            reasons = "; ".join(alarm["reasons"])
            tqdm.write(f"WARNING masking alarm at epoch {epoch}: {reasons}")
            logging.getLogger("awnet.training").warning(
                "masking alarm at epoch %d: %s", epoch, reasons
            )

    def _log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _check_replicas(self) -> None:
        """Under DDP, log every rank's parameter hash: replicas must hold equal weights."""
        if not self.dist.enabled:
            return
        import hashlib

        import torch.distributed as dist

        h = hashlib.sha256()
        for p in self.model.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        hashes: list[str | None] = [None] * self.dist.world_size
        dist.all_gather_object(hashes, h.hexdigest())
        self._log({"event": "ddp_replicas", "world_size": self.dist.world_size, "param_sha256": hashes,
                   "in_sync": len(set(hashes)) == 1})  # fmt: skip
        if len(set(hashes)) != 1:
            raise RuntimeError(f"DDP replicas diverged: {hashes}")

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs; returns the last validation figures."""
        cfg = self.cfg
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        barrier(self.dist)
        metrics: dict[str, Any] = {}
        try:
            end = min(cfg.epochs, cfg.stop_after) if cfg.stop_after > 0 else cfg.epochs
            for epoch in range(self.start_epoch, end):
                t0 = time.time()
                train_figs = self.train_epoch(epoch)
                metrics = {
                    "epoch": epoch + 1,
                    "train": train_figs,
                    "train_seconds": round(time.time() - t0, 2),
                }
                due = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
                if due and self.dist.is_main:
                    self.validations += 1
                    metrics["val"] = self.validate(self.validations, last=epoch + 1 == cfg.epochs)
                self._log({"event": "epoch", **metrics})
                if self.dist.is_main:
                    payload = self._payload(epoch + 1, metrics)
                    save_checkpoint(self.out / "last.pt", payload)
                    if "val" in metrics:
                        v = metrics["val"]
                        tqdm.write(
                            f"epoch {epoch + 1}: val clean {v['clean_acc']:.4f} pgd{cfg.eval_attack_steps} {v['pgd_acc']:.4f}"
                            + (f" apgd-ce {v['apgd_acc']:.4f}" if "apgd_acc" in v else "")
                            + (f" apgd-t {v['apgdt_acc']:.4f}" if "apgdt_acc" in v else "")
                            + (f" square {v['square_acc']:.4f}" if "square_acc" in v else "")
                            + (f" eps1 {v['acc_eps1']:.3f}" if "acc_eps1" in v else "")
                            + (f" router auc {v['router_auc']:.4f}" if "router_auc" in v else "")
                            + f" ({v['seconds']} s)"
                        )
                        self._select(epoch + 1, v, payload)
                barrier(self.dist)
            self._check_replicas()
            if self.dist.is_main:
                from training.plots import plot_training_curves

                plot_training_curves(self.out)
        finally:
            cleanup(self.dist)
        return metrics


def evaluate_test(
    ckpt_path: str | Path, eval_steps: int = 20, max_samples: int | None = None, device: str = "cpu"
) -> dict[str, float]:
    """Clean and PGD-``eval_steps`` accuracy of a checkpoint on its dataset's test split."""
    model, ckpt = load_model(ckpt_path, device)
    cfg = TrainConfig.from_dict(ckpt["config"])
    test = build_dataset(cfg.dataset, "test", root=cfg.data_root)
    eps = float(cfg.eps)
    factory = lambda m: PGD(m, eps=eps, step_size=2.5 * eps / eval_steps, steps=eval_steps)  # noqa: E731
    return evaluate(
        unwrap(model),
        test,
        factory,
        torch.device(device),
        max_samples=max_samples,
        progress=True,
        desc="test",
    )
