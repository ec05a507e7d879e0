"""docs/architecture.md names every module of ``service/`` and ``artifact_contract/``: a new
module without its line in the map fails here, as tests/training/test_options.py does for
the CLI's options."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
MODULES = sorted(
    p.relative_to(ROOT).as_posix()
    for pkg in ("service", "artifact_contract")
    for p in (ROOT / pkg).glob("*.py")
    if p.name != "__init__.py"
)



def _where(package: str) -> str:
    """The text that must name a package's modules: its row of the packages table
    (artifact_contract), or the section of the service's layers (service)."""
    if package == "artifact_contract":
        return next(line for line in DOC.splitlines() if line.startswith("| `artifact_contract/` |"))
    return DOC[DOC.index("## The service's layers"):DOC.index("## A request's path")]


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_named_in_the_architecture_page(module: str) -> None:
    package, name = module.split("/")
    assert f"`{name}`" in _where(package), f"docs/architecture.md does not name {module}"


def test_the_page_names_no_module_that_is_gone() -> None:
    import re

    named = set(re.findall(r"`((?:service|artifact_contract)/[a-z_]+\.py)`", DOC))
    assert named <= set(MODULES), sorted(named - set(MODULES))
