"""The ``first_student`` stage: a first-round student whose pool probabilities let ``select`` use LLKD.

LLKD keeps texts the teacher is sure about and the student is not, so the student must exist before selection:
this stage trains one (with the recipe's ``train`` settings) on a random sample of the annotated pool, then
writes its label probabilities for every pool text to the table ``select.student_table`` reads
(``student_pool``: ``id``, ``student_probs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from protege.core.section import Section
from protege.tasks.classify import tables
from protege.tasks.classify import inputs
from protege.tasks.classify.student import fit, predict_probs

if TYPE_CHECKING:
    from protege.stage import StageContext


class FirstStudentConfig(Section):
    """A quick student trained before selection, for the llkd selection strategy."""

    examples: int = Field(200, ge=1, description="Annotated pool texts, drawn at random, the first student learns from.")
    epochs: float = Field(2.0, gt=0, description="Passes over them (the train section gives every other setting).")


def run(ctx: "StageContext") -> dict[str, Any]:
    cfg: FirstStudentConfig = ctx.config
    train_cfg, labels = inputs.train_settings(ctx, "uses the train section's settings")
    pool = inputs.annotated_split(ctx.run, tables.POOL)
    rng = np.random.default_rng(ctx.seed)
    sample = pool.iloc[np.sort(rng.permutation(len(pool))[: cfg.examples])]
    dev_texts, dev_labels, _ = inputs.dev_targets(ctx.run, train_cfg.dev_target)
    loop = train_cfg.loop.model_copy(update={"epochs": cfg.epochs, "steps": None})
    fitted = fit(train_cfg.model_copy(update={"loop": loop}),
                 inputs.teacher_examples(sample, train_cfg.targets, labels), dev_texts, dev_labels, labels,
                 run=ctx.run, name="first_student", seed=ctx.seed)
    probs = predict_probs(fitted.model, fitted.tokenizer, pool["text"].tolist(), max_length=train_cfg.max_length)
    rows = [{"id": i, "student_probs": [float(x) for x in p]} for i, p in zip(pool["id"], probs)]
    ctx.run.records.replace(tables.STUDENT_POOL, rows, stage=ctx.name)
    agreement = float((probs.argmax(1) == pool["teacher_index"].to_numpy()).mean())
    return {"trained_on": len(sample), "pool": len(rows), "pool_agreement_with_teacher": round(agreement, 4)}
