"""The classification report: ``artifacts/metrics.json`` (written by evaluate) as a :class:`Report`.

Flags come first: a weak teacher or a one-class student is said before any number is shown. Rendering and
writing are the shared report kit's (:mod:`protege.evaluate.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from protege.core.errors import NotFound
from protege.core.run import Run
from protege.evaluate.report import Figure, Notes, Report, Table, figure_png, pyplot
from protege.evaluate.report import write_report as write
from protege.tasks.classify import tables
from protege.tasks.classify.compare import times


def confusion_plot(result: Mapping[str, Any]) -> bytes | None:
    names = [n for n in ("teacher", "student", "gold_seed_student") if n in result["models"]]
    if not names:
        return None
    plt = pyplot()
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
    return figure_png(fig)


def reliability_plot(result: Mapping[str, Any]) -> bytes | None:
    names = [n for n in ("teacher", "student") if n in result["models"]]
    if not names:
        return None
    plt = pyplot()
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
    return figure_png(fig)


def learning_curve_plot(result: Mapping[str, Any]) -> bytes | None:
    curve = result.get("learning_curve") or []
    if not curve:
        return None
    plt = pyplot()
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
    return figure_png(fig)


def speed_plot(result: Mapping[str, Any]) -> bytes | None:
    speed = result.get("speed")
    if not speed:
        return None
    plt = pyplot()
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
    return figure_png(fig)


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


def _interval(bounds: Any, pct: bool = True) -> str:
    if not bounds:
        return "–"
    return f"{100 * bounds[0]:.1f} – {100 * bounds[1]:.1f} %" if pct else f"{bounds[0]:.3f} – {bounds[1]:.3f}"


def score_rows(result: Mapping[str, Any]) -> list[list[str]]:
    majority = result["majority"]
    rows = [["majority class ('" + majority["label"] + "')", _fmt(majority["accuracy"]),
             _interval(majority.get("accuracy_interval")), _fmt(majority["macro_f1"], False), "–"]]
    for name, scores in result["models"].items():
        rows.append([name.replace("_", " "), _fmt(scores["accuracy"]), _interval(scores.get("accuracy_interval")),
                     _fmt(scores["macro_f1"], False), _fmt(scores["ece"], False)])
    return rows


def difference_rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for name, d in (result.get("differences") or {}).items():
        lo, hi = d["interval"]
        rows.append([f"student − {name.replace('_', ' ')}", f"{100 * d['difference']:+.1f} points",
                     f"{100 * lo:+.1f} – {100 * hi:+.1f}", "yes" if d["separated"] else "no: a tie on this test set"])
    return rows


def _seconds(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"


def _params(n: Any) -> str:
    return "" if not n else f" ({n / 1e6:.1f} M parameters)"


def cost_rows(result: Mapping[str, Any]) -> list[list[str]]:
    cost = result.get("cost")
    if not cost:
        return []
    calls, tokens = cost["teacher_calls"], cost["teacher_tokens"]
    rows = [["teacher", f"{cost['teacher']['name']}{_params(cost['teacher']['parameters'])}"],
            ["student", f"{cost['student']['name']}{_params(cost['student']['parameters'])}"],
            ["teacher calls paid / answered by the ledger", f"{calls['paid']} / {calls['from_ledger']}"],
            ["teacher tokens (prompt / completion)", f"{tokens['prompt']} / {tokens['completion']}"],
            ["teacher time", _seconds(cost["teacher_seconds"])],
            ["money (at the recipe's prices)", "–" if cost["money"] is None else f"{cost['money']:.4f}"],
            ["training time (every student)", _seconds(cost.get("training_seconds"))],
            ["total wall time (all stages)", _seconds(cost["total_seconds"])]]
    rows += [[f"  stage {name}", _seconds(sec)] for name, sec in cost["stage_seconds"].items()]
    return rows


def fact_rows(result: Mapping[str, Any]) -> list[list[str]]:
    rows = [["test examples (gold)", str(result["test_examples"])]]
    rows += [[f"{split} texts", str(n)] for split, n in (result.get("data") or {}).items()]
    if "agreement" in result:
        rows.append(["teacher–student agreement", _fmt(result["agreement"])])
    kept = result.get("kept") or {}
    for key in ("accuracy", "macro_f1"):
        if kept.get(key) is not None:
            rows.append([f"share of the teacher's {key.replace('_', '-')} kept", _fmt(kept[key])])
    calib = result.get("calibration") or {}
    if calib.get("temperature") is not None:
        rows.append(["student calibration error on test: raw / temperature-scaled",
                     f"{calib['ece_before']:.3f} / {calib['ece_after']:.3f} (T = {calib['temperature']:.2f}, "
                     f"fitted on {calib['dev_texts']} gold dev texts)"])
    speed = result.get("speed")
    if speed:
        for who in ("teacher", "student"):
            rows.append([f"{who} throughput (batched) / latency (one text)",
                         f"{speed[who]['throughput']:.1f} texts/s / {speed[who]['latency_ms']:.1f} ms"])
        rows.append(["student speed-up (throughput)", times(speed["speedup_throughput"])])
    for split, stats in (result.get("candidates") or {}).items():
        rows.append([f"teacher's candidate sets on gold {split}: hold the gold label / mean size",
                     f"{_fmt(stats['coverage'])} / {stats['mean_size']:.2f} labels ({stats['n']} texts)"])
    for key, value in (result.get("training") or {}).items():
        rows.append([key.replace("_", " "), str(value)])
    return rows


METHOD_NAMES = {"zero_shot": "teacher zero-shot", "icl": "teacher plain ICL", "feedback": "teacher feedback ICL"}


def _per_text(seconds: Any) -> str:
    return "–" if seconds is None else (f"{1000 * seconds:.1f} ms" if seconds < 1 else f"{seconds:.2f} s")


def baseline_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """The icl stage's training-free teacher methods beside the annotating teacher and the student, all on the
    same gold test texts: quality with intervals, teacher prompt tokens per text, seconds per text."""
    baselines = result.get("teacher_baselines") or {}
    if not baselines or "mismatch" in baselines:
        return []
    rows = []
    for method, b in baselines.items():
        fills = f" ({b['fills']} fills)" if method == "feedback" and b.get("fills") else ""
        rows.append([METHOD_NAMES.get(method, method) + fills, _fmt(b["accuracy"]),
                     _interval(b.get("accuracy_interval")), _fmt(b["macro_f1"], False),
                     _interval(b.get("macro_f1_interval"), False), f"{b['prompt_tokens_per_text']:.0f}",
                     _per_text(b["seconds_per_text"])])
    speed = result.get("speed") or {}
    for name, label, tokens in (("teacher", "teacher as annotated (zero-shot, calibrated on dev)", "–"),
                                ("student", "student", "0")):
        scores = result["models"].get(name)
        if scores is None:
            continue
        latency = speed.get(name, {}).get("latency_ms")
        rows.append([label, _fmt(scores["accuracy"]), _interval(scores.get("accuracy_interval")),
                     _fmt(scores["macro_f1"], False), _interval(scores.get("macro_f1_interval"), False), tokens,
                     "–" if latency is None else _per_text(latency / 1000)])
    return rows


def augment_rows(summary: Mapping[str, Any]) -> list[list[str]]:
    """The augmentation's settings, budget ratio, chosen strategy, spend and rounds (``augment.json``)."""
    plan, spend = summary.get("strategy") or {}, summary.get("spend") or {}
    rows = [["prompt / errors mined on", f"{summary.get('prompt', 'one_error')} / {summary.get('mine', 'dev')}"]]
    if plan.get("ratio") is not None:
        rows.append(["budget ratio R = budget / gold seed",
                     f"{plan['budget_units']} / {plan['seed_size']} = {plan['ratio']:g} ({plan['unit']}; "
                     f"generation_cost {plan['generation_cost']:g})"])
        rows.append(["R spent", f"{plan.get('ratio_spent', 0):g}"])
    chosen = plan.get("strategy", "new")
    rows.append(["strategy", chosen if plan.get("requested") in (None, chosen) else f"{chosen} (auto: "
                 f"rephrase from R {plan['thresholds']['rephrase_from']:g}, new from {plan['thresholds']['new_from']:g})"])
    if spend:
        rows.append(["asked: completions / scored prompts / call units",
                     f"{spend['generated']} / {spend['scored']} / {spend['units']:g}"])
    for h in summary.get("history") or []:
        value = h.get("dev_metric", h.get("dev_agreement"))  # dev_agreement: augment.json before the metric choice
        if "stopped" in h:
            rows.append([f"round {h['round']}", f"stopped: {h['stopped']}"])
        elif h["round"]:
            rows.append([f"round {h['round']}", f"{h['new_examples']} new rows for "
                         f"{', '.join(h.get('asked_for') or ['the errors'])}; dev "
                         f"{summary.get('metric', 'agreement')} {_fmt(value)} "
                         f"({'kept' if h['kept'] else 'not kept'})"])
        else:
            rows.append(["before augmentation", f"dev {summary.get('metric', 'agreement')} {_fmt(value)}"])
    return rows


