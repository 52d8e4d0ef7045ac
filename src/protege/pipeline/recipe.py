"""Recipes: a YAML file of one task family, validated into one typed config assembled from the stage registry.

A recipe names its family (``family: classification``; inferred when its sections belong to one family only)
and has one section per stage it runs; the section types live beside the stages, and the schema of each
family's recipe is built from its :class:`~protege.stage.Family` declaration, so this module imports no stage.
Unknown keys, wrong types and sections of another family are errors that name the key, the file and the fix,
before anything runs or anything is spent.
"""

from __future__ import annotations

import difflib
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, create_model

from protege.core.errors import UserError
from protege.core.section import PATH, Section, resolve_paths
from protege.models.config import TeacherConfig
from protege.pipeline.families import FAMILIES
from protege.stage import Family

__all__ = ["Recipe", "RecipeError", "Section", "dump_recipe", "family_of", "load_recipe", "parse_recipe", "schema"]


class Recipe(Section):
    """A whole distillation job of one family. Stages run in the family's order; a missing section skips its stage.

    Each family's recipe type (:func:`schema`) adds ``task`` and one optional section per stage to these keys.
    """

    name: str = Field(description="Short name of the job; used in reports.")
    run_dir: Optional[Path] = Field(
        None, description="Directory the run writes to, taken from the recipe file's folder like every path in a "
        "recipe; unset: runs/<name> under the current directory.", json_schema_extra=PATH)
    family: str = Field(description="The task family the recipe belongs to (classification, lm, ...).")
    description: str = Field("", description="One line: what the recipe does (shown by `protege recipes`).")
    seed: int = Field(0, description="Seed for every random choice (sampling, splits, initialisation).")
    teacher: Optional[TeacherConfig] = Field(None, description="The teacher model and how to reach it.")
    _source: Optional[str] = PrivateAttr(None)  # the file it was read from, for commands in messages

    @property
    def command(self) -> str:
        """The command that runs this recipe, for advice in messages."""
        return f"protege run {self._source or 'RECIPE.yaml'}"


BASE_KEYS = set(Recipe.model_fields)


@lru_cache(maxsize=None)
def schema(fam: Family) -> type[Recipe]:
    """The recipe type of a family: the base keys, its task section and one optional section per stage."""
    fields: dict[str, Any] = {}
    if fam.task is not None:
        fields["task"] = (Optional[fam.task], Field(None, description=f"What the {fam.name} task is."))
    for stage in fam.stages:
        fields[stage.name] = (Optional[stage.config], Field(None, description=stage.description))
    return create_model(f"{fam.name.title().replace('_', '')}Recipe", __base__=Recipe, __doc__=fam.description,
                        **fields)


def _sections(fam: Family) -> set[str]:
    return {s.name for s in fam.stages} | ({"task"} if fam.task is not None else set())


def family_of(data: dict, source: str = "<recipe>") -> Family:
    """The family a recipe mapping belongs to: its ``family`` key, else the first registered family owning all its
    sections (with no stage section at all, the key is required)."""
    keys = set(data) - BASE_KEYS
    named = data.get("family")
    if named is not None:
        if named not in FAMILIES:
            near = difflib.get_close_matches(str(named), FAMILIES, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise RecipeError(f"{source}: unknown family {named!r}.{hint} The families are: {', '.join(FAMILIES)}.")
        fam = FAMILIES[named]
        for key in sorted(keys - _sections(fam)):
            owners = [f.name for f in FAMILIES.values() if key in _sections(f)]
            if owners:
                raise RecipeError(f"{source}: section '{key}' belongs to the {' / '.join(owners)} family, not "
                                  f"{fam.name}: remove it, or set family: {owners[0]}.")
        return fam
    candidates = [f for f in FAMILIES.values() if keys <= _sections(f)]
    if not candidates:
        raise RecipeError(f"{source}: its sections {sorted(keys)} belong to no single family: say which with "
                          f"'family: ...' (one of {', '.join(FAMILIES)}) and remove the others' sections.")
    if len(candidates) > 1 and not keys - {"task", "report"}:
        raise RecipeError(f"{source}: add 'family: ...' to say which family this recipe is "
                          f"({' or '.join(f.name for f in candidates)}).")
    # Sections several families share (data, task, train, ...): the first registered of them, as recipes written
    # before families were named were classification or language-model recipes. Say `family:` to be explicit.
    return candidates[0]


class RecipeError(UserError):
    """A recipe that cannot be used; the message says where and how to fix it."""

    code = "recipe_invalid"


def _section_at(model: type[BaseModel], loc: tuple) -> Optional[type[BaseModel]]:
    """The settings class at ``loc`` inside ``model`` (None past a plain value), for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current.model_fields[part].annotation
        models = [a for a in typing.get_args(annotation) or (annotation,) if isinstance(a, type)]
        current = next((a for a in models if issubclass(a, BaseModel)), None)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def format_errors(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: the recipe is not valid:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            section = _section_at(model, loc[:-1])
            allowed = list(section.model_fields) if section else []
            moved = getattr(section, "moved_keys", {}).get(str(loc[-1]))
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            prefix = ".".join(str(p) for p in loc[:-1])
            hint = (f" It moved to '{prefix}.{moved}'." if moved
                    else f" Did you mean '{near[0]}'?" if near else "")
            lines.append(f"  - unknown key '{key}'.{hint} Allowed here: {', '.join(allowed) or 'none'}.")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{key}'.")
        else:
            lines.append(f"  - key '{key}': {e['msg']} (got {e.get('input')!r}).")
    return "\n".join(lines)


def parse_recipe(data: Any, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping of sections, got {type(data).__name__}.")
    fam = family_of(data, source)
    model = schema(fam)
    try:
        recipe = model.model_validate({**data, "family": fam.name})
    except ValidationError as err:
        raise RecipeError(format_errors(err, source, model)) from None
    recipe._source = source if source != "<recipe>" else None
    # The one path rule: every path in a recipe is taken from the recipe file's folder (the working directory
    # for a recipe given as a mapping); run_dir defaults to runs/<name> where protege is run from.
    resolve_paths(recipe, (base_dir or Path.cwd()).resolve())
    if recipe.run_dir is None:
        recipe.run_dir = (Path.cwd() / "runs" / recipe.name).resolve()
    if fam.check is not None:
        try:
            fam.check(recipe)
        except ValueError as err:
            raise RecipeError(f"{source}: {err}") from None
    return recipe


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file. ``overrides`` are dotted keys (``train.steps``) set after reading."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RecipeError(f"not found: {path.resolve()} (the recipe file); `protege recipes` lists the packaged "
                          "ones", code="not_found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        target = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return parse_recipe(data, str(path), base_dir=path.parent)


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json", exclude_none=True), sort_keys=False)
