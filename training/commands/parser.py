"""The parser class of every ``python -m training`` subcommand (``training.cli`` sets it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser that can tell the options a command line gave from defaults.

    With ``on_parsed``, after parsing it calls ``on_parsed(namespace, given)`` with the dest
    names the command line set; a ValueError from it becomes ``parser.error`` (usage, the
    message, exit status 2), so bad combinations are refused before anything runs.
    """

    def __init__(self, *args: Any, on_parsed: Callable[[argparse.Namespace, set[str]], None] | None = None,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(*args, **kwargs)
        self._on_parsed = on_parsed

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if self._on_parsed is not None:
            # Parse again into a namespace pre-filled with a marker: argparse sets defaults
            # only for missing attributes, so whatever is not the marker was given.
            unset = object()
            dests = {a.dest for a in self._actions if a.dest != argparse.SUPPRESS}
            probe, _ = super().parse_known_args(
                sys.argv[1:] if args is None else list(args), argparse.Namespace(**dict.fromkeys(dests, unset))
            )
            given = {d for d in dests if getattr(probe, d) is not unset}
            try:
                self._on_parsed(namespace, given)
            except ValueError as exc:
                self.error(str(exc))
        return namespace, extras
