"""The ``protege`` command line: run, quickstart, recipes, inspect, report, predict, export, push, doctor.

An error caused by the recipe, the data or the command line (:class:`~protege.core.errors.UserError`, raised
anywhere, stages included) prints one message and exits with code 2; ``--debug`` shows its traceback too.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer
import yaml
from rich.table import Table

from protege import __version__
from protege.core import console
from protege.core.errors import ProtegeError, UserError, error_code

if TYPE_CHECKING:
    from protege.core.run import Run

# No locals in tracebacks: a frame's locals can hold an API key or a whole batch of data.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Distil large language models into small students.")

RECIPES = Path(__file__).parent / "recipes"
_program = False  # set by program(): this process is the protege program, not a library caller or a test runner
_debug = False


def _version(value: bool) -> None:
    if value:
        print(f"protege {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the headline and errors."),
    log_jsonl: Optional[str] = typer.Option(
        None, "--log-jsonl", help="Append one JSON object per event to this file ('-' for stdout)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an error, not only its message."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    global _debug
    _debug = debug
    console.configure(quiet=quiet, jsonl=log_jsonl)


def guarded(command: Any) -> Any:
    """A command whose user errors print as one message with exit code 2, other protege failures with 1 (the
    traceback under --debug); every failure records an ``error`` event with a code; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (UserError, FileNotFoundError) as err:
            console.error(str(err), code=error_code(err))
            if _debug:
                raise
            raise typer.Exit(2) from None
        except ProtegeError as err:
            console.error(str(err), code=error_code(err))
            if _debug:
                raise
            raise typer.Exit(1) from None
        except KeyboardInterrupt as err:
            console.error(str(err) or "interrupted", code="interrupted")
            if _program:  # everything is saved: skip the interpreter's teardown, seconds long with torch loaded
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)
            raise typer.Exit(130) from None
        except Exception as err:  # a bug: keep its traceback, but let machines know why the run stopped
            console.event("error", code=error_code(err), message=f"{type(err).__name__}: {err}")
            raise

    return wrapper


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise typer.BadParameter(f"--set takes KEY=VALUE (dotted keys, e.g. train.loop.steps=10), got {pair!r}")
        key, value = pair.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


def _load(recipe_path: Path, sets: list[str]) -> Any:
    from protege.pipeline.recipe import load_recipe

    return load_recipe(recipe_path, _parse_sets(sets))


def _run(recipe_path: Path, sets: list[str], force: list[str], only: list[str], wait: float = 0.0) -> "Run":
    from protege.pipeline.runner import run_recipe

    recipe = _load(recipe_path, sets)
    run = run_recipe(recipe, force=tuple(force), only=tuple(only), wait_s=wait)
    console.info(f"run directory: {run.path}")
    return run


def _dry_run(recipe_path: Path, sets: list[str], force: list[str], only: list[str]) -> None:
    """Validate the recipe and say what a run would do, loading no model and asking the teacher nothing."""
    from protege.core.run import Run
    from protege.pipeline.runner import check, describe, family_of, plan

    recipe = _load(recipe_path, sets)
    existing = Run.open_existing(recipe.run_dir) if (recipe.run_dir / "ledger.sqlite").exists() else None
    check(recipe)
    steps = plan(recipe, existing, force=tuple(force), only=tuple(only))
    rows = describe(steps, family_of(recipe))
    console.event("dry_run", recipe=str(recipe_path), family=recipe.family, run_dir=str(recipe.run_dir), stages=rows)
    table = Table(title=f"{recipe.name} ({recipe.family}) -> {recipe.run_dir}")
    for col in ("stage", "action", "teacher", "reads", "writes"):
        table.add_column(col, overflow="fold")
    for row in rows:
        action = f"run ({row['reason']})" if row["runs"] else f"skip ({row['reason']})"
        table.add_row(row["stage"], action, "yes" if row["teacher"] else "", ", ".join(row["reads"]),
                      ", ".join(row["writes"]))
    console.print_renderable(table)
    if recipe.teacher is not None and any(r["teacher"] and r["runs"] for r in rows):
        console.info(f"teacher: {recipe.teacher.backend}:{recipe.teacher.model} (not loaded by --dry-run)")


@app.command()
@guarded
def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    set_: list[str] = typer.Option([], "--set", help="Override a recipe key: --set train.loop.steps=10 (repeatable)."),
    force: list[str] = typer.Option([], "--force", help="Re-run this stage and every stage after it that reads it "
                                    "(repeatable)."),
    only: list[str] = typer.Option([], "--only", help="Run only this stage (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Validate, print the stages that would run or be skipped, "
                                 "what each reads and writes and whether it needs the teacher; run nothing."),
    wait: float = typer.Option(0.0, "--wait", help="Seconds to wait for another run using the same run directory "
                               "to finish (default: refuse at once)."),
) -> None:
    """Execute a recipe into its run directory: resumes an interrupted run, recomputes what a changed setting affects."""
    if dry_run:
        _dry_run(recipe, set_, force, only)
        return
    _run(recipe, set_, force, only, wait)


@app.command()
@guarded
def recipes() -> None:
    """List the packaged recipes with what each does."""
    from protege.pipeline.recipe import load_recipe

    table = Table(title=f"packaged recipes ({RECIPES})")
    for col in ("recipe", "family", "what it does"):
        table.add_column(col, overflow="fold")
    for path in sorted(RECIPES.glob("*.yaml")):
        recipe = load_recipe(path)
        console.event("recipe", path=str(path), family=recipe.family, description=recipe.description)
        table.add_row(path.name, recipe.family, recipe.description)
    console.print_renderable(table)


