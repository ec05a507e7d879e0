"""The resolved training configuration: saved in the run folder and in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

METHODS = ("standard", "pgd-at", "trades", "awnet")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "multistep", "constant")


@dataclass
class TrainConfig:
    # what to train
    method: str = "standard"
    model: str | None = None  # default: smallcnn, or awnet_smallcnn for --method awnet
    dataset: str = "mnist5k"
    data_root: str | None = None
    download: bool = False
    depths: list[int] | None = None  # per-stage block counts (wrn)
    widths: list[int] | None = None  # per-stage widen factors (wrn)
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # epochs, or fractions if < 1
    lr_gamma: float = 0.1
    grad_clip: float = 0.0  # 0: off (RobustWRN uses 5)
    augment: bool | None = None  # None: the dataset's default (crop+flip for CIFAR/SVHN)
    # attack used in training (L-inf)
    eps: float | None = None  # None: the dataset's default (0.3 digits, 8/255 CIFAR/SVHN)
    step_size: float | None = None  # None: 2.5 * eps / attack_steps
    attack_steps: int = 10
    eps_warmup_epochs: float = 0.0  # linear eps ramp from 0 (helps digits at eps 0.3)
    # TRADES
    trades_beta: float = 6.0
    # AW-Net
    clean_teacher: str | None = None
    robust_teacher: str | None = None
    teacher_free: bool = False  # CE instead of the two distillation terms
    init_from: str | None = None  # warm start from a static checkpoint of the same backbone
    type_loss_weight: float = 1.0  # lambda
    balance_rate: float = 0.025  # MTARD loss-balance rate
    kd_temperature: float = 1.0
    router_width: int = 32
    router_hidden: int = 64
    signal_activation: str = "2sigmoid"
    # randomized adversarial training (Jin et al., CVPR 2023)
    rat: bool = False
    rat_sigma: float = 1e-4
    rat_alpha: float = 0.2
    rat_c: float | None = None  # None: 1 - 2 / num_classes
    # evaluation during training
    eval_attack_steps: int = 20
    eval_every: int = 1
    val_max_samples: int = 1000
    max_train_samples: int = 0  # 0: the whole training split (smoke tests use a few hundred)
    # run
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    workers: int = 0
    out: str = "runs/default"
    resume: str | None = None
    stop_after: int = 0  # stop after this many epochs (0: run the whole schedule), e.g. preemptible jobs
    log_every: int = 20

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def resolve(self, default_eps: float, augment_default: bool) -> TrainConfig:
        """Fill the dataset-dependent defaults and validate; returns self."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.model is None:
            self.model = "awnet_smallcnn" if self.method == "awnet" else "smallcnn"
        awnet_model = self.model.startswith("awnet_")
        if self.method == "awnet" and not awnet_model:
            raise ValueError("--method awnet trains an AW-Net: pick an awnet_* model")
        if self.method != "awnet" and awnet_model:
            raise ValueError(
                f"--method {self.method} trains static models; AW-Net models need --method awnet"
            )
        if self.method == "awnet" and not self.teacher_free and not (self.clean_teacher and self.robust_teacher):
            raise ValueError(
                "--method awnet distils from two teachers: pass --clean-teacher and --robust-teacher "
                "checkpoints (train them with --method standard and --method trades), "
                "or choose the teacher-free variant with --teacher-free"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr schedule must be one of {SCHEDULES}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be >= 1")
        if self.eps is None:
            self.eps = float(default_eps)
        if self.step_size is None:
            self.step_size = 2.5 * self.eps / self.attack_steps
        if self.augment is None:
            self.augment = augment_default
        return self
