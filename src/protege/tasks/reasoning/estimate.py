"""The ``estimate`` stage: k samples per training problem from the policy, scored, and each problem's difficulty.

The policy is the student by default; ``policy: teacher`` samples the (prepared) teacher through the ledger
instead, and ``teacher_k`` also samples the teacher beside the student to mark the problems the teacher solves
and the student does not (``teacher_only`` in the ``difficulty`` table). Every sample is a record (problem, round 0, response, tokens, answer, correct, formatted, truncated,
process score, policy id, seed). Per problem the ``difficulty`` table holds the pass rate with its Wilson
interval, the mean process score and tokens, and both labelings (:mod:`.difficulty`): HS-STaR's easy /
boundary / too hard and DAST's easy / medium / hard / unsolved.

The summary states the label noise k implies: a problem solved with probability p reads as easy with
probability pᵏ, so with k = 3 one solved 70 % of the time reads as easy a third of the time.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Literal, Optional

import pandas as pd
from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.difficulty import (
    DAST_LEVELS,
    HS_LABELS,
    LabelConfig,
    ProblemStats,
    estimate,
    label_noise,
)
from protege.tasks.reasoning.policy import SamplingSettings, draw, policy_id, records
from protege.tasks.reasoning.task import prompt

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.stage import StageContext


class EstimateConfig(Section):
    """Pre-sampling: how many samples per problem, from which policy, labelled how."""

    policy: Literal["student", "teacher"] = Field("student", description="Who is sampled: the student, or the "
                                                  "prepared teacher (through the ledger; any backend).")
    k: int = Field(3, ge=1, description="Samples per problem (n_p, the pre-sample the allocation reuses).")
    limit: Optional[int] = Field(None, ge=1, description="Only the first this many training problems.")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings, description="Temperature, top-p, length.")
    labels: LabelConfig = Field(default_factory=LabelConfig, description="HS-STaR and DAST thresholds.")
    teacher_k: int = Field(0, ge=0, description="policy student: also sample the teacher this many times per problem "
                           "(through the ledger) and mark the problems it solves and the student does not.")


def train_problems(run: "Run", limit: Optional[int] = None) -> list[dict]:
    rows = run.records.read(tables.PROBLEMS)
    rows = rows[rows["split"] == "train"]
    return rows.head(limit).to_dict("records") if limit else rows.to_dict("records")


def read_stats(run: "Run") -> list[ProblemStats]:
    frame = run.records.read(tables.STATS)
    fields = ProblemStats.__dataclass_fields__
    rows = frame.to_dict("records")
    for r in rows:  # a problem without any process score is stored as NaN
        r["process"] = None if pd.isna(r["process"]) else r["process"]
    return [ProblemStats(**{k: r[k] for k in fields}) for r in rows]  # extra columns (teacher_only) stay behind


def noise_statement(k: int) -> str:
    seventy = label_noise(0.7, k)
    return (f"With k = {k} samples a problem the policy solves 70 % of the time reads as easy "
            f"{seventy['easy']:.0%} of the time and as too hard {seventy['too_hard']:.1%}; one it solves 30 % "
            f"of the time reads as too hard {label_noise(0.3, k)['too_hard']:.0%} of the time.")


def run(ctx: "StageContext") -> dict:
    cfg: EstimateConfig = ctx.config
    task = ctx.require_task()
    problems = train_problems(ctx.run, cfg.limit)
    draws = draw(ctx, cfg.policy, [prompt(task, p["question"]) for p in problems], cfg.k, cfg.sampling, ctx.seed)
    who = policy_id(ctx, cfg.policy)
    samples = records(task, problems, draws, round=0, kind="own", policy=who, seed=ctx.seed)
    ctx.run.records.replace(tables.SAMPLES, samples, stage="estimate")
    stats = estimate(samples, cfg.labels)
    rows = [{"id": s.problem_id, **asdict(s)} for s in stats]
    if cfg.teacher_k and cfg.policy == "student":
        drawn = draw(ctx, "teacher", [prompt(task, p["question"]) for p in problems], cfg.teacher_k, cfg.sampling,
                     ctx.seed)
        by_teacher = records(task, problems, drawn, round=0, kind="teacher", policy=ctx.teacher.model_id,
                             seed=ctx.seed)
        solved = {t.problem_id: t.pass_rate for t in estimate(by_teacher, cfg.labels)}
        for row in rows:
            row["teacher_pass_rate"] = solved[row["problem_id"]]
            row["teacher_only"] = row["teacher_pass_rate"] > 0 and row["correct"] == 0
    ctx.run.records.replace(tables.STATS, rows, stage="estimate")
    summary = {
        "policy": who, "k": cfg.k, "problems": len(stats), "samples": len(samples),
        "pass_rate": sum(s.pass_rate for s in stats) / len(stats),
        "hs_star": {label: sum(s.hs_label == label for s in stats) for label in HS_LABELS},
        "dast": {level: sum(s.dast_level == level for s in stats) for level in DAST_LEVELS},
        "format_rate": sum(r["formatted"] for r in samples) / len(samples),
        "truncation_rate": sum(r["truncated"] for r in samples) / len(samples),
        "label_noise": {f"{p:.1f}": label_noise(p, cfg.k) for p in (0.1, 0.3, 0.5, 0.7, 0.9)},
        "noise_statement": noise_statement(cfg.k),
    }
    if "teacher_only" in rows[0]:
        summary["teacher_only"] = sum(r["teacher_only"] for r in rows)
        summary["teacher_pass_rate"] = sum(r["teacher_pass_rate"] for r in rows) / len(rows)
    ctx.run.write_json(tables.ESTIMATE_SUMMARY, summary)
    console.info(f"estimate: pass rate {summary['pass_rate']:.1%} over {len(stats)} problems × {cfg.k}; HS-STaR "
                 f"{summary['hs_star']}; {summary['noise_statement']}")
    return {k: summary[k] for k in ("policy", "k", "problems", "pass_rate", "hs_star", "dast")}
