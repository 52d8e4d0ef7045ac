"""What a run directory holds, read through its family's catalogue: for ``protege inspect`` and ``protege report``.

The run's ``recipe.yaml`` (the recipe last run against it) names the family; each finished stage's stored
signature is compared with the one that recipe gives it, so a stage whose outputs were made with other settings
(or from other inputs) is reported as stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml

from protege.core.errors import NotFound
from protege.core.run import Run
from protege.pipeline.recipe import Recipe, RecipeError, parse_recipe
from protege.pipeline.runner import family_of, plan
from protege.stage import Family, StageContext


def saved_recipe(run: Run) -> Optional[Recipe]:
    """The recipe last run against ``run``, or None when it is missing or no longer validates."""
    path = run.path / "recipe.yaml"
    if not path.exists():
        return None
    try:
        return parse_recipe(yaml.safe_load(path.read_text()), str(path))
    except RecipeError:
        return None


def status(run: Run) -> dict[str, Any]:
    """Stages (status, current or stale, seconds), tables (rows, producing stage), teacher totals."""
    recipe = saved_recipe(run)
    fam: Optional[Family] = family_of(recipe) if recipe is not None else None
    stale: dict[str, bool] = {}
    if recipe is not None:
        try:
            stale = {s.name: s.run for s in plan(recipe, run)}
        except RecipeError:
            stale = {}
    stages = []
    for s in run.ledger.stages():
        state = s["status"]  # without a valid recipe.yaml, currency is unknown
        if state == "done" and s["name"] in stale:
            state = "stale" if stale[s["name"]] else "current"
        stages.append({"name": s["name"], "status": s["status"], "state": state,
                       "seconds": s["summary"].get("seconds")})
    producers = {}
    if fam is not None:
        producers = {o.name: [st.name for st in fam.stages if o.name in st.writes] for o in fam.outputs}
    tables = {t: {"rows": run.records.count(t), "written_by": producers.get(t, [])} for t in run.records.tables()}
    totals = run.ledger.totals()
    return {
        "run_dir": str(run.path), "family": fam.name if fam else None, "stages": stages, "records": tables,
        "teacher_calls": {m: t.calls for m, t in run.ledger.totals_by_method().items()},
        "teacher_prompt_tokens": totals.prompt_tokens, "teacher_completion_tokens": totals.completion_tokens,
        "teacher_seconds": round(totals.latency_s, 2), "teacher_cost": round(totals.cost, 6),
        "teacher_requests": run.ledger.spend(),
    }


def render_report(run: Run) -> Path:
    """Write the run's report with its family's report stage (no model is loaded)."""
    recipe = saved_recipe(run)
    if recipe is None:
        raise NotFound(f"{run.path / 'recipe.yaml'} is missing or invalid: cannot tell the run's family; run its "
                       "recipe again")
    stage = family_of(recipe).stage("report")
    stage.run(StageContext(name="report", config=stage.config(), run=run, seed=recipe.seed))
    return run.artifacts / "report.html"
