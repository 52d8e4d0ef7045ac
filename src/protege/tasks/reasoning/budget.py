"""The ``allocate`` stage: arms that spend the same budget differently, sharing one pre-sample.

Each arm (:class:`ArmConfig`: uniform, hs_star or dast, see :mod:`.allocate`) gives every training problem a
number of samples, pre-samples included, that sums to exactly ``budget`` × N. The extra samples come from one
**shared pool** per problem and kind: for each problem the stage draws as many as the hungriest arm asks for,
and an arm's n extra samples are the pool's first n. Arms thus differ only in where they spend, never in luck,
and their comparison is paired; the pool costs max over arms, not the sum.

Extra samples are the policy's own, or for a DAST arm's hard levels *better responses*:

* ``teacher``: the teacher answers the problem (through the ledger: counted as teacher calls, paid once);
* ``hint``: STaR's rationalisation — the policy is given the gold answer and re-derives the steps; the
  response is later trained on as an answer to the plain question;
* ``few_shot``: the policy sees worked solutions of other training problems first (longer demonstrations).

Every arm's budget is recorded: samples per HS-STaR label and DAST level, extra samples on problems the
pre-sample already solved every time, generated tokens, teacher calls and seconds (the pool's sampling time
shared out by tokens).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Literal, Optional

import pandas as pd
from pydantic import Field, model_validator

from protege.core import console
from protege.core.records import record_id
from protege.core.section import Section
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.allocate import AllocationConfig, Better, allocate
from protege.tasks.reasoning.difficulty import DastLevel
from protege.tasks.reasoning.estimate import read_stats, train_problems
from protege.tasks.reasoning.policy import Clock, draw, policy_id, records
from protege.tasks.reasoning.task import prompt

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.stage import StageContext

_DEFAULTS = AllocationConfig()


class ArmConfig(Section):
    """One way to spend the budget."""

    name: str = Field(description="The arm's name in tables and the report (e.g. uniform, hs_star).")
    kind: Literal["uniform", "hs_star", "dast"] = Field(description="Allocator: uniform, hs_star or dast.")
    dast_weights: dict[DastLevel, float] = Field(_DEFAULTS.dast_weights, description="dast: relative share of "
                                                 "the extra samples per problem of each level.")
    better: Optional[Better] = Field(None, description="dast: hard levels' extra samples are better responses "
                                     "of this kind (teacher, hint, few_shot); null: the policy's own.")
    better_levels: list[DastLevel] = Field(_DEFAULTS.better_levels, description="dast: levels given better "
                                           "responses.")

    def allocation(self, budget: int, presamples: int, seed: int) -> AllocationConfig:
        return AllocationConfig(kind=self.kind, budget=budget, presamples=presamples, seed=seed,
                                dast_weights=self.dast_weights, better=self.better, better_levels=self.better_levels)


class AllocateConfig(Section):
    """The equal budget and the arms that spend it."""

    budget: int = Field(8, ge=1, description="B: samples per training problem on average, the estimate's "
                        "pre-samples included; every arm spends exactly B·N.")
    arms: list[ArmConfig] = Field(
        default_factory=lambda: [ArmConfig(name="uniform", kind="uniform"), ArmConfig(name="hs_star", kind="hs_star")],
        min_length=1, description="The arms compared; names must differ.")
    seed: int = Field(0, description="Seed of the residue's placement and of the extra samples.")
    few_shot: int = Field(2, ge=1, description="few_shot: worked solutions shown before the question.")

    @model_validator(mode="after")
    def _arms(self) -> "AllocateConfig":
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"allocate.arms: names {names} repeat; give every arm its own name")
        for arm in self.arms:  # the allocator's own checks (kind, weights, better), with the arm named
            try:
                arm.allocation(max(self.budget, 0), 0, self.seed)
            except ValueError as err:
                raise ValueError(f"allocate.arms[{arm.name}]: {err}") from None
        return self


def hint_prompt(task, problem: dict) -> str:
    return (f"{prompt(task, problem['question'])}\nThe correct final answer is {problem['answer']}. Work it out "
            f"step by step so that the steps reach it.")


def few_shot_prompt(task, problem: dict, demos: list[dict]) -> str:
    shown = "\n\n".join(f"Example: {d['question']}\n{d['solution']}" for d in demos)
    return f"{shown}\n\nNow you: {prompt(task, problem['question'])}"


def _demos(problems: list[dict], stats: dict[str, str], n: int) -> list[dict]:
    """Worked solutions of the problems the policy finds easiest (longest first): the few-shot demonstrations."""
    easy = [p for p in problems if stats.get(p["id"]) == "easy" and p["solution"]] or \
           [p for p in problems if p["solution"]]
    return sorted(easy, key=lambda p: -len(p["solution"]))[:n]


def arm_samples(run: "Run", arm: str) -> list[dict]:
    """An arm's samples: the shared pre-sample plus the first ``count − k`` samples of its pool per problem."""
    pre = run.records.read(tables.SAMPLES).to_dict("records")
    arms = run.records.read(tables.ARMS)
    arms = arms[arms["arm"] == arm]
    if arms.empty:
        raise ValueError(f"no allocation arm named {arm!r}: the allocate stage's arms are "
                         f"{sorted(run.records.read(tables.ARMS)['arm'].unique())}")
    k = run.read_json(tables.ESTIMATE_SUMMARY)["k"]
    pool = run.records.read(tables.POOL)
    out = list(pre)
    if pool.empty:
        return out
    for row in arms.to_dict("records"):
        kind = row["better"] or "own"
        mine = pool[(pool["problem_id"] == row["problem_id"]) & (pool["kind"] == kind)]
        out += mine[mine["index"] < row["count"] - k].to_dict("records")
    return out


