"""experiments/ stays a package a newcomer can run: every module imports without running its
study (the work sits behind ``if __name__ == "__main__":``) and without path hacks, every
study is ``python -m experiments.<name>`` and states its question, and results/ holds data
only (docs/decisions.md, "One-off studies are a package")."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = ROOT / "experiments"
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in EXPERIMENTS.rglob("*.py")
)
STUDIES = sorted(p.parent.name for p in EXPERIMENTS.glob("*/__init__.py"))


def test_there_are_studies():
    assert STUDIES and len(MODULES) > len(STUDIES)


@pytest.mark.parametrize("name", MODULES)
def test_importing_runs_no_study(name, capsys):
    importlib.import_module(name)
    out = capsys.readouterr()
    assert out.out == "", f"importing {name} printed: {out.out[:200]}"


@pytest.mark.parametrize("name", MODULES)
def test_no_path_hacks(name):
    path = ROOT / (name.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / name.replace(".", "/") / "__init__.py"
    assert "sys.path" not in path.read_text(), f"{path}: import through the package instead"


@pytest.mark.parametrize("study", STUDIES)
def test_study_runs_as_a_module_and_states_its_question(study):
    assert (EXPERIMENTS / study / "__main__.py").is_file()
    doc = importlib.import_module(f"experiments.{study}").__doc__ or ""
    assert "?" in doc.split("\n\n")[0], f"experiments.{study}: the docstring opens with its question"


def test_the_listing_names_every_study():
    from experiments.__main__ import studies

    assert sorted(studies()) == STUDIES


def test_results_holds_data_only():
    code = sorted(p for p in (ROOT / "results").rglob("*") if p.suffix in (".py", ".sh"))
    assert not code, f"move these into experiments/: {code}"
