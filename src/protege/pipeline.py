"""Runs a recipe's stages, in a fixed order, against its run directory.

A stage is a function ``run(ctx: StageContext) -> dict`` living beside the code it drives; it reads and writes
only through ``ctx.run`` (records, artifacts, ledger) and returns a small JSON-able summary. A stage whose
section is absent from the recipe is skipped; a stage the ledger marks ``done`` is not run again unless forced,
and a stage interrupted half-way resumes from what it had saved.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

from protege import console
from protege.models.ledgered import LedgeredTeacher, Prices
from protege.recipe import Recipe, dump_recipe
from protege.run import Run

# Every stage, in run order: recipe section name -> "module:function". Imported only when the stage runs, so
# `protege --help` stays fast. Add a stage here and a section of the same name to ``Recipe``.
STAGES: dict[str, str] = {
    "data": "protege.data.stage:run",
    "prepare_teacher": "protege.synth.prepare:run",
    "annotate": "protege.synth.annotate:run",
    "first_student": "protege.train.first_student:run",
    "select": "protege.select.stage:run",
    "train": "protege.train.classifier_stage:run",
    "augment": "protege.synth.augment:run",
    "evaluate": "protege.evaluate.stage:run",
    "report": "protege.evaluate.report:run",
    "prompts": "protege.synth.prompts:run",
    "respond": "protege.synth.respond:run",
    "cache_logits": "protege.train.cache_logits:run",
    "train_lm": "protege.train.lm_stage:run",
    "evaluate_lm": "protege.evaluate.lm_stage:run",
}


@dataclass
class StageContext:
    recipe: Recipe
    run: Run
    name: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        """This stage's own recipe section."""
        return getattr(self.recipe, self.name)

    @cached_property
    def teacher(self) -> LedgeredTeacher:
        """The recipe's teacher behind the run's ledger, loaded on first use."""
        from protege.models.factory import make_teacher

        cfg = self.recipe.teacher
        if cfg is None:
            raise ValueError(f"stage '{self.name}' needs a teacher: add a 'teacher:' section to the recipe")
        prices = Prices(cfg.price_input_per_million, cfg.price_output_per_million)
        return LedgeredTeacher(make_teacher(cfg), self.run.ledger, prices=prices, batch_size=cfg.batch_size)


def planned_stages(recipe: Recipe) -> list[str]:
    return [name for name in STAGES if getattr(recipe, name, None) is not None]


def _stage_function(name: str) -> Callable[[StageContext], dict]:
    module, func = STAGES[name].split(":")
    return getattr(importlib.import_module(module), func)


def run_recipe(recipe: Recipe, *, force: tuple[str, ...] = (), only: tuple[str, ...] = ()) -> Run:
    run = Run(recipe.run_dir)
    (run.path / "recipe.yaml").write_text(dump_recipe(recipe))
    plan = planned_stages(recipe)
    unknown = set(force) | set(only)
    unknown -= set(plan)
    if unknown:
        raise ValueError(f"stage(s) {sorted(unknown)} are not in this recipe; it runs {plan}")
    for name in plan:
        if only and name not in only:
            continue
        if run.ledger.stage_status(name) == "done" and name not in force:
            console.info(f"[dim]{name}: done earlier, skipped[/dim]")
            continue
        console.info(f"[bold]{name}[/bold]")
        run.ledger.mark_stage(name, "running")
        run.log_event("stage_start", stage=name)
        began = time.perf_counter()
        ctx = StageContext(recipe=recipe, run=run, name=name)
        summary = _stage_function(name)(ctx) or {}
        summary["seconds"] = round(time.perf_counter() - began, 2)
        if "teacher" in ctx.__dict__:  # the stage used a teacher: say what was paid for and what was remembered
            stats = ctx.__dict__["teacher"].stats
            summary["teacher_requests"] = {"sent": stats.misses, "from_ledger": stats.hits}
        run.ledger.mark_stage(name, "done", summary)
        run.log_event("stage_end", stage=name, summary=summary)
        console.event("stage_end", stage=name, summary=summary)
    return run