def _draw_pool(ctx: "StageContext", task, problems: dict[str, dict], wanted: dict[tuple[str, str], int],
               demos: list[dict], policy: str, seed: int) -> list[dict]:
    """Draw the pool: ``wanted[(problem_id, kind)]`` samples, grouped by count so each call asks one k."""
    out: list[dict] = []
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for (pid, kind), n in wanted.items():
        if n > 0:
            groups[(kind, n)].append(pid)
    for (kind, n), pids in sorted(groups.items()):
        rows = [problems[p] for p in pids]
        if kind == "teacher":
            prompts, who = [prompt(task, r["question"]) for r in rows], "teacher"
        elif kind == "hint":
            prompts, who = [hint_prompt(task, r) for r in rows], policy
        elif kind == "few_shot":
            prompts, who = [few_shot_prompt(task, r, [d for d in demos if d["id"] != r["id"]]) for r in rows], policy
        else:
            prompts, who = [prompt(task, r["question"]) for r in rows], policy
        clock = Clock()
        with clock:
            draws = draw(ctx, who, prompts, n, ctx.section("estimate").sampling, seed + n)
        batch = records(task, rows, draws, round=1, kind=kind, policy=policy_id(ctx, who), seed=seed + n)
        for r in batch:
            r["seconds"] = clock.seconds / max(1, sum(x["tokens"] for x in batch)) * r["tokens"]
        out += batch
    return out


def _budget(arm: ArmConfig, plan, stats, pool: pd.DataFrame, k: int) -> dict:
    solved = {s.problem_id for s in stats if s.correct == s.k}
    boundary = {s.problem_id for s in stats if s.hs_label == "boundary"}
    tokens = seconds = 0.0
    for s, n, kind in zip(stats, plan.counts, plan.better):
        if pool.empty:
            continue
        mine = pool[(pool["problem_id"] == s.problem_id) & (pool["kind"] == (kind or "own")) & (pool["index"] < n - k)]
        tokens += float(mine["tokens"].sum())
        seconds += float(mine["seconds"].sum())
    total = sum(plan.counts)
    return {"kind": arm.kind, "samples": total, "extra_samples": total - k * len(stats), "fallback": plan.fallback,
            "per_hs_label": plan.spent["hs_star"], "per_dast_level": plan.spent["dast"],
            "boundary_share": sum(n for s, n in zip(stats, plan.counts) if s.problem_id in boundary) / total,
            "extra_on_solved": sum(n - k for s, n in zip(stats, plan.counts) if s.problem_id in solved),
            "teacher_calls": plan.better_samples.get("teacher", 0), "better_samples": plan.better_samples,
            "extra_tokens": tokens, "extra_seconds": round(seconds, 2)}


def run(ctx: "StageContext") -> dict:
    cfg: AllocateConfig = ctx.config
    est = ctx.section("estimate")
    task = ctx.require_task()
    if cfg.budget < est.k:
        raise ValueError(f"allocate.budget={cfg.budget} is smaller than estimate.k={est.k}: the pre-samples count "
                         f"toward the budget; raise allocate.budget to at least {est.k} or lower estimate.k")
    stats = read_stats(ctx.run)
    problems = {p["id"]: p for p in train_problems(ctx.run)}
    plans = {arm.name: allocate(stats, arm.allocation(cfg.budget, est.k, cfg.seed)) for arm in cfg.arms}
    wanted: dict[tuple[str, str], int] = {}
    arm_rows = []
    for arm in cfg.arms:
        plan = plans[arm.name]
        for s, n, kind in zip(stats, plan.counts, plan.better):
            key = (s.problem_id, kind or "own")
            wanted[key] = max(wanted.get(key, 0), n - est.k)
            arm_rows.append({"id": record_id(arm.name, s.problem_id), "arm": arm.name, "problem_id": s.problem_id,
                             "count": n, "better": kind or "", "hs_label": s.hs_label, "dast_level": s.dast_level})
    demos = _demos(list(problems.values()), {s.problem_id: s.hs_label for s in stats}, cfg.few_shot)
    pool_rows = _draw_pool(ctx, task, problems, wanted, demos, est.policy, ctx.seed * 1000 + cfg.seed + 1)
    ctx.run.records.replace(tables.POOL, pool_rows, stage="allocate")
    ctx.run.records.replace(tables.ARMS, arm_rows, stage="allocate")
    pool = pd.DataFrame(pool_rows)
    summary = {"budget": cfg.budget, "presamples": est.k, "problems": len(stats), "pool_samples": len(pool_rows),
               "arms": {arm.name: _budget(arm, plans[arm.name], stats, pool, est.k) for arm in cfg.arms}}
    ctx.run.write_json(tables.ALLOCATE_SUMMARY, summary)
    for name, b in summary["arms"].items():
        console.info(f"allocate: {name}: {b['samples']} samples, boundary share {b['boundary_share']:.0%}, "
                     f"{b['extra_on_solved']} extra on solved problems, {b['teacher_calls']} teacher calls")
    return {"pool_samples": len(pool_rows), **{n: b["samples"] for n, b in summary["arms"].items()}}
