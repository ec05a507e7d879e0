"""The resolved training configuration: saved in the run folder and in every checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

METHODS = ("standard", "pgd-at", "trades", "awnet")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "multistep", "constant")
KD_REDUCTIONS = ("mtard", "batchmean")
#: --evasion-label: "all" calls every router-evasion example adversarial in the type loss;
#: "fooled" only those the clean branch misclassifies (asymmetric: the eps-ball holds the
#: clean digit itself, so no router can flag all of it; docs/decisions.md)
EVASION_LABELS = ("all", "fooled")


@dataclass
class TrainConfig:
    # what to train
    recipe: str | None = None  # the named recipe (training/recipes/) that gave the defaults
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
    kd_reduction: str = "mtard"  # KL average: "mtard" over batch x classes (MTARD's code), or "batchmean"
    router_width: int = 32
    router_hidden: int = 64
    signal_activation: str = "2sigmoid"
    router_adaptive: bool = False  # opt-in: router-evasion PGD in training; did not hold in 8 CPU epochs (docs/results.md)
    evasion_lambdas: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])
    evasion_loss: str = "log-p-clean"  # --router-adaptive: the evader's router term, log p_clean or the logit margin
    evasion_label: str = "all"  # --router-adaptive: which evasion examples the type loss calls adversarial
    # randomized adversarial training (Jin et al., CVPR 2023)
    rat: bool = False
    rat_sigma: float = 1e-4
    rat_alpha: float = 0.2
    rat_c: float | None = None  # None: 1 - 2 / num_classes
    # evaluation during training
    eval_attack_steps: int = 20
    eval_every: int = 1
    val_attack_steps: int = 100  # APGD-CE (torchattacks) on the validation split; 0: off
    val_apgdt_targets: int = 3  # APGD-T (targeted DLR) target classes, same images; 0: off
    val_apgdt_steps: int = 100  # APGD-T steps per target class
    val_square_every: int = 2  # Square check every N validations (and on the last); 0: off
    val_square_samples: int = 100  # fixed validation subset of the Square check
    val_square_queries: int = 1000
    masking_margin: float = 0.10  # alarm when APGD/Square beat PGD by more than this (docs/decisions.md)
    val_max_samples: int = 1000
    max_train_samples: int = 0  # 0: the whole training split (smoke tests use a few hundred)
    # run
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False  # CPU: convolutions in channels-last layout (implied by --amp there)
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

    def unused_options(self, given: Iterable[str] | None = None) -> dict[str, str]:
        """Options this run sets but would ignore, each mapped to what it needs.

        ``given``: the options chosen explicitly (command line, recipe); by default every
        field away from its default value. Flags count only when on, so ``--no-rat`` or a
        default value never trips this.
        """
        chosen = set(given) if given is not None else {f.name for f in fields(self) if not _at_default(self, f.name)}
        unused: dict[str, str] = {}
        for rule in OPTION_RULES:
            for name in rule.options:
                value = getattr(self, name)
                on = name in chosen and value is not False and value is not None
                if on and name not in unused and not rule.applies(self):
                    unused[name] = rule.needs
        return unused

    def validate(self, given: Iterable[str] | None = None) -> TrainConfig:
        """Check what needs no dataset: choices, model against method, teachers, and that no
        option would do nothing (refused, never silently ignored). Fills the method's
        default model; returns self. ``given`` as in :meth:`unused_options`."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.model is None:
            self.model = "awnet_smallcnn" if self.method == "awnet" else "smallcnn"
        from models.registry import is_awnet_name  # lazy: models imports torch

        awnet_model = is_awnet_name(self.model)
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
        if self.kd_reduction not in KD_REDUCTIONS:
            raise ValueError(f"unknown kd reduction {self.kd_reduction!r}; choose from {', '.join(KD_REDUCTIONS)}")
        if self.evasion_label not in EVASION_LABELS:
            raise ValueError(f"unknown evasion label {self.evasion_label!r}; choose from {', '.join(EVASION_LABELS)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be >= 1")
        if self.val_apgdt_targets < 0 or (self.val_apgdt_targets > 0 and self.val_apgdt_steps < 1):
            raise ValueError("--val-apgdt-targets must be >= 0 (0: off), --val-apgdt-steps >= 1")
        unused = self.unused_options(given)
        if unused:
            raise ValueError(describe_unused(unused))
        return self

    def resolve(self, default_eps: float, augment_default: bool) -> TrainConfig:
        """Validate (:meth:`validate`, options judged by value), then fill the
        dataset-dependent defaults; returns self. Resolving twice changes nothing."""
        self.validate()
        if self.eps is None:
            self.eps = float(default_eps)
        if self.step_size is None:
            self.step_size = 2.5 * self.eps / self.attack_steps
        if self.augment is None:
            self.augment = augment_default
        return self


def option_flag(name: str) -> str:
    """The command-line flag of a TrainConfig field."""
    return "--" + name.replace("_", "-")


def describe_unused(unused: dict[str, str], origin: dict[str, str] | None = None) -> str:
    """One message for :meth:`TrainConfig.unused_options`; ``origin`` names where an
    option came from when not the command line (e.g. "recipe robustwrn_...")."""
    origin = origin or {}
    parts = [
        option_flag(name) + (f" (from {origin[name]})" if name in origin else "") + f" needs {needs}"
        for name, needs in unused.items()
    ]
    return "options that would do nothing in this run: " + "; ".join(parts)


