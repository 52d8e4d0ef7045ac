"""The ``select`` stage: keep at most ``budget`` annotated pool texts to train on, each with why it was kept.

Reads the ``pool`` rows of ``annotated`` and writes the ``selected`` table (the annotated columns plus
``reason``, ``selection_rank`` and ``strategy``) and ``artifacts/select.json``. The ``llkd`` strategy also
needs a first-round student's label probabilities for the pool: a table (``student_table``) with columns
``id`` and ``student_probs``, written by a training stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import Section
from protege.tasks.classify import tables
from protege.tasks.classify.inputs import gold_seed
from protege.tasks.classify import strategies

if TYPE_CHECKING:
    from protege.stage import StageContext


class SelectConfig(Section):
    """How many annotated texts the student learns from, and which."""

    budget: int = Field(ge=1, description="Most texts to keep.")
    strategy: Literal["random", "confidence", "llkd", "balanced"] = Field(
        "balanced",
        description="random; confidence (teacher surest first); llkd (teacher sure, first-round student "
        "unsure); balanced (the most confident texts of each teacher label, a quota per label set by "
        "class_prior).",
    )
    class_prior: Literal["uniform", "seed"] = Field(
        "uniform",
        description="balanced: each label's share of the budget. uniform: equal shares, so a teacher that "
        "over-predicts one label cannot fill the budget with it; seed: the label shares of the gold seed "
        "(uses its gold labels), for data whose classes are far from even.",
    )
    min_confidence: float = Field(
        0.0, ge=0, le=1, description="Texts whose teacher confidence is below this are never kept."
    )
    llkd_min_teacher_confidence: Optional[float] = Field(
        None, ge=0, le=1,
        description="llkd: teacher confidence a text needs; default: the median of its teacher label.",
    )
    student_table: str = Field(
        tables.STUDENT_POOL,
        description="llkd: table with the first-round student's student_probs for each pool id.",
    )


def _student_probs(ctx: "StageContext", cfg: SelectConfig, ids: list[str]) -> np.ndarray:
    table = ctx.run.records.read(cfg.student_table)
    if not len(table) or "student_probs" not in table.columns:
        raise UserError(
            f"select.strategy llkd needs a first-round student's probabilities in table "
            f"{cfg.student_table!r} (columns id, student_probs); the run has {ctx.run.records.tables()}"
        )
    by_id = dict(zip(table["id"], table["student_probs"]))
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise UserError(f"table {cfg.student_table!r} lacks student_probs for {len(missing)} pool ids "
                         f"(e.g. {missing[:3]}); predict on the whole pool before selecting")
    return np.stack([np.asarray(by_id[i], dtype=np.float64) for i in ids])


def _prior(ctx: "StageContext", cfg: SelectConfig) -> Optional[np.ndarray]:
    if cfg.class_prior == "uniform":
        return None

    seed = gold_seed(ctx.run, len(ctx.require_task().labels))
    if not len(seed):
        raise UserError("select.class_prior: seed takes the label shares of the gold seed, but the run has no "
                         "gold seed; set data.seed_size (e.g. 100) or use class_prior: uniform")
    return np.bincount(seed.labels, minlength=seed.num_labels) / len(seed)


def run(ctx: "StageContext") -> dict:
    cfg: SelectConfig = ctx.config
    task = ctx.require_task()
    annotated = ctx.run.records.read(tables.ANNOTATED)
    if not len(annotated) or "teacher_probs" not in annotated.columns:
        raise UserError("select needs the teacher's labels: run stage annotate first (no 'annotated' table)")
    pool = annotated[annotated["split"] == tables.POOL]
    pool = pool[pool["teacher_confidence"] >= cfg.min_confidence].reset_index(drop=True)
    if not len(pool):
        raise UserError(
            f"select: no pool text has teacher confidence >= {cfg.min_confidence}; lower min_confidence"
        )
    confidence = pool["teacher_confidence"].to_numpy(dtype=np.float64)
    if cfg.strategy == "random":
        picks = strategies.random_subset(len(pool), cfg.budget, ctx.seed)
    elif cfg.strategy == "confidence":
        picks = strategies.most_confident(confidence, cfg.budget)
    elif cfg.strategy == "balanced":
        labels = pool["teacher_index"].to_numpy()
        picks = strategies.class_balanced(labels, confidence, cfg.budget, task.labels, _prior(ctx, cfg))
    else:
        teacher = np.stack([np.asarray(p, dtype=np.float64) for p in pool["teacher_probs"]])
        student = _student_probs(ctx, cfg, pool["id"].tolist())
        picks = strategies.llkd(teacher, student, cfg.budget,
                                min_teacher_confidence=cfg.llkd_min_teacher_confidence)
    rows = []
    for rank, pick in enumerate(picks, 1):
        row = pool.iloc[pick.index].to_dict()
        row.update(reason=pick.reason, selection_rank=rank, strategy=cfg.strategy, stage=ctx.name)
        for key in ("raw_scores",):
            row[key] = [list(map(float, r)) for r in row[key]]
        for key in ("teacher_logprobs", "teacher_probs", "candidates"):
            row[key] = list(row[key])
        rows.append(row)
    ctx.run.records.replace(tables.SELECTED, rows, stage=ctx.name)

    kept = pool.iloc[[p.index for p in picks]]
    gold = kept["gold_index"].fillna(-1).astype(int)
    known = gold >= 0
    summary = {
        "strategy": cfg.strategy, "budget": cfg.budget, "kept": len(rows), "pool": len(pool),
        "teacher_labels": {label: int((kept["teacher_label"] == label).sum()) for label in task.labels},
        "mean_teacher_confidence": round(float(kept["teacher_confidence"].mean()), 4) if len(kept) else None,
        # Diagnostic only (pool gold never trains anything): how often the kept teacher labels are right.
        "teacher_accuracy_on_kept": round(float((gold[known] == kept["teacher_index"][known]).mean()), 4)
        if known.any() else None,
    }
    ctx.run.write_json(tables.SELECT_SUMMARY, summary)
    console.info(f"select: kept {len(rows)} of {len(pool)} pool texts ({cfg.strategy}); teacher labels "
                 f"{summary['teacher_labels']}")
    return summary
