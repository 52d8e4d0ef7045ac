"""The language-model report: ``artifacts/lm_metrics.json`` (written by evaluate_lm) as a :class:`Report`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from protege.core.errors import NotFound
from protege.core.run import Run
from protege.evaluate.report import Report, Table
from protege.evaluate.report import write_report as write
from protege.tasks.lm import tables

COLUMNS = (("nll", "NLL / token"), ("kl", "KL(teacher‖model) / token"), ("top1_agreement", "top-1 agreement"),
           ("task_accuracy", "task accuracy"), ("tokens_per_answer", "tokens / answer"),
           ("tokens_per_second", "tokens / s"))


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_tables(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the model comparison table (one row per model)."""
    header = ["model", *(label for _, label in COLUMNS)]
    rows = [[name, *(_cell(m.get(key)) for key, _ in COLUMNS)] for name, m in result["models"].items()]
    return header, rows


def training_rows(result: Mapping[str, Any]) -> list[list[str]]:
    return [[name, str(t.get("steps")), _cell(t.get("seconds_per_step")), _cell(t.get("final_loss"))]
            for name, t in result.get("training", {}).items()]


def build(run: Run) -> Report:
    """The report of a language-model run, from its ``lm_metrics.json``."""
    path = run.artifacts / tables.METRICS
    if not path.exists():
        raise NotFound(f"{path} is missing: run the evaluate_lm stage before the report")
    result = run.read_json(tables.METRICS)
    header, rows = report_tables(result)
    facts = [["held-out split", str(result["split"])], ["teacher answers scored", str(result["examples_scored"])],
             ["prompts answered by each model", str(result["prompts_answered"])],
             ["gold answers", str(result.get("answers_source") or "none")]]
    samples = [[name, m.get("sample", "")] for name, m in result["models"].items() if "sample" in m]
    return Report(f"protege report: {result.get('name', 'run')}", result["headline"], [], [
        Table(header, rows, "Students against the teacher on held-out prompts"),
        Table(["student", "steps", "s / step", "final train loss"], training_rows(result), "Training"),
        Table(["fact", "value"], facts, "Facts"),
        Table(["model", "answer"], samples, "First held-out answer of each model"),
    ])


def write_report(run: Run) -> Path:
    return write(run, build(run))
