"""The run report: one self-contained HTML page (plots embedded as PNG data) and a Markdown twin.

It renders ``artifacts/metrics.json`` as written by the evaluate stage and nothing else, so a report can be
rebuilt at any time without models. Flags come first: a weak teacher or a one-class student is said before
any number is shown.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from protege.evaluate.compare import times
from protege.run import Run
from protege.section import Section

PLOT_DIR = "report_files"


class ReportConfig(Section):
    """The report has no options yet: an empty ``report: {}`` section renders it after evaluate."""


def _figure_png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display: the report is rendered headless, also under CI
    import matplotlib.pyplot as plt

    return plt


def confusion_plot(result: Mapping[str, Any]) -> bytes | None:
    names = [n for n in ("teacher", "student", "gold_seed_student") if n in result["models"]]
    if not names:
        return None
    plt = _pyplot()
    labels = result["labels"]
    size = max(3.2, 0.55 * len(labels) + 2)
    fig, axes = plt.subplots(1, len(names), figsize=(size * len(names), size), squeeze=False)
    for ax, name in zip(axes[0], names):
        cm = np.asarray(result["models"][name]["confusion"], dtype=float)
        rows = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
        for (i, j), count in np.ndenumerate(cm):
            ax.text(j, i, f"{int(count)}", ha="center", va="center", color="white" if rows[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(name.replace("_", " "))
    fig.tight_layout()
    return _figure_png(fig)


def reliability_plot(result: Mapping[str, Any]) -> bytes | None:
    names = [n for n in ("teacher", "student") if n in result["models"]]
    if not names:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, marker in zip(names, ("o", "s")):
        rel = result["models"][name]["reliability"]
        pts = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"]) if c is not None]
        if pts:
            conf, acc = zip(*pts)
            ece = result["models"][name]["ece"]
            ax.plot(conf, acc, marker=marker, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability on gold test data")
    ax.legend(loc="upper left", fontsize=8)
    return _figure_png(fig)


def learning_curve_plot(result: Mapping[str, Any]) -> bytes | None:
    curve = result.get("learning_curve") or []
    if not curve:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    pts = sorted(curve, key=lambda p: p["examples"])
    ax.plot([p["examples"] for p in pts], [100 * p["accuracy"] for p in pts], marker="o", label="student")
    lines = [("teacher", result["models"].get("teacher", {}).get("accuracy"), "tab:red"),
             ("majority class", result["majority"]["accuracy"], "grey"),
             ("student on gold seed", result["models"].get("gold_seed_student", {}).get("accuracy"), "tab:green")]
    for label, value, colour in lines:
        if value is not None:
            ax.axhline(100 * value, color=colour, linestyle="--", linewidth=1, label=label)
    ax.set_xlabel("teacher-labelled training examples")
    ax.set_ylabel("accuracy on gold test (%)")
    ax.set_title("accuracy against teacher-labelled examples")
    ax.legend(fontsize=8)
    return _figure_png(fig)


def speed_plot(result: Mapping[str, Any]) -> bytes | None:
    speed = result.get("speed")
    if not speed:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.5, 3.2))
    names = ["teacher", "student"]
    colours = ["tab:red", "tab:blue"]
    left.bar(names, [speed[n]["throughput"] for n in names], color=colours)
    left.set_yscale("log")
    left.set_ylabel("examples per second (batched)")
    right.bar(names, [speed[n]["latency_ms"] for n in names], color=colours)
    right.set_yscale("log")
    right.set_ylabel("ms per example (alone)")
    fig.suptitle(f"student is {times(speed['speedup_throughput'])} faster (throughput), same machine")
    fig.tight_layout()
    return _figure_png(fig)


PLOTS = {
    "confusion": ("Confusion matrices (gold test)", confusion_plot),
    "reliability": ("Reliability diagram", reliability_plot),
    "learning_curve": ("Accuracy against the number of teacher-labelled examples", learning_curve_plot),
    "speed": ("Teacher against student speed", speed_plot),
}


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{100 * value:.1f} %" if pct else f"{value:.3f}"


def score_rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = [["majority class ('" + result["majority"]["label"] + "')", _fmt(result["majority"]["accuracy"]),
             _fmt(result["majority"]["macro_f1"], False), "–"]]
    for name, scores in result["models"].items():
        rows.append([name.replace("_", " "), _fmt(scores["accuracy"]), _fmt(scores["macro_f1"], False),
                     _fmt(scores["ece"], False)])
    return rows


def fact_rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = [["test examples (gold)", str(result["test_examples"])]]
    if "agreement" in result:
        rows.append(["teacher–student agreement", _fmt(result["agreement"])])
    kept = result.get("kept") or {}
    for key in ("accuracy", "macro_f1"):
        if kept.get(key) is not None:
            rows.append([f"share of the teacher's {key.replace('_', '-')} kept", _fmt(kept[key])])
    speed = result.get("speed")
    if speed:
        for who in ("teacher", "student"):
            rows.append([f"{who} throughput / latency",
                         f"{speed[who]['throughput']:.1f} ex/s / {speed[who]['latency_ms']:.1f} ms"])
        rows.append(["student speed-up (throughput)", times(speed["speedup_throughput"])])
    for key, value in (result.get("training") or {}).items():
        rows.append([key.replace("_", " "), str(value)])
    return rows


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


STYLE = """
body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .7em;text-align:left}
.flag{background:#fff3cd;border-left:5px solid #d39e00;padding:.6em 1em;margin:.6em 0}
.flag code{font-weight:bold}.headline{font-size:1.15em;background:#eef5ff;padding:.7em 1em}
figure{margin:1.5em 0}img{max-width:100%}
"""


def render(result: Mapping[str, Any]) -> tuple[str, str, dict[str, bytes]]:
    """(HTML page, Markdown text, PNG bytes by plot name) for one evaluate result."""
    title = f"protege report: {result.get('name', 'run')}"
    pngs = {key: png for key, (_, draw) in PLOTS.items() if (png := draw(result)) is not None}
    score_head = ["model", "accuracy", "macro-F1", "ECE"]
    flags = result.get("flags") or []
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
         f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
         f"<p class='headline'>{html.escape(result.get('headline', ''))}</p>"]
    m = [f"# {title}", "", f"**{result.get('headline', '')}**", ""]
    if flags:
        h.append("<h2>Flags: read these first</h2>")
        m += ["## Flags: read these first", ""]
        for flag in flags:
            h.append(f"<div class='flag'><code>{html.escape(flag['code'])}</code>: {html.escape(flag['message'])}</div>")
            m.append(f"- **{flag['code']}**: {flag['message']}")
        m.append("")
    h += ["<h2>Quality on gold test data</h2>", _html_table(score_head, score_rows(result)),
          _html_table(["fact", "value"], fact_rows(result))]
    m += ["## Quality on gold test data", "", _md_table(score_head, score_rows(result)), "",
          _md_table(["fact", "value"], fact_rows(result)), ""]
    for key, png in pngs.items():
        caption = PLOTS[key][0]
        data = base64.b64encode(png).decode()
        h.append(f"<figure><h2>{html.escape(caption)}</h2><img id='plot-{key}' alt='{html.escape(caption)}' "
                 f"src='data:image/png;base64,{data}'></figure>")
        m += [f"## {caption}", "", f"![{caption}]({PLOT_DIR}/{key}.png)", ""]
    h.append("</body></html>")
    return "\n".join(h), "\n".join(m), pngs


def write_report(run: Run) -> Path:
    """Render ``artifacts/metrics.json`` into ``artifacts/report.html`` and ``report.md``; returns the HTML path."""
    metrics_path = run.artifacts / "metrics.json"
    if not metrics_path.exists() and (run.artifacts / "lm_metrics.json").exists():
        from protege.evaluate.lm_stage import write_lm_report  # an LM run: its evaluate_lm stage wrote the metrics

        return write_lm_report(run)
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} is missing: run the evaluate stage before the report")
    page, markdown, pngs = render(run.read_json("metrics.json"))
    for key, png in pngs.items():
        run.artifact(PLOT_DIR, f"{key}.png").write_bytes(png)
    run.artifact("report.md").write_text(markdown)
    target = run.artifact("report.html")
    target.write_text(page)
    return target


def run(ctx: Any) -> dict[str, Any]:
    """The report stage."""
    path = write_report(ctx.run)
    from protege import console

    console.info(f"report: {path}")
    return {"report": str(path)}
