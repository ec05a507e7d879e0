"""``python -m training test``: clean and PGD accuracy of a checkpoint on its test split."""

from __future__ import annotations

import argparse
import json


def cmd_test(args: argparse.Namespace) -> int:
    from training.trainer import evaluate_test

    res = evaluate_test(args.checkpoint, eval_steps=args.steps, max_samples=args.max_samples, device=args.device)
    print(json.dumps(res))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="clean and PGD accuracy of a checkpoint on its test split")
    p.add_argument("checkpoint")
    p.add_argument("--steps", type=int, default=20, help="PGD steps (default: %(default)s)")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_test)
