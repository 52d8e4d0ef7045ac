"""The reasoning report: ``artifacts/reasoning_metrics.json`` (written by evaluate) as a :class:`Report`."""

from __future__ import annotations

import math
from typing import Any

from protege.core.run import Run
from protege.evaluate.report import Report, Table
from protege.tasks.reasoning import tables


def _missing(value: Any) -> bool:
    return value is None or math.isnan(value)


def _pct(value: Any) -> str:
    return "–" if _missing(value) else f"{value:.1%}"


def _num(value: Any, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{value:.{digits}f}"


def _pass_keys(metrics: dict) -> list[str]:
    return sorted({k for m in metrics["models"].values() for k in m if k.startswith("pass@")})


def model_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    ks = _pass_keys(metrics)
    header = ["model", "greedy accuracy", *ks, *(["maj@n"] if ks else []), "tokens (correct)", "tokens (wrong)",
              "truncated", "formatted", "correct / 1k tokens"]
    rows = [[name, _pct(m["accuracy"]), *(_pct(m.get(k)) for k in ks), *([_pct(m.get("maj@n"))] if ks else []),
             _num(m["tokens_correct"]), _num(m["tokens_wrong"]), _pct(m["truncation_rate"]), _pct(m["format_rate"]),
             _num(m["correct_per_1k_tokens"], 2)] for name, m in metrics["models"].items()]
    return header, rows


def budget_rows(metrics: dict) -> list[list[str]]:
    trained = metrics.get("trained", {})
    rows = []
    for arm, b in metrics.get("budgets", {}).items():
        data = {v["method"]: v["examples"] for v in trained.values() if v["arm"] == arm}
        labels = b["per_hs_label"]
        rows.append([arm, b["kind"], str(b["samples"]), _pct(b["boundary_share"]),
                     f"{labels['easy']} / {labels['boundary']} / {labels['too_hard']}", str(b["extra_on_solved"]),
                     str(b["teacher_calls"]), f"{b['extra_tokens']:.0f}", _num(b["extra_seconds"]),
                     str(data.get("star", "–")), str(data.get("dpo", "–"))])
    return rows


def rl_rows(metrics: dict) -> list[list[str]]:
    """One row per RL arm: its objective and teacher term, greedy accuracy, answer length, held-out KL, budget."""
    rows = []
    for arm, r in metrics.get("rl", {}).items():
        m = metrics["models"].get(f"rl-{arm}", {})
        kd = r.get("kd") or {}
        term = f"{kd['estimator']} β={kd['beta']:g} {kd['schedule']} gate={kd['gate']}" if kd else "–"
        length = m["generated_tokens"] / m["responses"] if m.get("responses") else None
        rows.append([arm, r["objective"], term, str(r["steps"]), _pct(m.get("accuracy")),
                     *([_pct(m.get(k)) for k in _pass_keys(metrics)]), _num(length),
                     _num(r.get("heldout_kl"), 3), f"{r['generated_tokens']:,}", f"{r['teacher_tokens']:,}",
                     _num(r["seconds"])])
    return rows


def build(run: Run) -> Report:
    path = run.artifacts / tables.METRICS
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run the evaluate stage before the report")
    metrics = run.read_json(tables.METRICS)
    flags = []
    est = metrics.get("estimate")
    if est:
        flags.append({"code": "label_noise", "message": est["noise_statement"]})
    for c in metrics["comparisons"]:
        if c["inside_noise"] and c["b"] != "student":
            flags.append({"code": "inside_noise", "message": f"{c['a']} vs {c['b']}: {c['difference']:+.1%} "
                          f"[{c['low']:+.1%}, {c['high']:+.1%}] over {c['n']} problems contains 0: the data do "
                          f"not tell these arms apart."})
    header, rows = model_rows(metrics)
    blocks = [Table(header, rows, f"Models on {metrics['test_problems']} test problems")]
    buckets = sorted({b for m in metrics["models"].values() for b in m["by_bucket"]})
    blocks.append(Table(["model", *buckets], [[n, *(_pct(m["by_bucket"].get(b, {}).get("accuracy")) for b in buckets)]
                                              for n, m in metrics["models"].items()], "Accuracy per bucket"))
    blocks.append(Table(["a", "b", "a − b", "95 % interval", "inside the noise"],
                        [[c["a"], c["b"], f"{c['difference']:+.1%}", f"[{c['low']:+.1%}, {c['high']:+.1%}]",
                          "yes" if c["inside_noise"] else "no"] for c in metrics["comparisons"]],
                        "Paired differences (bootstrap over the same test problems)"))
    if metrics.get("budgets"):
        blocks.append(Table(["arm", "allocator", "samples", "on boundary", "easy / boundary / too hard",
                             "extra on solved", "teacher calls", "extra tokens", "extra s", "STaR examples",
                             "DPO pairs"], budget_rows(metrics), "Budget of every arm (equal samples)"))
    if metrics.get("rl"):
        blocks.append(Table(["arm", "objective", "teacher term", "steps", "greedy accuracy", *_pass_keys(metrics),
                             "tokens / answer", "held-out KL", "generated tokens", "teacher tokens scored",
                             "seconds"], rl_rows(metrics), "RL arms at equal steps, with their budgets"))
    if est:
        blocks.append(Table(["policy", "k", "problems", "pass rate", "HS-STaR labels", "DAST levels"],
                            [[est["policy"], str(est["k"]), str(est["problems"]), _pct(est["pass_rate"]),
                              str(est["hs_star"]), str(est["dast"])]], "Difficulty estimate"))
    return Report("protege report: reasoning", metrics["headline"], flags, blocks)
