"""The ``problems`` stage: the task's source read or generated into one table with train, dev and test splits.

Generated sources (``chain_sum``, ``rg:``) are drawn per split (their splits are disjoint by construction);
file sources are split by a hash of the question (80 / 10 / 10) and each split capped at its count. Every
row carries its gold answer, its worked solution when the source has one, and ``meta`` (JSON) with the
difficulty knobs accuracy is bucketed by. Bad sources and knobs fail here, before any sampling.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.sources import Problem, load_problems, split_of

if TYPE_CHECKING:
    from protege.stage import StageContext


class ProblemsConfig(Section):
    """How many problems of each split."""

    train: int = Field(64, ge=1, description="Training problems: worked solutions, estimate and self-training.")
    dev: int = Field(0, ge=0, description="Development problems (held out; the rl stage measures the KL to the "
                     "teacher on them).")
    test: int = Field(32, ge=1, description="Test problems every model is evaluated on.")


def _rows(problems: list[Problem], split: str) -> list[dict]:
    return [{"id": p.id, "split": split, "question": p.question, "answer": p.answer, "solution": p.solution or "",
             "meta": json.dumps(p.meta, sort_keys=True), "source": str(p.meta.get("source", ""))}
            for p in problems]


def run(ctx: "StageContext") -> dict:
    cfg: ProblemsConfig = ctx.config
    task = ctx.require_task()
    counts = {"train": cfg.train, "dev": cfg.dev, "test": cfg.test}
    rows: list[dict] = []
    if task.source == "chain_sum" or task.source.startswith("rg:"):
        for split, n in counts.items():
            if n:
                rows += _rows(load_problems(task.source, split=split, count=n, seed=ctx.seed, **task.knobs), split)
    else:
        every = load_problems(task.source)
        for split, n in counts.items():
            rows += _rows([p for p in every if split_of(p.question) == split][:n], split)
    by_split = {s: sum(r["split"] == s for r in rows) for s in counts}
    for split, n in counts.items():
        if by_split[split] < n:
            console.warn(f"problems: {task.source} has {by_split[split]} {split} problems, fewer than problems."
                         f"{split}={n}", code="few_problems")
    if not by_split["train"] or not by_split["test"]:
        raise ValueError(f"problems: {task.source} gives {by_split['train']} train and {by_split['test']} test "
                         f"problems; the family needs both (a larger file, or lower counts)")
    ctx.run.records.replace(tables.PROBLEMS, rows, stage="problems")
    return by_split
