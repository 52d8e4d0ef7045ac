"""The ``student`` stage: the prepared teacher with half its decoder layers removed, healed by logit KD.

The student starts as a copy of the prepared teacher keeping the decoder layers listed (or every other one), so
it shares the teacher's tokenizer, embeddings and head; pruning costs it most of what it could do, and a short
logit-KD training (:class:`protege.train.lm_objectives.LogitKD`, the teacher in memory) on the
teacher's worked solutions heals it. The student is saved under ``artifacts/student/``; its model id names
the teacher it came from and a hash of its weights.

With ``model`` set, the student is that ready causal LM instead, fine-tuned by SFT on the worked solutions: the
route for a teacher that is only served (``teacher.backend: openai``), whose weights are not in this process.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
from typing import TYPE_CHECKING, Literal, Optional, Union

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.models.prune import prune_layers
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.prepare import solution_examples
from protege.train.lm_objectives import SFT, DistillConfig, LogitKD
from protege.train.loop import LoopConfig, train
from protege.train.student import kept_layers, save_causal_lm

if TYPE_CHECKING:
    from protege.stage import StageContext

NAME = "heal"


class StudentStageConfig(Section):
    """How the student is cut from the prepared teacher and healed."""

    model: Optional[str] = Field(None, description="A ready student (embedded name, folder or hub id) trained by "
                                 "SFT on the solutions, instead of pruning the teacher (for a served teacher).")
    keep: Union[Literal["every_other"], list[int]] = Field(
        "every_other", description="Decoder layers of the teacher the student keeps (indices, or every_other).")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="The logit-KD divergence.")
    loop: LoopConfig = Field(description="Steps, batch and learning rate of the healing.")
    max_length: int = Field(256, ge=16, description="Longest prompt + solution, in tokens.")


def run(ctx: "StageContext") -> dict:
    cfg: StudentStageConfig = ctx.config
    if cfg.model is not None:
        from protege.models.zoo import load_causal_lm

        student, tokenizer = load_causal_lm(cfg.model)
        objective, origin, total = SFT(cfg.distill.chunk_size), cfg.model, student.config.num_hidden_layers
        keep = list(range(total))
    else:
        teacher, tokenizer = ctx.teacher_weights()
        total = teacher.config.num_hidden_layers
        keep = kept_layers(cfg.keep, total)
        student = prune_layers(copy.deepcopy(teacher), keep)
        objective, origin = LogitKD(teacher, cfg.distill), ctx.teacher.model_id
    student.train()
    for p in student.parameters():
        p.requires_grad_(True)
    examples = solution_examples(ctx.run, ctx.require_task(), tokenizer, cfg.max_length)
    result = train(student, objective, examples, cfg.loop.model_copy(update={"seed": ctx.seed}), run=ctx.run,
                   name=NAME)
    folder = ctx.run.artifact(tables.STUDENT)
    save_causal_lm(result.model.eval(), tokenizer, folder)
    shutil.rmtree(ctx.run.artifacts / "checkpoints" / NAME, ignore_errors=True)
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()[:12]
    summary = {"model_id": f"{origin}-layers{len(keep)}-{digest}", "layers": keep, "of_layers": total,
               "objective": type(objective).__name__, "examples": len(examples), "steps": result.steps,
               "seconds": round(result.seconds, 1), "final_loss": result.metrics.get("loss")}
    ctx.run.write_json(tables.STUDENT_SUMMARY, summary)
    console.info(f"student: {len(keep)} of {total} layers, healed {result.steps} steps, loss {summary['final_loss']}")
    return summary
