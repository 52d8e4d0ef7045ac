"""Recipes: a YAML file validated into one typed config. Each section's type lives beside the code it configures.

Unknown keys and wrong types are errors that name the key, the file and what was expected, before anything
runs or anything is spent.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError

from protege.data.stage import DataConfig
from protege.evaluate.lm_stage import EvaluateLMConfig
from protege.evaluate.report import ReportConfig
from protege.evaluate.stage import EvaluateConfig
from protege.models.config import TeacherConfig
from protege.section import Section
from protege.select.stage import SelectConfig
from protege.synth.annotate import AnnotateConfig
from protege.synth.augment import AugmentConfig
from protege.synth.prepare import PrepareTeacherConfig
from protege.synth.prompts import PromptsConfig
from protege.synth.respond import RespondConfig
from protege.tasks.classification import ClassificationTask
from protege.train.cache_logits import CacheLogitsConfig
from protege.train.classifier import ClassifierTrainConfig
from protege.train.first_student import FirstStudentConfig
from protege.train.lm_stage import TrainLMConfig

__all__ = ["Recipe", "RecipeError", "Section", "dump_recipe", "load_recipe", "parse_recipe"]


class Recipe(Section):
    """A whole distillation job. Stages run in the pipeline's fixed order; a missing section skips its stage."""

    name: str = Field(description="Short name of the job; used in reports.")
    run_dir: Path = Field(description="Directory the run writes to; relative paths are taken from the recipe file.")
    seed: int = Field(0, description="Seed for every random choice (sampling, splits, initialisation).")
    teacher: Optional[TeacherConfig] = Field(None, description="The teacher model and how to reach it.")
    task: Optional[ClassificationTask] = Field(None, description="What to classify into and how to ask the teacher.")
    data: Optional[DataConfig] = Field(
        None, description="Texts to classify and their pool/seed/dev/test split (the data stage).")
    prepare_teacher: Optional[PrepareTeacherConfig] = Field(
        None, description="Fine-tune the teacher (LoRA) on the gold seed set before it annotates.")
    annotate: Optional[AnnotateConfig] = Field(
        None, description="The teacher's calibrated label distribution for every pool, dev and test text.")
    first_student: Optional[FirstStudentConfig] = Field(
        None, description="A quick student trained before selection; its pool probabilities drive select.strategy llkd.")
    select: Optional[SelectConfig] = Field(None, description="Which annotated texts the student learns from.")
    train: Optional[ClassifierTrainConfig] = Field(
        None, description="The student classifier trained on the teacher's labels (and the students it is compared with).")
    augment: Optional[AugmentConfig] = Field(
        None, description="Rounds of teacher-written examples modelled on the student's dev errors, then retraining.")
    evaluate: Optional[EvaluateConfig] = Field(
        None, description="Teacher, student and baselines on the gold test split: quality, agreement, calibration, speed.")
    report: Optional[ReportConfig] = Field(None, description="The HTML and Markdown report of the run.")
    prompts: Optional[PromptsConfig] = Field(None, description="Instructions for the teacher to answer (LM distillation).")
    respond: Optional[RespondConfig] = Field(
        None, description="The teacher answers the prompts: the data of sequence-level KD.")
    cache_logits: Optional[CacheLogitsConfig] = Field(
        None, description="Store the teacher's top-k log-probabilities over the responses, for logit KD without it.")
    train_lm: Optional[TrainLMConfig] = Field(
        None, description="Train student LMs on the teacher's answers: SFT, logit KD, cached KD, on-policy KD.")
    evaluate_lm: Optional[EvaluateLMConfig] = Field(
        None, description="Student LMs against the teacher on held-out prompts, and the run report.")


class RecipeError(ValueError):
    """A recipe that cannot be used; the message says where and how to fix it."""


def _field_names(model: type[BaseModel], loc: tuple) -> list[str]:
    """Allowed keys at ``loc`` inside ``model``, for 'did you mean' hints."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        annotation = current.model_fields[part].annotation
        models = [a for a in typing.get_args(annotation) or (annotation,) if isinstance(a, type)]
        current = next((a for a in models if issubclass(a, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def format_errors(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = [f"{source}: the recipe is not valid:"]
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _field_names(model, loc[:-1])
            near = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            lines.append(f"  - unknown key '{key}'.{hint} Allowed here: {', '.join(allowed) or 'none'}.")
        elif e["type"] == "missing":
            lines.append(f"  - missing required key '{key}'.")
        else:
            lines.append(f"  - key '{key}': {e['msg']} (got {e.get('input')!r}).")
    return "\n".join(lines)


def parse_recipe(data: Any, source: str = "<recipe>", base_dir: Path | None = None) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(f"{source}: a recipe is a YAML mapping of sections, got {type(data).__name__}.")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(format_errors(err, source, Recipe)) from None
    if base_dir is not None and not recipe.run_dir.is_absolute():
        recipe.run_dir = (base_dir / recipe.run_dir).resolve()
    return recipe


def load_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file. ``overrides`` are dotted keys (``train.steps``) set after reading."""
    path = Path(path)
    if not path.exists():
        raise RecipeError(f"{path}: no such recipe file.")
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
