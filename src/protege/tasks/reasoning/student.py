"""The ``student`` stage: the prepared teacher with half its decoder layers removed, healed by logit KD.

The student starts as a copy of the prepared teacher keeping every other decoder layer (or the layers
listed), so it shares the teacher's tokenizer, embeddings and head; pruning costs it most of what it could
do, and a short logit-KD training (:class:`protege.train.lm_objectives.LogitKD`, the teacher in memory) on the
teacher's worked solutions heals it. The student is saved under ``artifacts/student/``; its model id names
the teacher it came from and a hash of its weights.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from typing import TYPE_CHECKING, Literal, Union

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.models.prune import prune_layers
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.prepare import solution_examples
from protege.train.lm_objectives import DistillConfig, LogitKD
from protege.train.loop import LoopConfig, train
from protege.train.student import kept_layers, save_causal_lm

if TYPE_CHECKING:
    from protege.stage import StageContext

NAME = "heal"


class StudentStageConfig(Section):
    """How the student is cut from the prepared teacher and healed."""

    keep: Union[Literal["every_other"], list[int]] = Field(
        "every_other", description="Decoder layers of the teacher the student keeps (indices, or every_other).")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="The logit-KD divergence.")
    loop: LoopConfig = Field(description="Steps, batch and learning rate of the healing.")
    max_length: int = Field(256, ge=16, description="Longest prompt + solution, in tokens.")


def run(ctx: "StageContext") -> dict:
    cfg: StudentStageConfig = ctx.config
    teacher, tokenizer = ctx.teacher_weights()
    total = teacher.config.num_hidden_layers
    keep = kept_layers(cfg.keep, total)
    student = prune_layers(copy.deepcopy(teacher), keep).train()
    for p in student.parameters():
        p.requires_grad_(True)
    examples = solution_examples(ctx.run, ctx.require_task(), tokenizer, cfg.max_length)
    result = train(student, LogitKD(teacher, cfg.distill), examples, cfg.loop.model_copy(update={"seed": ctx.seed}),
                   run=ctx.run, name=NAME)
    folder = ctx.run.artifact(tables.STUDENT)
    save_causal_lm(result.model.eval(), tokenizer, folder)
    shutil.rmtree(ctx.run.artifacts / "checkpoints" / NAME, ignore_errors=True)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    summary = {"model_id": f"{ctx.teacher.model_id}-layers{len(keep)}-{digest}", "layers": keep,
               "teacher_layers": total, "examples": len(examples), "steps": result.steps,
               "seconds": round(result.seconds, 1), "final_loss": result.metrics.get("loss")}
    ctx.run.write_json(tables.STUDENT_SUMMARY, summary)
    console.info(f"student: {len(keep)} of {total} layers, healed {result.steps} steps, loss {summary['final_loss']}")
    return summary
