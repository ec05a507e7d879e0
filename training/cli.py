"""``python -m training <subcommand>``: train, export, evaluate, ...

This module only assembles: each subcommand's module registers it with ``add_parser(sub)``,
in the order ``--help`` lists them. A new subcommand is one module and one line here.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from training import report, sweep
from training.analysis import cli as analyze
from training.commands import export, recipes, slim, test, train
from training.commands.parser import CommandParser
from training.commands.train import add_train_args, train_config
from training.evaluation import cli as evaluate
from training.export import attach

__all__ = ["COMMANDS", "add_train_args", "build_parser", "main", "train_config"]

COMMANDS = (train, recipes, export, slim, evaluate, attach, report, sweep, test, analyze)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description="Train, evaluate and export AW-Net models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        from training.data import DatasetUnavailableError

        if isinstance(exc, (ValueError, FileNotFoundError, DatasetUnavailableError)):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
