"""``python -m training slim``: a checkpoint without optimizer/RNG state, to ship it."""

from __future__ import annotations

import argparse


def cmd_slim(args: argparse.Namespace) -> int:
    from training.checkpoint import slim_checkpoint

    print(slim_checkpoint(args.checkpoint, args.out))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("slim", help="copy a checkpoint without optimizer/RNG state (to ship it)")
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.set_defaults(func=cmd_slim)