def _at_default(cfg: TrainConfig, name: str) -> bool:
    """Whether a field holds its default; step_size's default is also the value it resolves to."""
    f = TrainConfig.__dataclass_fields__[name]
    default = f.default_factory() if f.default_factory is not MISSING else f.default
    value = getattr(cfg, name)
    if isinstance(value, tuple):
        value = list(value)
    if name == "step_size" and value is not None and cfg.eps is not None:
        return value == 2.5 * cfg.eps / cfg.attack_steps
    return value == default


def _dataset_source(cfg: TrainConfig) -> str:
    return _dataset_name(cfg).source


def _dataset_name(cfg: TrainConfig):
    from training.data.info import parse_dataset_name  # lazy: the data package imports torch

    return parse_dataset_name(cfg.dataset)


@dataclass(frozen=True)
class OptionRule:
    """Options that act only when ``applies(config)`` holds; ``needs`` says what that takes."""

    options: tuple[str, ...]
    needs: str
    applies: Callable[[TrainConfig], bool]


ADVERSARIAL_METHODS = ("pgd-at", "trades", "awnet")
AWNET_OPTIONS = ("clean_teacher", "robust_teacher", "teacher_free", "init_from", "type_loss_weight",
                 "balance_rate", "kd_temperature", "kd_reduction", "router_width", "router_hidden",
                 "signal_activation", "router_adaptive", "evasion_lambdas", "evasion_loss", "evasion_label")  # fmt: skip
PER_STAGE_MODELS = ("wrn", "awnet_wrn")

#: Which options act only in some runs (issue 13: ``--method standard --rat`` trained
#: without RAT). A field listed in several rules is judged by the first that fails.
OPTION_RULES: tuple[OptionRule, ...] = (
    OptionRule(("step_size", "attack_steps", "eps_warmup_epochs", "rat"),
               "a method that trains on adversarial examples (--method pgd-at, trades or awnet)",
               lambda c: c.method in ADVERSARIAL_METHODS),
    OptionRule(("trades_beta",),
               "--method trades (the only loss with a TRADES KL term; a robust teacher keeps the "
               "beta it was trained with)",
               lambda c: c.method == "trades"),
    OptionRule(AWNET_OPTIONS, "--method awnet", lambda c: c.method == "awnet"),
    OptionRule(("clean_teacher", "robust_teacher", "kd_temperature", "kd_reduction"),
               "distillation from teachers, which --teacher-free drops",
               lambda c: not c.teacher_free),
    OptionRule(("evasion_lambdas", "evasion_loss", "evasion_label"), "--router-adaptive (router-evasion PGD in training)",
               lambda c: c.router_adaptive),
    OptionRule(("rat_sigma", "rat_alpha", "rat_c"), "--rat", lambda c: c.rat),
    OptionRule(("depths", "widths"),
               "--model wrn or awnet_wrn (the named wrn34_* models fix their own depths and widths)",
               lambda c: c.model in PER_STAGE_MODELS),
    OptionRule(("milestones", "lr_gamma"), "--lr-schedule multistep",
               lambda c: c.lr_schedule == "multistep"),
    OptionRule(("momentum",), "--optimizer sgd (Adam takes no momentum here)",
               lambda c: c.optimizer == "sgd"),
    OptionRule(("download",), "a torchvision dataset (--dataset cifar10, cifar100 or svhn)",
               lambda c: _dataset_source(c) == "torchvision"),
    OptionRule(("data_root",),
               "--dataset cifar10, cifar10-jpeg, cifar100, svhn or tinyimagenet (mnist5k and "
               "cifar10-jpeg2k are embedded, imagefolder:PATH names its own folder)",
               lambda c: _dataset_source(c) in ("torchvision", "folder", "archive")),
    OptionRule(("val_attack_steps", "val_apgdt_targets", "val_square_every"),
               "a method that trains on adversarial examples (a standard model is validated and selected on clean accuracy)",
               lambda c: c.method in ADVERSARIAL_METHODS),
    OptionRule(("val_apgdt_steps",), "--val-apgdt-targets > 0 (APGD-T on)",
               lambda c: c.method in ADVERSARIAL_METHODS and c.val_apgdt_targets > 0),
    OptionRule(("val_square_samples", "val_square_queries"), "--val-square-every > 0 (the Square check on)",
               lambda c: c.method in ADVERSARIAL_METHODS and c.val_square_every > 0),
    OptionRule(("masking_margin",),
               "a check to compare PGD with: --val-attack-steps, --val-apgdt-targets or --val-square-every > 0",
               lambda c: c.method in ADVERSARIAL_METHODS
               and (c.val_attack_steps > 0 or c.val_apgdt_targets > 0 or c.val_square_every > 0)),
    OptionRule(("augment",), "a dataset other than mnist5k (the embedded digits are never augmented)",
               lambda c: _dataset_name(c).augmentable),
)  # fmt: skip

#: Options that act in every run; with OPTION_RULES they cover every TrainConfig field.
GENERAL_OPTIONS = ("recipe", "method", "model", "dataset", "epochs", "batch_size", "optimizer", "lr",
                   "weight_decay", "lr_schedule", "grad_clip", "eps", "eval_attack_steps", "eval_every",
                   "val_max_samples", "max_train_samples", "seed", "device", "amp", "channels_last",
                   "workers", "out",
                   "resume", "stop_after", "log_every")  # fmt: skip
