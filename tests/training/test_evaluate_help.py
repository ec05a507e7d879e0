"""``evaluate --help`` names every attack ``--attacks`` takes, per budget (issue 38, item 6): a
user could not find them anywhere but in a card."""

from __future__ import annotations

import re

import pytest

from training.cli import build_parser
from training.evaluation.suite import BUDGETS, Budget, build_suite


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["evaluate", "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def _names(budget: str, awnet: bool) -> list[str]:
    # eps and class count as for a CIFAR-10 model, unlike the help's: names must not depend on them
    return [s.name for s in build_suite(8 / 255, 10, awnet, Budget.named(budget), threshold=0.01)]


@pytest.mark.parametrize("budget", BUDGETS)
def test_help_lists_each_budgets_attacks_whole(budget: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every name of the budget's suite (plain and AW-Net) appears whole: not retyped, not cut
    at a hyphen by the line wrap."""
    text = " ".join(_help(capsys).split())
    assert f"{budget}: {', '.join(_names(budget, awnet=False))}" in text
    for name in _names(budget, awnet=True):
        assert re.search(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", text), f"{name} missing from evaluate --help"