def error_rows(result: Mapping[str, Any]) -> list[list[str]]:
    return [[e["text"], e["gold"], f"{e['student']} ({e['student_confidence']:.0%})", e["teacher"] or "–"]
            for e in result.get("error_examples") or []]


def build(run: Run) -> Report:
    """The report of a classification run, from its ``metrics.json``."""
    path = run.artifacts / tables.METRICS
    if not path.exists():
        raise NotFound(f"{path} is missing: run the evaluate stage before the report")
    result = run.read_json(tables.METRICS)
    blocks: list[Table | Figure | Notes] = [
        Table(["model", "accuracy", "95 % interval", "macro-F1", "ECE"], score_rows(result),
              "Quality on gold test data"),
    ]
    baselines = baseline_rows(result)
    if baselines:
        blocks.append(Table(["model", "accuracy", "95 % interval", "macro-F1", "95 % interval",
                             "teacher prompt tokens per text", "seconds per text"], baselines,
                            "The teacher without training, beside the student (same gold test texts; teacher methods "
                            "timed as batched when scored, the annotating teacher and the student one text alone)"))
    elif (result.get("teacher_baselines") or {}).get("mismatch"):
        blocks.append(Notes("Teacher baselines not shown", [result["teacher_baselines"]["mismatch"]]))
    if result.get("differences"):
        blocks.append(Table(["comparison", "accuracy difference", "95 % interval (points)", "separated?"],
                            difference_rows(result), "How sure: the student against each baseline"))
    if result.get("advice"):
        blocks.append(Notes("What to do next", list(result["advice"])))
    if result.get("cost"):
        blocks.append(Table(["what", "value"], cost_rows(result), "What it cost"))
    blocks.append(Table(["fact", "value"], fact_rows(result), "Facts"))
    if (run.artifacts / tables.AUGMENT_SUMMARY).exists():
        blocks.append(Table(["augmentation", ""], augment_rows(run.read_json(tables.AUGMENT_SUMMARY)),
                            "Augmentation: budget ratio, strategy and rounds"))
    if result.get("error_examples"):
        blocks.append(Table(["text", "gold", "student (confidence)", "teacher"], error_rows(result),
                            "The student's most confident errors"))
    for key, (caption, draw) in PLOTS.items():
        png = draw(result)
        if png is not None:
            blocks.append(Figure(key, caption, png))
    return Report(f"protege report: {result.get('name', 'run')}", result.get("headline", ""),
                  list(result.get("flags") or []), blocks)


def write_report(run: Run) -> Path:
    return write(run, build(run))