@app.command()
@guarded
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
    console.info(f"quickstart took {minutes:.1f} minutes; the report: protege report {run.path}")


@app.command()
@guarded
def inspect(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Stages (current or stale), tables and who wrote them, teacher calls, tokens, cost and time of a run."""
    from protege.core.run import Run
    from protege.pipeline.status import status

    r = Run.open_existing(run_dir)
    summary = status(r)
    console.event("inspect", **summary)
    table = Table(title=f"run {r.path} ({summary['family'] or 'unknown family'})")
    table.add_column("what")
    table.add_column("value", justify="right")
    for s in summary["stages"]:
        seconds = f" ({s['seconds']} s)" if s["seconds"] is not None else ""
        table.add_row(f"stage {s['name']}", f"{s['state']}{seconds}")
    for name, info in summary["records"].items():
        by = f" (by {', '.join(info['written_by'])})" if info["written_by"] else ""
        table.add_row(f"records {name}", f"{info['rows']}{by}")
    for method, count in summary["teacher_calls"].items():
        table.add_row(f"teacher calls: {method}", str(count))
    spend = summary["teacher_requests"]
    table.add_row("teacher requests paid / answered from the ledger", f"{spend['paid']} / {spend['from_ledger']}")
    if spend["timing"]:
        table.add_row("  of the paid: sent to time the teacher", str(spend["timing"]))
    table.add_row("teacher tokens (prompt / completion)",
                  f"{summary['teacher_prompt_tokens']} / {summary['teacher_completion_tokens']}")
    table.add_row("teacher time (s)", f"{summary['teacher_seconds']:.1f}")
    table.add_row("teacher cost", f"{summary['teacher_cost']:.4f}")
    console.print_renderable(table)
    if any(s["state"] == "stale" for s in summary["stages"]):
        console.warn("stale stages were made with settings other than the run's recipe.yaml: run the recipe again "
                     "to recompute them", code="stale_stages")


@app.command()
@guarded
def report(
    run_dir: Path = typer.Argument(..., help="A run directory whose evaluation stage has finished."),
    no_open: bool = typer.Option(False, "--no-open", help="Only print the report's path; do not open a browser."),
    rerender: bool = typer.Option(False, "--rerender", help="Render again even if the report exists."),
) -> None:
    """Render the run's HTML report if missing, print its path, and open it when attached to a terminal."""
    from protege.core.run import Run
    from protege.pipeline.status import render_report

    r = Run.open_existing(run_dir)
    page = r.artifacts / "report.html"
    if rerender or not page.exists():
        page = render_report(r)
    print(page)
    if not no_open and sys.stdout.isatty():
        import webbrowser

        webbrowser.open(page.resolve().as_uri())


def _student(run_dir: Path) -> Any:
    from protege.api import open_run

    return open_run(run_dir).student()


@app.command()
@guarded
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory with a trained student."),
    input: Path = typer.Option(..., "--input", "-i", help="Texts to label: a .csv, .tsv, .jsonl, .json or .parquet file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where to write (.csv or .jsonl); default: "
                                          "<input>.predictions.csv beside the input."),
    text_column: str = typer.Option("text", help="Column of the input holding the texts."),
) -> None:
    """Label a file with the run's student: each row gets the label, its probability and every class's."""
    from protege.tasks.classify.deploy import predict_file

    target = output or input.with_name(f"{input.stem}.predictions.csv")
    n = predict_file(_student(run_dir), input, target, text_column=text_column)
    console.event("predict", input=str(input), output=str(target), rows=n)
    console.headline(f"{n} texts labelled: {target}")


@app.command()
@guarded
def export(
    run_dir: Path = typer.Argument(..., help="A run directory with a trained student."),
    format: str = typer.Option("onnx", "--format", help="onnx (float) or int8 (ONNX, dynamically quantised)."),
    check_texts: int = typer.Option(200, help="Held-out test texts the export is checked on against PyTorch."),
) -> None:
    """Export the student to ONNX (or int8 ONNX), checked against PyTorch on held-out texts (same label on >= 99 %)."""
    from protege.api import open_run
    from protege.tasks.classify.deploy import export as export_student

    figures = export_student(open_run(run_dir), format, check_texts=check_texts)
    console.event("export", **figures)
    console.headline(
        f"{format}: {figures['path']} ({figures['size_mb']} MB); same label as PyTorch on {figures['same_label']:.1%} "
        f"of {figures['texts']} held-out texts; {figures['exported']['throughput']:.0f} texts/s vs PyTorch "
        f"{figures['pytorch']['throughput']:.0f}, {figures['exported']['latency_ms']:.1f} ms vs "
        f"{figures['pytorch']['latency_ms']:.1f} ms for one text")


@app.command()
@guarded
def push(
    run_dir: Path = typer.Argument(..., help="A run directory with a trained student."),
    repo: str = typer.Option(..., "--repo", help="Hub repository, owner/name."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    token_env: str = typer.Option("HF_TOKEN", help="Environment variable holding a hub write token."),
) -> None:
    """Upload the student folder (weights, tokenizer, model card) to the Hugging Face hub."""
    from protege.core.run import Run
    from protege.models.hub import push as push_folder

    url = push_folder(Run.open_existing(run_dir).artifacts / "student", repo, private=private, token_env=token_env)
    console.event("push", repo=repo, url=url)
    console.headline(f"pushed to {repo}: {url}")


@app.command()
@guarded
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


def program() -> None:
    """The ``protege`` program (the CLI as a process of its own, which may exit at once after Ctrl-C)."""
    global _program
    _program = True
    app()


if __name__ == "__main__":
    program()
