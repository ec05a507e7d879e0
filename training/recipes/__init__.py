"""Named training recipes: the papers' main settings as JSON files in this folder (see
:mod:`training.recipes.loader` for the format and ``docs/training.md`` for each command)."""

from training.recipes.loader import RECIPES_DIR, Recipe, list_recipes, load_recipe

__all__ = ["RECIPES_DIR", "Recipe", "list_recipes", "load_recipe"]
