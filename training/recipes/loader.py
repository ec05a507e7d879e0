"""Recipe files: ``{"description": str, "config": {TrainConfig field: value}}``.

``python -m training train --recipe NAME`` takes the config as the defaults (flags given on
the command line win) and records NAME in the run's config.json; ``python -m training
recipes`` lists them. A path to a JSON file of the same form works as NAME too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from training.config import TrainConfig

__all__ = ["RECIPES_DIR", "Recipe", "list_recipes", "load_recipe"]

RECIPES_DIR = Path(__file__).resolve().parent
_FIELDS = {f.name for f in fields(TrainConfig)} - {"recipe"}


@dataclass(frozen=True)
class Recipe:
    """One recipe: its name (file stem, or the path it was read from), what it reproduces,
    and the TrainConfig values it sets."""

    name: str
    description: str
    config: dict[str, Any]

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The recipe as a TrainConfig (not resolved), with ``overrides`` on top."""
        return TrainConfig(**{**self.config, **overrides, "recipe": self.name})


def _read(path: Path, name: str) -> Recipe:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"recipe {name}: {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("description"), str) or not isinstance(doc.get("config"), dict):
        raise ValueError(f'recipe {name}: {path} must hold {{"description": "...", "config": {{...}}}}')
    unknown = sorted(set(doc["config"]) - _FIELDS)
    if unknown:
        raise ValueError(f"recipe {name}: unknown options {unknown} in {path}")
    return Recipe(name=name, description=doc["description"], config=dict(doc["config"]))


def list_recipes() -> list[Recipe]:
    """Every recipe shipped in this folder, sorted by name."""
    return [_read(p, p.stem) for p in sorted(RECIPES_DIR.glob("*.json"))]


def load_recipe(name: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path (ValueError when neither)."""
    path = RECIPES_DIR / f"{name}.json"
    if path.is_file():
        return _read(path, name)
    given = Path(name).expanduser()
    if given.suffix == ".json" and given.is_file():
        return _read(given, str(given))
    known = ", ".join(p.stem for p in sorted(RECIPES_DIR.glob("*.json")))
    raise ValueError(f"unknown recipe {name!r}; shipped recipes: {known} (or give a path to a .json recipe file)")
