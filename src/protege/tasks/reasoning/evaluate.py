"""The ``evaluate`` stage: every model on the test problems, and every arm's difference with intervals.

Models: the prepared teacher (through the ledger, so a re-run pays nothing), the healed student, each
self-trained student and each RL arm's student (``rl-<arm>``). Per model: greedy accuracy, accuracy per difficulty bucket (the generator's knobs),
tokens per answer (correct vs wrong), truncation and format rates, correct answers per 1,000 generated tokens,
and with ``samples: n`` the unbiased pass@k (k = 1 and n) and maj@n. Differences are paired over the same
test problems (:func:`protege.evaluate.intervals.paired_bootstrap`): each self-trained or RL-trained model
against the student, each allocation arm against the first arm with the same method, and each RL arm against
the first RL arm; an interval that contains 0 is reported as inside the noise. The budget every arm spent (from
the allocate or the rl stage) sits beside its accuracy.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional, Sequence

from pydantic import Field

from protege.core import console
from protege.core.records import record_id
from protege.core.section import Section
from protege.evaluate.intervals import paired_bootstrap
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.metrics import accuracy_by_bucket, problem_summary, response_summary
from protege.tasks.reasoning.policy import SamplingSettings, draw, load_model, records
from protege.tasks.reasoning.task import prompt

if TYPE_CHECKING:
    from protege.stage import StageContext


class EvaluateConfig(Section):
    """How the models are scored on the test problems."""

    limit: Optional[int] = Field(None, ge=1, description="Only the first this many test problems.")
    max_new_tokens: int = Field(128, ge=1, description="Longest response; one without EOS by then is truncated.")
    samples: int = Field(0, ge=0, description="Sampled responses per problem for pass@k and maj@n (0: greedy only).")
    temperature: float = Field(1.0, gt=0, description="Temperature of those samples.")
    teacher: bool = Field(True, description="Also score the prepared teacher (greedy, through the ledger).")
    batch_size: int = Field(16, ge=1, description="Sequences decoded at once.")
    resamples: int = Field(2000, ge=100, description="Bootstrap resamples of each paired interval.")


def _bucket(meta: str) -> str:
    knobs = {k: v for k, v in json.loads(meta or "{}").items() if k != "source"}
    return " ".join(f"{k}={v}" for k, v in sorted(knobs.items())) or "all"


def _score_model(ctx: "StageContext", name: str, policy: str, lm: Any, problems: list[dict]) -> tuple[dict, list]:
    cfg: EvaluateConfig = ctx.config
    task = ctx.require_task()
    prompts = [prompt(task, p["question"]) for p in problems]
    greedy = SamplingSettings(temperature=0.0, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size)
    rows = records(task, problems, [r[:1] for r in draw(ctx, policy, prompts, 1, greedy, ctx.seed, lm)],
                   round=0, kind="greedy", policy=name, seed=ctx.seed)
    metrics = response_summary(rows)
    metrics["by_bucket"] = {str(k): v for k, v in accuracy_by_bucket(
        [r["correct"] for r in rows], [_bucket(p["meta"]) for p in problems]).items()}
    if cfg.samples:
        sampling = greedy.model_copy(update={"temperature": cfg.temperature})
        drawn = draw(ctx, policy, prompts, cfg.samples, sampling, ctx.seed + 1, lm)
        sampled = records(task, problems, drawn, round=0, kind="sampled", policy=name, seed=ctx.seed + 1)
        grouped = [[r for r in sampled if r["problem_id"] == p["id"]] for p in problems]
        metrics.update(problem_summary(grouped, [p["answer"] for p in problems], sorted({1, cfg.samples}),
                                       task.verifier))
    return metrics, rows


def _difference(a: list[bool], b: list[bool], resamples: int, seed: int) -> dict:
    d = paired_bootstrap([float(x) for x in a], [float(x) for x in b], resamples=resamples, seed=seed)
    return {"difference": d.estimate, "low": d.low, "high": d.high, "inside_noise": d.inside_noise, "n": d.items}


def comparisons(correct: dict[str, list[bool]], trained: dict[str, dict], arms: list[str], resamples: int,
                seed: int, rl: Sequence[str] = ()) -> list[dict]:
    """Paired differences: each trained model vs the student, each arm vs the first arm with the same method,
    each RL model (``rl``, names as in ``correct``) vs the first RL model."""
    out = []
    for name in [*trained, *rl]:
        out.append({"a": name, "b": "student", **_difference(correct[name], correct["student"], resamples, seed)})
    for name in rl[1:]:
        out.append({"a": name, "b": rl[0], **_difference(correct[name], correct[rl[0]], resamples, seed)})
    methods = sorted({v["method"] for v in trained.values()})
    for method in methods:
        base = f"{arms[0]}-{method}"
        for arm in arms[1:]:
            name = f"{arm}-{method}"
            if name in correct and base in correct:
                out.append({"a": name, "b": base, **_difference(correct[name], correct[base], resamples, seed)})
    return out


def run(ctx: "StageContext") -> dict:
    cfg: EvaluateConfig = ctx.config
    frame = ctx.run.records.read(tables.PROBLEMS)
    problems = frame[frame["split"] == "test"].to_dict("records")[: cfg.limit]
    trained_path = ctx.run.artifacts / tables.SELFTRAIN_SUMMARY
    trained = ctx.run.read_json(tables.SELFTRAIN_SUMMARY) if trained_path.exists() else {}
    models: dict[str, dict] = {}
    results: list[dict] = []
    if cfg.teacher and ctx.route is not None:
        models["teacher"], rows = _score_model(ctx, "teacher", "teacher", None, problems)
        results += rows
    rl_path = ctx.run.artifacts / tables.RL_SUMMARY
    rl_arms = ctx.run.read_json(tables.RL_SUMMARY) if rl_path.exists() else {}
    folders = {"student": tables.STUDENT, **{n: f"{tables.SELFTRAINED}/{n}" for n in trained},
               **{f"rl-{a}": f"{tables.RL}/{a}" for a in rl_arms}}
    for name, where in folders.items():
        folder = ctx.run.artifacts / where
        models[name], rows = _score_model(ctx, name, "student", load_model(folder, name), problems)
        results += rows
        console.info(f"evaluate: {name}: greedy accuracy {models[name]['accuracy']:.1%}")
    ctx.run.records.replace(tables.RESULTS, [{**r, "id": record_id(r["policy"], r["problem_id"]),
                                              "model": r["policy"]} for r in results], stage="evaluate")
    correct = {m: [r["correct"] for r in results if r["policy"] == m] for m in models}
    alloc_path = ctx.run.artifacts / tables.ALLOCATE_SUMMARY
    budgets = ctx.run.read_json(tables.ALLOCATE_SUMMARY)["arms"] if alloc_path.exists() else {}
    metrics = {"test_problems": len(problems), "models": models, "trained": trained, "budgets": budgets,
               "rl": rl_arms, "comparisons": comparisons(correct, trained, list(budgets), cfg.resamples, ctx.seed,
                                                         [f"rl-{a}" for a in rl_arms])}
    for path, key in ((tables.ESTIMATE_SUMMARY, "estimate"), (tables.STUDENT_SUMMARY, "student"),
                      (tables.PREPARE_SUMMARY, "teacher")):
        if (ctx.run.artifacts / path).exists():
            metrics[key] = ctx.run.read_json(path)
    metrics["headline"] = headline(metrics)
    ctx.run.write_json(tables.METRICS, metrics)
    console.info(f"evaluate: {metrics['headline']}")
    return {name: round(m["accuracy"], 4) for name, m in models.items()}


def headline(metrics: dict) -> str:
    models, n = metrics["models"], metrics["test_problems"]
    parts = [f"{name} {m['accuracy']:.0%}" for name, m in models.items()]
    noisy = [c for c in metrics["comparisons"] if c["b"] != "student"]
    tail = ""
    if noisy:
        inside = sum(c["inside_noise"] for c in noisy)
        tail = f"; {inside} of {len(noisy)} differences between arms are inside the noise"
    return f"Greedy accuracy on {n} test problems: {', '.join(parts)}{tail}."
