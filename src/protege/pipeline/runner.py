"""Runs a recipe's stages against its run directory, recomputing what changed and only that.

The stages are those of the recipe's family (:mod:`protege.pipeline.families`) whose section the recipe has, in
the family's order. Each gets a **signature**: a hash of its own section, the task, the sections it declares,
the seed, the teacher section (if it needs a teacher) and the signatures of the stages it reads from (the
latest earlier stage writing each table or artifact it reads). Fields that cannot change a result (batch sizes
of teacher calls, logging intervals; ``volatile`` in :mod:`protege.core.section`) are left out. The ledger keeps
each finished stage's signature and the settings that made it (also in ``<run>/stages/<name>.yaml``).

A stage runs when it never finished, when it was interrupted, when its signature changed, when a stage it
reads from runs, when ``--force`` names it, or when a later stage that rewrites its outputs runs (augmentation
retrains the student that ``train`` wrote). Otherwise it is skipped as done. Before a stage runs for any reason
but an interruption with unchanged settings, its declared outputs are removed, so nothing stale survives; an
interrupted stage resumes from what it had saved. The ledger answers every teacher call already paid for, so a
re-run costs only what is new.

Before anything is loaded, locked or spent, :func:`check` runs the plan's input check and the preflight
(:mod:`protege.pipeline.preflight`). The run directory is then locked (:mod:`protege.core.lock`) for the whole
run, so a second run on it waits or stops instead of paying again. A run that fails records an ``error`` event
with a code in ``<run>/events.jsonl``; a Ctrl-C becomes :class:`~protege.core.errors.RunInterrupted`, whose
message says what was saved, and an unreadable shard or a missing input table names the command that re-makes it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from protege.core import console
from protege.core.errors import InputMissing, ProtegeError, RunInterrupted, ShardCorrupt, error_code
from protege.core.run import Run
from protege.core.section import settings
from protege.models.route import Maker, TeacherRoute
from protege.pipeline.families import FAMILIES
from protege.pipeline.preflight import preflight
from protege.pipeline.recipe import Recipe, RecipeError, dump_recipe, parse_recipe
from protege.stage import Family, Stage, StageContext


@dataclass
class Step:
    """One stage of a plan: whether it runs and why, what made its signature, which stages feed it."""

    stage: Stage
    signature: str
    inputs: dict[str, Any]
    producers: list[str] = field(default_factory=list)
    run: bool = False
    reason: str = "done earlier"
    resume: bool = False  # interrupted with the same settings: keep what it saved
    config: Any = None  # the stage's own section

    @property
    def name(self) -> str:
        return self.stage.name


def family_of(recipe: Recipe) -> Family:
    return FAMILIES[recipe.family]


def planned_stages(recipe: Recipe) -> list[Stage]:
    return [s for s in family_of(recipe).stages if getattr(recipe, s.name, None) is not None]


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def signatures(recipe: Recipe) -> list[Step]:
    """Every planned stage with its producers and signature; a stage whose required input nobody writes is an
    error here, before anything runs."""
    fam, stages = family_of(recipe), planned_stages(recipe)
    steps: list[Step] = []
    task = getattr(recipe, "task", None)
    for i, stage in enumerate(stages):
        producers: list[str] = []
        required = stage.required(getattr(recipe, stage.name))
        for name in required:
            if name not in {o.name for o in fam.outputs}:
                raise RecipeError(f"stage '{stage.name}' is set to read '{name}', which is not a table of the "
                                  f"{fam.name} family; choose one of: {', '.join(o.name for o in fam.outputs)}.")
        for name in (*required, *stage.uses):
            writer = next((s.name for s in reversed(stages[:i]) if name in s.writes), None)
            if writer is None and name in required:
                makers = [s.name for s in fam.stages if name in s.writes and s.name != stage.name]
                fix = f"add a '{makers[0]}:' section before it" if makers else "no stage of this family writes it"
                raise RecipeError(f"stage '{stage.name}' reads '{name}' ({fam.output(name).description}), which "
                                  f"no earlier stage of this recipe writes: {fix}.")
            if writer is not None and writer not in producers:
                producers.append(writer)
        inputs: dict[str, Any] = {stage.name: settings(getattr(recipe, stage.name)), "seed": recipe.seed}
        if task is not None:
            inputs["task"] = settings(task)
        for other in stage.sections:
            inputs[other] = settings(getattr(recipe, other, None))
        if stage.asks_teacher(getattr(recipe, stage.name)):
            inputs["teacher"] = settings(recipe.teacher)
        upstream = {p: next(s.signature for s in steps if s.name == p) for p in producers}
        steps.append(Step(stage, _digest([inputs, upstream]), inputs, producers, config=getattr(recipe, stage.name)))
    return steps


def _stored_signatures(run: Run, recipe: Recipe) -> dict[str, Optional[str]]:
    """Signatures of the finished stages; a run written before signatures existed gets those of its recipe.yaml.

    When that recipe no longer validates (its sections changed shape since), its stages count as changed and run
    again: their outputs cannot be trusted to match any recipe of today, and the ledger still answers every
    teacher call they paid for.
    """
    stored = {s["name"]: s.get("signature") for s in run.ledger.stages()}
    legacy = [n for n, sig in stored.items() if sig is None]
    saved = run.path / "recipe.yaml"
    if legacy and saved.exists():
        try:
            old = parse_recipe(yaml.safe_load(saved.read_text()), str(saved))
        except RecipeError as err:
            console.warn(f"{run.path} was written by an older protege and its recipe.yaml no longer validates "
                         f"({str(err).splitlines()[-1].strip()}): stages {legacy} will run again; the ledger "
                         "still answers every teacher call they paid for", code="old_run_recipe")
            return stored
        old_sigs = {s.name: s.signature for s in signatures(old)}
        stored.update({n: old_sigs.get(n) for n in legacy})
    return stored


def plan(recipe: Recipe, run: Optional[Run] = None, *, force: tuple[str, ...] = (),
         only: tuple[str, ...] = ()) -> list[Step]:
    """What a run of ``recipe`` would do against ``run`` (a fresh directory when None)."""
    steps = signatures(recipe)
    names = [s.name for s in steps]
    unknown = sorted((set(force) | set(only)) - set(names))
    if unknown:
        raise RecipeError(f"stage(s) {unknown} are not in this recipe; it runs {names}")
    status = {s["name"]: s["status"] for s in run.ledger.stages()} if run is not None else {}
    stored = _stored_signatures(run, recipe) if run is not None else {}
    saved_inputs = {s["name"]: s["inputs"] for s in run.ledger.stages()} if run is not None else {}
    reasons: dict[str, str] = {}
    while True:
        changed = False
        for step in steps:
            if only and step.name not in only or step.name in reasons:
                continue
            reason = None
            feeding = [p for p in step.producers if p in reasons]
            if step.name in force:
                reason = "forced"
            elif step.name not in status:
                reason = "new"
            elif saved_inputs.get(step.name) not in (None, step.inputs):
                reason = "settings changed"
            elif feeding:
                reason = f"{feeding[0]} re-runs"
            elif stored.get(step.name) != step.signature:
                reason = "inputs changed"  # an upstream stage ran with other settings since this one
            elif status[step.name] != "done":
                reason = "interrupted"
            else:
                later = [s.name for s in steps if s.name in reasons and names.index(s.name) > names.index(step.name)
                         and set(s.stage.writes) & set(step.stage.writes)]
                if later:
                    reason = f"{later[0]} rewrites its outputs"
            if reason is not None:
                reasons[step.name] = reason
                changed = True
        if not changed:
            break
    for step in steps:
        if step.name in reasons:
            step.run, step.reason = True, reasons[step.name]
            step.resume = step.reason == "interrupted"
        elif only and step.name not in only:
            step.reason = "not in --only"
    return steps


def clear_outputs(run: Run, fam: Family, stage: Stage, keep: set[str] = frozenset()) -> None:
    """Remove a stage's declared tables and artifacts, so a re-run with other settings leaves nothing stale.

    ``keep``: outputs an earlier stage of the plan also writes (augmentation rewrites the student train made);
    they belong to that stage, which clears them itself when it re-runs (and then this one re-runs with it).
    """
    for name in stage.writes:
        if name in keep:
            continue
        out = fam.output(name)
        if out.kind == "table":
            run.records.drop(name)
            continue
        for pattern in out.patterns:
            for path in run.artifacts.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def _context(recipe: Recipe, run: Run, stage: Stage, route: Optional[TeacherRoute]) -> StageContext:
    return StageContext(
        name=stage.name, config=getattr(recipe, stage.name), run=run, seed=recipe.seed,
        task=getattr(recipe, "task", None), sections={n: getattr(recipe, n, None) for n in stage.sections},
        recipe_name=recipe.name, route=route if stage.asks_teacher(getattr(recipe, stage.name)) else None,
    )


def check(recipe: Recipe, *, teacher_given: bool = False) -> list[Step]:
    """Everything that can be checked before the run directory is touched (inputs, teacher, models)."""
    steps = signatures(recipe)
    preflight(recipe, [s.stage for s in steps], teacher_given=teacher_given)
    return steps


def run_recipe(recipe: Recipe, *, force: tuple[str, ...] = (), only: tuple[str, ...] = (),
               teacher: Optional[Maker] = None, wait_s: float = 0.0) -> Run:
    """Run ``recipe``'s stages that are not current in its run directory.

    ``teacher`` replaces the backend the recipe's ``teacher:`` section names (a backend, or a factory taking the
    section); it is still asked through the run's ledger. It is the seam tests inject scripted teachers through.
    ``wait_s``: how long to wait for another run holding the run directory before refusing.
    """
    check(recipe, teacher_given=teacher is not None)
    fam = family_of(recipe)
    run = Run(recipe.run_dir)
    with run.lock(wait_s=wait_s, on_stale=lambda message: console.warn(message, code="stale_lock")):
        steps = plan(recipe, run, force=force, only=only)
        (run.path / "recipe.yaml").write_text(dump_recipe(recipe))
        route = TeacherRoute(recipe.teacher, run.ledger, make=teacher) if recipe.teacher is not None else None
        current: Optional[Step] = None
        try:
            for current in steps:
                _run_step(recipe, run, fam, steps, current, route)
        except BaseException as exc:
            failure = _explain(exc, recipe, run, fam, steps, current, route)
            run.log_event("error", code=error_code(failure), stage=current.name if current else None,
                          message=str(failure))
            if failure is exc:
                raise
            raise failure from (None if isinstance(failure, RunInterrupted) else exc)
    return run


def _run_step(recipe: Recipe, run: Run, fam: Family, steps: list[Step], step: Step,
              route: Optional[TeacherRoute]) -> None:
    stage = step.stage
    if not step.run:
        if step.reason != "not in --only":
            console.info(f"[dim]{stage.name}: done earlier, skipped[/dim]")
        if route is not None and stage.adapts_teacher is not None and run.ledger.stage_status(stage.name) == "done":
            route.adapt(lambda backend, s=stage: s.adapts_teacher(backend, run))
        return
    console.info(f"[bold]{stage.name}[/bold]" + ("" if step.reason == "new" else f" [dim]({step.reason})[/dim]"))
    if not step.resume:
        earlier = {w for s in steps[: steps.index(step)] for w in s.stage.writes}
        clear_outputs(run, fam, stage, keep=earlier)
    run.ledger.mark_stage(stage.name, "running", signature=step.signature, inputs=step.inputs)
    run.log_event("stage_start", stage=stage.name, reason=step.reason)
    began = time.perf_counter()
    before = (route.stats.hits, route.stats.misses) if route is not None else (0, 0)
    if route is not None:
        route.used = False
    summary = stage.run(_context(recipe, run, stage, route)) or {}
    summary["seconds"] = round(time.perf_counter() - began, 2)
    if route is not None and route.used:  # say what was paid for and what the ledger remembered
        summary["teacher_requests"] = {"sent": route.stats.misses - before[1],
                                       "from_ledger": route.stats.hits - before[0]}
    run.ledger.mark_stage(stage.name, "done", summary)
    run.write_stage_settings(stage.name, step.inputs)
    run.log_event("stage_end", stage=stage.name, summary=summary)
    console.event("stage_end", stage=stage.name, summary=summary)
    if route is not None and stage.adapts_teacher is not None:
        route.adapt(lambda backend, s=stage: s.adapts_teacher(backend, run))


def _explain(exc: BaseException, recipe: Recipe, run: Run, fam: Family, steps: list[Step], step: Optional[Step],
             route: Optional[TeacherRoute]) -> BaseException:
    """The failure as the user should see it: what was saved after a Ctrl-C, the command that re-makes a
    damaged or missing table; any other failure as it is."""
    where = f" during stage '{step.name}'" if step is not None else ""
    if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunInterrupted):
        paid = route.stats.misses if route is not None else 0
        try:
            stored = f"{run.ledger.totals().calls} in {run.ledger.path}"
        except ProtegeError:
            stored = str(run.ledger.path)
        return RunInterrupted(f"interrupted{where}: every teacher answer received is saved ({stored}; {paid} paid "
                              "by this run), and so is every record the stage had written. Run "
                              f"`{recipe.command}` again to resume: nothing saved is asked or computed again.")
    if isinstance(exc, ShardCorrupt):
        writer = next((s.name for s in steps if exc.table in s.stage.writes), None)
        return ShardCorrupt(f"{exc}{where}. {_remake(recipe, writer)}", path=exc.path, table=exc.table)
    if step is not None and isinstance(exc, (ValueError, FileNotFoundError)) and not isinstance(exc, InputMissing):
        present = set(run.records.tables())
        for name in step.stage.reads:
            writer = next((s.name for s in reversed(steps[: steps.index(step)]) if name in s.stage.writes), None)
            # Only when the stage's own error is about that table: other failures keep their message.
            if fam.output(name).kind == "table" and name not in present and writer is not None and name in str(exc):
                return InputMissing(f"stage '{step.name}' failed ({exc}). The table '{name}' it reads, made by stage "
                                    f"'{writer}', is empty or missing ({run.records.root / name}): if it was removed, "
                                    f"{_remake(recipe, writer, lower=True)}")
    return exc


def _remake(recipe: Recipe, writer: Optional[str], lower: bool = False) -> str:
    if writer is None:
        return "remove the file and run the recipe again."
    advice = (f"re-make it with `{recipe.command} --force {writer}`: that clears the table first, and the ledger "
              "still holds every teacher answer, so it re-pays nothing.")
    return advice if lower else advice[0].upper() + advice[1:]


def describe(steps: list[Step], fam: Family) -> list[dict[str, Any]]:
    """For ``--dry-run`` and ``inspect``: per stage, whether it runs and why, what it reads and writes."""
    return [{"stage": s.name, "runs": s.run, "reason": s.reason, "teacher": s.stage.asks_teacher(s.config),
             "reads": [*s.stage.reads, *(f"{u} (if present)" for u in s.stage.uses)],
             "writes": [fam.output(w).location for w in s.stage.writes]} for s in steps]
