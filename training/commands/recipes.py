"""``python -m training recipes``: the named training recipes, one line of description each."""

from __future__ import annotations

import argparse
import textwrap


def cmd_recipes(args: argparse.Namespace) -> int:
    from training.recipes import list_recipes

    for r in list_recipes():
        print(r.name)
        print(textwrap.fill(r.description, width=96, initial_indent="    ", subsequent_indent="    "))
    print("\nrun one: python -m training train --recipe NAME [flags that override it]")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="list the named training recipes (the papers' settings)")
    p.set_defaults(func=cmd_recipes)
