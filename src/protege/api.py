"""The Python API: run a recipe and use what it made, without the command line.

    import protege
    run = protege.run("my-recipe.yaml", data__test_size=200)    # or a dict, or a Recipe
    run.metrics["headline"]                                      # what metrics.json says
    student = run.student()                                      # the trained student, loaded
    student.predict(["a new text"]); student.predict_proba(["a new text"])
    run.records("annotated")                                     # a table, de-duplicated, as a pandas frame
    protege.open_run("runs/my-recipe")                           # a run made earlier

Overrides are recipe keys with ``__`` between the parts of a dotted key (``train__loop__steps=10`` sets
``train.loop.steps``). Errors in the recipe or the data raise :class:`protege.core.errors.UserError` with the
same message the command line prints.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Optional

import yaml

from protege.core import console
from protege.core.errors import UserError
from protege.core.run import Run as _Run
from protege.models.route import Maker

__all__ = ["Run", "open_run", "run"]


class Run(_Run):
    """A run directory with what a person wants from it: ``metrics``, ``student()``, ``records(table)``."""

    def student(self) -> Any:
        """The run's trained student, loaded, with ``predict(texts)`` and ``predict_proba(texts)``."""
        from protege.pipeline.runner import family_of
        from protege.pipeline.status import saved_recipe

        recipe = saved_recipe(self)
        if recipe is None:
            raise UserError(f"{self.path}: no valid recipe.yaml, so the run's family (and student) is unknown")
        fam = family_of(recipe)
        if fam.student is None:
            raise UserError(f"the {fam.name} family has no student loader yet; its student is under {self.artifacts}")
        return fam.student(self)


def _overridden(data: dict, overrides: dict[str, Any]) -> dict:
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        target = data
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return data


def run(recipe: Any, *, teacher: Optional[Maker] = None, force: tuple[str, ...] = (), only: tuple[str, ...] = (),
        quiet: bool = True, **overrides: Any) -> Run:
    """Run ``recipe`` (a path, a mapping or a :class:`~protege.pipeline.recipe.Recipe`) and return its run.

    ``quiet`` (default) prints only the headline and warnings' absence; ``teacher`` replaces the recipe's
    backend (tests, or a teacher already loaded); stages already done with the same settings are skipped.
    """
    from protege.pipeline.recipe import Recipe, parse_recipe
    from protege.pipeline.runner import run_recipe

    console.configure(quiet=quiet)
    if isinstance(recipe, (str, Path)):
        path = Path(recipe).expanduser()
        if not path.exists():
            raise UserError(f"not found: {path.resolve()} (the recipe file)", code="not_found")
        data, base = yaml.safe_load(path.read_text()), path.parent
        parsed = parse_recipe(_overridden(data, overrides), str(path), base_dir=base)
    elif isinstance(recipe, Recipe):
        parsed = parse_recipe(_overridden(recipe.model_dump(mode="json", exclude_none=True), overrides))
    elif isinstance(recipe, dict):
        parsed = parse_recipe(_overridden(recipe, overrides))
    else:
        raise UserError(f"protege.run takes a recipe path, a mapping or a Recipe, not {type(recipe).__name__}")
    done = run_recipe(parsed, force=tuple(force), only=tuple(only), teacher=teacher)
    return Run(done.path)


def open_run(path: str | Path) -> Run:
    """A run directory made earlier (``runs/<name>``)."""
    Run.open_existing(path)
    return Run(path)
