"""The ``protege`` command line: run, quickstart, doctor, inspect, report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
import yaml
from rich.table import Table

from protege import console

if TYPE_CHECKING:
    from protege.run import Run

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Distil large language models into small students.")

RECIPES = Path(__file__).parent / "recipes"


@app.callback()
def main(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors; no progress bars."),
    log_jsonl: Optional[str] = typer.Option(
        None, "--log-jsonl", help="Append one JSON object per event to this file ('-' for stdout)."
    ),
) -> None:
    console.configure(quiet=quiet, jsonl=log_jsonl)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--set takes KEY=VALUE (dotted keys, e.g. train.steps=10), got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _run(recipe_path: Path, sets: list[str], force: list[str], only: list[str]) -> "Run":
    from protege.pipeline import run_recipe
    from protege.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(recipe_path, _parse_sets(sets))
    except RecipeError as err:
        console.error(str(err))
        raise typer.Exit(2) from None
    run = run_recipe(recipe, force=tuple(force), only=tuple(only))
    console.info(f"run directory: {run.path}")
    return run


@app.command()
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set train.steps=10 (repeatable)."),
    force: list[str] = typer.Option([], "--force", help="Re-run this stage even if done (repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only this stage (repeatable)."),
) -> None:
    """Execute a recipe into its run directory; resumes where an earlier run stopped."""
    _run(recipe, set_, force, only)


@app.command()
def quickstart(
    run_dir: Path = typer.Option(Path("runs/quickstart"), help="Where to write the run."),
) -> None:
    """Distil the embedded teacher into the embedded student on a packaged dataset, offline."""
    import time

    # The recipe ships inside the package: its own run_dir would point into site-packages for an installed copy.
    sets = [f"run_dir={run_dir.resolve()}"]
    began = time.perf_counter()
    run = _run(RECIPES / "quickstart.yaml", sets, [], [])
    minutes = (time.perf_counter() - began) / 60
    metrics = run.artifacts / "metrics.json"
    if metrics.exists():
        console.info(f"[bold]{run.read_json('metrics.json')['headline']}[/bold]")
    console.info(f"quickstart took {minutes:.1f} minutes; the report: protege report {run.path}")


@app.command()
def inspect(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Stages done, record counts, teacher calls, tokens, cost and time of a run."""
    from protege.run import Run

    try:
        r = Run.open_existing(run_dir)
    except FileNotFoundError as err:
        console.error(str(err))
        raise typer.Exit(2) from None
    stages = r.ledger.stages()
    tables = {t: r.records.count(t) for t in r.records.tables()}
    methods = r.ledger.totals_by_method()
    totals = r.ledger.totals()
    summary = {
        "run_dir": str(r.path),
        "stages": [{"name": s["name"], "status": s["status"], "seconds": s["summary"].get("seconds")} for s in stages],
        "records": tables,
        "teacher_calls": {m: t.calls for m, t in methods.items()},
        "teacher_prompt_tokens": totals.prompt_tokens,
        "teacher_completion_tokens": totals.completion_tokens,
        "teacher_seconds": round(totals.latency_s, 2),
        "teacher_cost": round(totals.cost, 6),
    }
    console.event("inspect", **summary)
    table = Table(title=f"run {r.path}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for s in summary["stages"]:
        table.add_row(f"stage {s['name']}", f"{s['status']} ({s['seconds']} s)" if s["seconds"] is not None else s["status"])
    for name, count in tables.items():
        table.add_row(f"records {name}", str(count))
    for method, count in summary["teacher_calls"].items():
        table.add_row(f"teacher calls: {method}", str(count))
    table.add_row("teacher tokens (prompt / completion)", f"{totals.prompt_tokens} / {totals.completion_tokens}")
    table.add_row("teacher time (s)", f"{totals.latency_s:.1f}")
    table.add_row("teacher cost", f"{totals.cost:.4f}")
    console.print_renderable(table)


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run directory whose evaluate stage has finished."),
    no_open: bool = typer.Option(False, "--no-open", help="Only print the report's path; do not open a browser."),
    rerender: bool = typer.Option(False, "--rerender", help="Render again even if the report exists."),
) -> None:
    """Render the run's HTML report if missing, print its path, and open it when attached to a terminal."""
    from protege.evaluate.report import write_report
    from protege.run import Run

    try:
        r = Run.open_existing(run_dir)
        page = r.artifacts / "report.html"
        if rerender or not page.exists():
            page = write_report(r)
    except FileNotFoundError as err:
        console.error(str(err))
        raise typer.Exit(2) from None
    print(page)
    if not no_open and sys.stdout.isatty():
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


@app.command()
def doctor(
    teacher: Optional[str] = typer.Option(None, help="Teacher model (name, path or hub id) to check against --student."),
    student: Optional[str] = typer.Option(None, help="Student model whose tokenizer must match the teacher's."),
    base_url: Optional[str] = typer.Option(None, help="An OpenAI-compatible server to check, e.g. http://127.0.0.1:8000/v1."),
) -> None:
    """Check the installation: versions, embedded models, backends, and teacher/student tokenizer compatibility."""
    from protege.doctor import run_checks

    checks = run_checks(teacher=teacher, student=student, base_url=base_url)
    table = Table(title="protege doctor")
    for col in ("check", "status", "detail"):
        table.add_column(col, overflow="fold")
    for c in checks:
        colour = {"ok": "green", "warn": "yellow", "fail": "red"}[c.status]
        table.add_row(c.name, f"[{colour}]{c.status}[/{colour}]", c.detail)
        console.event("doctor", check=c.name, status=c.status, detail=c.detail)
    console.print_renderable(table)
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)


if __name__ == "__main__":
    sys.exit(app())
