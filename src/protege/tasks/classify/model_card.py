"""The student's model card: ``artifacts/student/README.md``, Hugging Face's card format, from ``metrics.json``.

It says what a person deciding whether to use the student needs: which teacher and student, on how much data,
the scores with their intervals, the flags, and how to load it (with the temperature fitted on dev). Rendered
from a Jinja template beside this module.
"""

from __future__ import annotations

from typing import Any, Mapping

import jinja2

from protege.core.run import Run
from protege.tasks.classify import tables

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("protege.tasks.classify", "templates"),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _count(n: int | None) -> str | None:
    return None if n is None else f"{n / 1e6:.1f} M"


def render(result: Mapping[str, Any]) -> str:
    cost = result.get("cost") or {}
    teacher, student = cost.get("teacher") or {}, cost.get("student") or {}
    rows = [{"name": name.replace("_", " "), "accuracy": _pct(m["accuracy"]), "macro_f1": f"{m['macro_f1']:.3f}",
             "interval": " – ".join(_pct(x) for x in m.get("accuracy_interval") or [None, None])}
            for name, m in result["models"].items()]
    base = student.get("name")
    return _ENV.get_template("model_card.md.j2").render(
        name=result.get("name", "student"), labels=result["labels"], test_examples=result["test_examples"],
        scores=rows, flags=result.get("flags") or [], data=result.get("data") or {},
        teacher_name=teacher.get("name", "teacher"), teacher_params=_count(teacher.get("parameters")),
        student_name=base or "student", student_params=_count(student.get("parameters")),
        base_model=base if base and "/" in base else None,
        temperature=(result.get("calibration") or {}).get("temperature"),
    )


def write(run: Run, result: Mapping[str, Any]) -> None:
    target = run.artifacts / tables.STUDENT / "README.md"
    if target.parent.exists():
        target.write_text(render(result))
