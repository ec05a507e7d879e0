"""The ``evaluate`` subcommand's arguments and entry point."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap

from training.evaluation.suite import BUDGETS, DEFAULT_LAMBDAS, Budget, build_suite

#: Exit status when a sanity check fails (2 stays "bad usage").
SANITY_FAILED = 3


def _suite_names(budget: str, awnet: bool) -> list[str]:
    """The attack names ``evaluate`` would run; eps, classes and threshold value do not change a name."""
    specs = build_suite(0.3, 10, awnet, Budget.named(budget), threshold=0.5 if awnet else None)
    return [s.name for s in specs]


def attack_names_help() -> str:
    """What ``--attacks`` takes, read from the suite itself so the help cannot drift from it."""
    plain = {b: _suite_names(b, awnet=False) for b in BUDGETS}
    extra = {b: [n for n in _suite_names(b, awnet=True) if n not in plain[b]] for b in BUDGETS}
    text = "Names by --budget: " + "; ".join(f"{b}: {', '.join(plain[b])}" for b in BUDGETS) + "."
    if len({tuple(e) for e in extra.values()}) == 1:
        text += f" AW-Net models add (any budget): {', '.join(extra[BUDGETS[0]])}"
    else:
        text += " AW-Net models add: " + "; ".join(f"{b}: {', '.join(extra[b])}" for b in BUDGETS)
    return text + " (evade-router-* and evade-clean-* follow --lambdas)."


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Wraps at spaces only, so an attack name such as apgd-dlr is never split across lines."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=_HelpFormatter,
        help="robust accuracy under FGSM, PGD, CW, AutoAttack and (AW-Net) adaptive attacks, worst case per sample",
        description="Evaluate a checkpoint or an exported model folder on its test split: every attack knows the "
                    "whole model, router included. Writes evaluation.json and evaluation.md into --out.",
    )  # fmt: skip
    p.add_argument("path", help="a checkpoint (.pt) or a model version folder (manifest.json + model.onnx)")
    p.add_argument("--n", type=int, default=500, help="first N test images (0: all)")
    p.add_argument("--eps", type=float, default=None, help="L-inf budget (default: the model's training eps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for evaluation.json and evaluation.md")
    p.add_argument("--budget", choices=BUDGETS, default="standard",
                   help="quick: 10-step attacks for smoke runs, never a reported figure")
    p.add_argument("--attacks", nargs="+", default=None,
                   help="only these attacks of the suite (names as in the card). " + attack_names_help())
    p.add_argument("--lambdas", type=float, nargs="+", default=list(DEFAULT_LAMBDAS),
                   help="router-evasion weights (AW-Net)")
    p.add_argument("--dataset", default=None,
                   help="evaluate on this dataset's test split instead of the training one (same classes and "
                        "input shape), e.g. cifar10-jpeg2k, embedded, for a cifar10-jpeg model without the archive")
    p.add_argument("--data-root", default=None, help="where that dataset (or the training one) is read from")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--no-sanity", action="store_true", help="skip the sanity checks")
    p.add_argument("--allow-failed-checks", action="store_true",
                   help=f"exit 0 even when a sanity check fails (default: exit {SANITY_FAILED})")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from training.evaluation.command import evaluate_path, failed_checks, markdown_table

    card = evaluate_path(
        args.path, out=args.out, dataset=args.dataset, data_root=args.data_root, n=args.n or None, eps=args.eps, seed=args.seed, budget=args.budget,
        attacks=args.attacks, lambdas=args.lambdas, sanity_checks=not args.no_sanity, batch=args.batch_size,
    )  # fmt: skip
    print(markdown_table(card))
    w = card.get("worst_case") or {}
    print(json.dumps({"out": args.out, "clean_acc": card["clean"]["acc"], "worst_case_acc": w.get("acc"),
                      "worst_case_wra": w.get("wra"), "missed": w.get("missed"), "wall_seconds": card["wall_seconds"]}))  # fmt: skip
    failed = failed_checks(card)
    if failed:
        bar = "!" * 78
        print(f"{bar}\nSANITY CHECK FAILED: these figures are not trustworthy\n"
              + "\n".join(f"  - {c['name']}: {c['detail']}" for c in failed) + f"\n{bar}", file=sys.stderr)  # fmt: skip
        return 0 if args.allow_failed_checks else SANITY_FAILED
    return 0
