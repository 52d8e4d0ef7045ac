"""The pipeline: the registry of task families, recipes assembled from it, and the runner.

    from protege.pipeline import load_recipe, run_recipe
    run = run_recipe(load_recipe("recipes/quickstart.yaml"))
"""

from protege.pipeline.recipe import Recipe, RecipeError, load_recipe, parse_recipe
from protege.pipeline.runner import plan, run_recipe

__all__ = ["Recipe", "RecipeError", "load_recipe", "parse_recipe", "plan", "run_recipe"]
