"""``python -m training train``: its options, the run's configuration from them, and the run.

``train_config`` resolves defaults, the recipe and the given options (refusing options that
would do nothing before anything runs); ``add_train_args`` is also what the tests and the
Kubernetes check parse with.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from training.config import (
    EVASION_LABELS,
    KD_REDUCTIONS,
    METHODS,
    OPTIMIZERS,
    SCHEDULES,
    TrainConfig,
)

D = TrainConfig()


def train_config(args: argparse.Namespace, given: set[str]) -> TrainConfig:
    """The run's configuration: TrainConfig defaults, then the recipe's values, then the
    options given on the command line. Only given or recipe options are checked against
    what they need (a default never trips the check); ValueError when one would do nothing."""
    from training.config import describe_unused
    from training.recipes import load_recipe

    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if args.recipe is not None:
        recipe = load_recipe(args.recipe)
        values.update(recipe.config, recipe=recipe.name)
        origin = {k: f"recipe {recipe.name}" for k in recipe.config if k not in given}
    names = {f.name for f in fields(TrainConfig)} - {"recipe"}
    values.update({k: getattr(args, k) for k in given & names})
    cfg = TrainConfig(**values)
    chosen = set(values) - {"recipe"}
    unused = cfg.unused_options(chosen)
    if unused:
        raise ValueError(describe_unused(unused, origin))
    return cfg.validate(chosen)


def _set_train_config(args: argparse.Namespace, given: set[str]) -> None:
    args.train_config = train_config(args, given)


def _bool(p: argparse.ArgumentParser, name: str, help: str, default: bool = False) -> None:
    p.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help)


def add_train_args(p: argparse.ArgumentParser) -> None:
    from models import list_models
    from training.data import list_datasets

    g = p.add_argument_group("what to train")
    g.add_argument("--recipe", default=None,
                   help="a named recipe (python -m training recipes) or a recipe .json file: its values "
                        "are the defaults, the flags given here win; recorded in config.json")
    g.add_argument("--method", choices=METHODS, default=D.method,
                   help="standard: CE on clean data (clean teacher); pgd-at: Madry et al. 2018; "
                        "trades: Zhang et al. 2019 (robust teacher); awnet: Wei et al. TPAMI 2024 (default: %(default)s)")
    g.add_argument("--model", choices=list_models(), default=None,
                   help="registered model (default: smallcnn, or awnet_smallcnn for --method awnet)")
    g.add_argument("--dataset", default=D.dataset,
                   help=f"one of {', '.join(list_datasets())}, or imagefolder:PATH; append @full-train to train on "
                        "the whole training set and validate on the test split, the papers' protocol "
                        "(default: %(default)s, embedded)")
    g.add_argument("--data-root", default=None,
                   help="folder holding the torchvision datasets (and where --download puts them) or "
                        "tiny-imagenet-200/ (default: $AWNET_DATA_ROOT or ~/.cache/awnet/datasets)")
    _bool(g, "--download", "allow torchvision to download the dataset into --data-root")
    g.add_argument("--depths", type=int, nargs="+", default=None, help="wrn: blocks per stage, e.g. 5 5 5")
    g.add_argument("--widths", type=int, nargs="+", default=None, help="wrn: widen factor per stage, e.g. 20 20 8")

    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=D.epochs, help="default: %(default)s")
    g.add_argument("--batch-size", type=int, default=D.batch_size, help="per process (default: %(default)s)")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer, help="default: %(default)s")
    g.add_argument("--lr", type=float, default=D.lr, help="default: %(default)s")
    g.add_argument("--momentum", type=float, default=D.momentum, help="default: %(default)s")
    g.add_argument("--weight-decay", type=float, default=D.weight_decay, help="default: %(default)s")
    g.add_argument("--lr-schedule", choices=SCHEDULES, default=D.lr_schedule, help="default: %(default)s")
    g.add_argument("--milestones", type=float, nargs="+", default=D.milestones,
                   help="multistep: epochs (or fractions of --epochs when < 1) where lr *= --lr-gamma (default: %(default)s)")
    g.add_argument("--lr-gamma", type=float, default=D.lr_gamma, help="default: %(default)s")
    g.add_argument("--grad-clip", type=float, default=D.grad_clip, help="max gradient norm, 0 = off (RobustWRN: 5)")
    _bool(g, "--augment", "random crop 4 + flip (default: on for CIFAR/SVHN/Tiny-ImageNet, off for the digits and imagefolder:)", default=None)

    g = p.add_argument_group("training attack (L-inf PGD)")
    g.add_argument("--eps", type=float, default=None, help="budget in [0,1] pixel units (default: 0.3 digits, 8/255 CIFAR/SVHN)")
    g.add_argument("--step-size", type=float, default=None, help="default: 2.5 * eps / --attack-steps")
    g.add_argument("--attack-steps", type=int, default=D.attack_steps, help="default: %(default)s")
    g.add_argument("--eps-warmup-epochs", type=float, default=D.eps_warmup_epochs,
                   help="ramp eps linearly from 0 over this many epochs (default: %(default)s)")
    g.add_argument("--trades-beta", type=float, default=D.trades_beta, help="TRADES KL weight (default: %(default)s)")

    g = p.add_argument_group("AW-Net (--method awnet)")
    g.add_argument("--clean-teacher", default=None, help="checkpoint of a standard-trained model")
    g.add_argument("--robust-teacher", default=None, help="checkpoint of a TRADES (or PGD-AT) model")
    _bool(g, "--teacher-free", "variant without teachers: CE on the labels instead of the two KL terms")
    g.add_argument("--init-from", default=None,
                   help="warm start: copy a static checkpoint's weights (same backbone) into the AW-Net's "
                        "shared convs, head and both BNs of every MixBN (e.g. the robust teacher)")
    g.add_argument("--type-loss-weight", type=float, default=D.type_loss_weight, help="lambda (default: %(default)s)")
    g.add_argument("--balance-rate", type=float, default=D.balance_rate, help="MTARD loss-balance rate (default: %(default)s)")
    g.add_argument("--kd-temperature", type=float, default=D.kd_temperature, help="distillation temperature (default: %(default)s)")
    g.add_argument("--kd-reduction", choices=KD_REDUCTIONS, default=D.kd_reduction,
                   help="KL average: mtard = over batch x classes as MTARD's code (KL / K), "
                        "batchmean = the true KL per sample (default: %(default)s)")
    g.add_argument("--router-width", type=int, default=D.router_width, help="router conv width (default: %(default)s)")
    g.add_argument("--router-hidden", type=int, default=D.router_hidden, help="type head hidden units (default: %(default)s)")
    g.add_argument("--signal-activation", choices=("2sigmoid", "1+tanh", "none"), default=D.signal_activation,
                   help="regulation signal activation; none = omega fixed at 1 (ablation) (default: %(default)s)")
    _bool(g, "--router-adaptive", "also craft router-evasion PGD examples (CE + lambda log p_clean, through the "
          "soft router or the forced clean branch) for the type and adversarial losses", default=D.router_adaptive)
    g.add_argument("--evasion-lambdas", type=float, nargs="+", default=D.evasion_lambdas,
                   help="--router-adaptive: the evader's lambdas a sample draws from, besides 0 (default: %(default)s)")
    g.add_argument("--evasion-loss", choices=("log-p-clean", "margin"), default=D.evasion_loss,
                   help="--router-adaptive: the evader's router term, lambda * log p_clean or lambda * the type "
                        "logit margin (the attack that beats a low threshold; docs/results.md) (default: %(default)s)")
    g.add_argument("--evasion-label", choices=EVASION_LABELS, default=D.evasion_label,
                   help="--router-adaptive: which evasion examples the type loss calls adversarial: all, or only "
                        "those the clean branch misclassifies (fooled: the ones a missed input would be; the "
                        "others leave the type loss) (default: %(default)s)")

    g = p.add_argument_group("randomized adversarial training (Jin et al., CVPR 2023)")
    _bool(g, "--rat", "Gaussian weight noise when crafting + Taylor-expansion soft-label regulariser")
    g.add_argument("--rat-sigma", type=float, default=D.rat_sigma, help="absolute weight-noise std (default: %(default)s)")
    g.add_argument("--rat-alpha", type=float, default=D.rat_alpha, help="regulariser weight (default: %(default)s)")
    g.add_argument("--rat-c", type=float, default=None, help="off-label mass of the targets (default: 1 - 2/K)")

    g = p.add_argument_group("run")
    g.add_argument("--eval-attack-steps", type=int, default=D.eval_attack_steps, help="PGD steps for validation (default: %(default)s)")
    g.add_argument("--eval-every", type=int, default=D.eval_every, help="validate every N epochs (default: %(default)s)")
    g.add_argument("--val-attack-steps", type=int, default=D.val_attack_steps,
                   help="APGD-CE (torchattacks) steps of robust validation, 0 = off (default: %(default)s)")
    g.add_argument("--val-apgdt-targets", type=int, default=D.val_apgdt_targets,
                   help="APGD-T (torchattacks, targeted DLR) target classes of robust validation, same images as "
                        "APGD-CE; AutoAttack uses 9; 0 = off (default: %(default)s)")  # fmt: skip
    g.add_argument("--val-apgdt-steps", type=int, default=D.val_apgdt_steps,
                   help="APGD-T steps per target class (default: %(default)s)")  # fmt: skip
    g.add_argument("--val-square-every", type=int, default=D.val_square_every,
                   help="Square (gradient-free) check every N validations, and always on the last; 0 = off (default: %(default)s)")
    g.add_argument("--val-square-samples", type=int, default=D.val_square_samples,
                   help="fixed validation subset the Square check attacks (default: %(default)s)")
    g.add_argument("--val-square-queries", type=int, default=D.val_square_queries, help="default: %(default)s")
    g.add_argument("--masking-margin", type=float, default=D.masking_margin,
                   help="masking alarm when APGD-CE, APGD-T or Square beats PGD by more than this accuracy (default: %(default)s)")  # fmt: skip
    g.add_argument("--val-max-samples", type=int, default=D.val_max_samples, help="validation subset size (default: %(default)s)")
    g.add_argument("--max-train-samples", type=int, default=D.max_train_samples,
                   help="train on the first N samples only, 0 = all (smoke runs) (default: %(default)s)")
    g.add_argument("--seed", type=int, default=D.seed, help="default: %(default)s")
    g.add_argument("--device", default=D.device, help="auto (CUDA when present), cpu, cuda, cuda:N (default: %(default)s)")
    _bool(g, "--amp", "mixed precision (float16 on CUDA, bfloat16 on CPU: only where the CPU computes bfloat16 "
                      "natively, AVX-512 or AMX; elsewhere it is refused, being 15x slower than float32)")
    _bool(g, "--channels-last", "CPU: convolutions in channels-last layout, also in float32 (1.5x on AVX2; "
                                "implied by --amp on the CPU)")
    g.add_argument("--workers", type=int, default=D.workers, help="DataLoader workers (default: %(default)s)")
    g.add_argument("--out", default=D.out, help="run folder: config.json, metrics.jsonl, last.pt (default: %(default)s)")
    g.add_argument("--resume", default=None, help="checkpoint to resume from (exactly: weights, optimizer, RNG)")
    g.add_argument("--stop-after", type=int, default=D.stop_after,
                   help="stop after this epoch, keeping the --epochs schedule (resume later with --resume); 0 = off")
    g.add_argument("--log-every", type=int, default=D.log_every, help="JSONL step record every N steps (default: %(default)s)")


def cmd_train(args: argparse.Namespace) -> int:
    from training.trainer import Trainer

    trainer = Trainer(args.train_config)
    metrics = trainer.fit()
    if trainer.dist.is_main:
        print(json.dumps({"out": str(trainer.out), **{k: v for k, v in metrics.items() if k != "train"}}))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       on_parsed=_set_train_config)
    add_train_args(p)
    p.set_defaults(func=cmd_train)
