"""Checks a recipe must pass before anything is loaded, locked or spent.

Cheap and offline (well under a second): whatever could fail after the teacher was paid is tried here first.

* every stage's required inputs are written by an earlier stage of the recipe (checked by the runner's plan,
  :func:`protege.pipeline.runner.signatures`, just before this);
* a stage that asks the teacher has a ``teacher:`` section (or a teacher handed to ``run_recipe``);
* every model the recipe names — teacher, tokenizer, students — resolves: an embedded name that is installed,
  a local folder or file that exists, or a hub id that is in the local hub cache or reachable
  (:func:`protege.models.resolve.check_model`); sections say which models they name through a
  ``named_models()`` method.

Templates are rendered against a sample row when the recipe is validated (their sections' validators), before
this runs.
"""

from __future__ import annotations

from typing import Iterator

from pydantic import BaseModel

from protege.models.resolve import ModelNotFoundError, check_model
from protege.pipeline.recipe import Recipe, RecipeError
from protege.stage import Stage


def named_models(section: object, prefix: str) -> Iterator[tuple[str, str]]:
    """``(recipe key, model name)`` for every model a section and its sub-sections name."""
    if not isinstance(section, BaseModel):
        return
    named = getattr(section, "named_models", None)
    if callable(named):
        for key, name in named().items():
            yield f"{prefix}.{key}", name
    for field in type(section).model_fields:
        yield from named_models(getattr(section, field), f"{prefix}.{field}")


def preflight(recipe: Recipe, stages: list[Stage], *, teacher_given: bool = False) -> None:
    """Raise a :class:`RecipeError` naming the key and the fix for the first problem found in a recipe that runs
    ``stages``; return when there is none."""
    asking = [s.name for s in stages if s.asks_teacher(getattr(recipe, s.name, None))]
    if asking and recipe.teacher is None and not teacher_given:
        raise RecipeError(f"stages {asking} ask the teacher, and the recipe has no 'teacher:' section: add one "
                          "(e.g. teacher: {backend: hf, model: smollm2-135m-instruct}) or remove those stages",
                          code="teacher_missing")
    sections = [(name, getattr(recipe, name, None)) for name in type(recipe).model_fields if name != "teacher"]
    if asking and not teacher_given:
        sections.append(("teacher", recipe.teacher))
    for prefix, section in sections:
        for key, name in named_models(section, prefix):
            try:
                check_model(name, key=key)
            except ModelNotFoundError as err:
                message = str(err) if str(err).startswith(key) else f"{key}: {err}"
                raise RecipeError(message, code="model_not_found") from None
