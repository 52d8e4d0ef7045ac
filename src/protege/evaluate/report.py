"""The report kit every family renders its report with: one self-contained HTML page and a Markdown twin.

A family builds a :class:`Report` from the metrics its evaluation stage wrote (never from models, so a report
can be rebuilt at any time) — a headline, flags that come before any number, then tables and figures — and
:func:`write_report` renders and writes it atomically under ``artifacts/``: ``report.html`` (plots embedded as
PNG data), ``report.md`` and ``report_files/<plot>.png``. Both pages come from Jinja templates in
``evaluate/templates/`` (autoescaped HTML), never from string concatenation. :func:`report_stage` turns a
family's builder into the family's ``report`` stage, so every family has the same stage with the same section;
that stage adds what the teacher cost (requests paid and answered from the ledger, tokens, cost, texts cut to its context).

Any text renders: HTML is escaped, Markdown is escaped (:func:`md_escape`: a label such as ``*a*|<b>`` shows as
written), and plots take text literally (mathtext off, so a label such as ``a$^$b`` cannot crash a report after
the run has paid for everything). Every file is written to a temporary name and renamed, so a crash leaves the
previous report whole.
"""

from __future__ import annotations

import base64
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import jinja2

from protege.core import console
from protege.core.run import Run
from protege.core.section import Section
from protege.stage import Stage, StageContext

PLOT_DIR = "report_files"
HTML, MARKDOWN = "report.html", "report.md"

STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}
.flag{background:#fff3cd;border-left:5px solid #d39e00;padding:.6em 1em;margin:.6em 0}
.flag code{font-weight:bold}.headline{font-size:1.15em;background:#eef5ff;padding:.7em 1em}
figure{margin:1.5em 0}img{max-width:100%}
"""


class ReportConfig(Section):
    """The report has no options yet: an empty ``report: {}`` section renders it after evaluation."""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    heading: Optional[str] = None
    kind: ClassVar[str] = "table"


@dataclass
class Figure:
    key: str
    caption: str
    png: bytes
    kind: ClassVar[str] = "figure"


@dataclass
class Notes:
    """A heading and a bulleted list (advice, example errors)."""

    heading: str
    items: list[str]
    kind: ClassVar[str] = "notes"


@dataclass
class Report:
    """What a family's report says, in order: headline, flags, then tables, notes and figures."""

    title: str
    headline: str
    flags: list[dict] = field(default_factory=list)  # {"code", "message"}
    blocks: list[Table | Figure | Notes] = field(default_factory=list)


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("protege.evaluate", "templates"), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=False)
    env.filters["b64"] = lambda data: base64.b64encode(data).decode()
    env.filters["md"] = md_escape
    return env


# Characters Markdown (GitHub's included: ~~strike~~, $math$) or inline HTML read as syntax anywhere in a line;
# an underscore inside a word (snake_case) is never emphasis, so it stays readable.
_MD_SPECIAL = re.compile(r"([\\`*{}\[\]<>#|~$]|(?<!\w)_|_(?!\w))")


def md_escape(text: str) -> str:
    """``text`` as literal Markdown on one line: every character Markdown (or HTML inside it) would read as
    syntax is backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).splitlines()))


_HTML, _MD = _environment(True), _environment(False)


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is rendered headless, also under CI
    # Labels and names are data, not formulas: '$' in a label must not start mathtext (which can fail to parse).
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig: Any) -> bytes:
    plt = pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def render(report: Report) -> tuple[str, str]:
    """(HTML page, Markdown text) of a report."""
    page = _HTML.get_template("report.html.j2").render(report=report, style=STYLE)
    text = _MD.get_template("report.md.j2").render(report=report, plot_dir=PLOT_DIR)
    return page, text


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def write_report(run: Run, report: Report) -> Path:
    """Render ``report`` into ``artifacts/report.html``, ``report.md`` and its plots; returns the HTML path."""
    page, markdown = render(report)
    for block in report.blocks:
        if isinstance(block, Figure):
            _write_atomic(run.artifact(PLOT_DIR, f"{block.key}.png"), block.png)
    _write_atomic(run.artifact(MARKDOWN), markdown.encode())
    target = run.artifact(HTML)
    _write_atomic(target, page.encode())
    return target


def teacher_spend(run: Run) -> Optional[Table]:
    """What the teacher cost the run, from its ledger; None when the run asked no teacher."""
    spend = run.ledger.spend()
    if not spend["paid"] and not spend["from_ledger"]:
        return None
    rows = [["requests paid", str(spend["paid"])], ["requests answered from the ledger", str(spend["from_ledger"])]]
    if spend["timing"]:
        rows.append(["of the paid: sent to time the teacher", str(spend["timing"])])
    rows += [["tokens (prompt / completion)", f"{spend['prompt_tokens']} / {spend['completion_tokens']}"],
             ["teacher time (s)", f"{spend['seconds']:.1f}"], ["cost", f"{spend['cost']:.4f}"]]
    if spend["truncated_texts"]:
        rows.append(["texts cut to fit the teacher's context", str(spend["truncated_texts"])])
    return Table(["teacher", "value"], rows, heading="What the teacher cost")


def report_stage(build: Callable[[Run], Report], *, reads: tuple[str, ...], writes: tuple[str, ...]) -> Stage:
    """A family's ``report`` stage: ``build`` turns the run's metrics into a :class:`Report`; the teacher's cost
    is appended."""

    def run(ctx: StageContext) -> dict[str, Any]:
        report = build(ctx.run)
        spend = teacher_spend(ctx.run)
        if spend is not None:
            report.blocks.append(spend)
        path = write_report(ctx.run, report)
        console.info(f"report: {path}")
        return {"report": str(path)}

    return Stage("report", ReportConfig, run, "The HTML and Markdown report of the run.", reads=reads,
                 writes=writes)
