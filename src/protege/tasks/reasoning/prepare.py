"""The ``prepare_teacher`` stage: fine-tune the teacher on the task's worked solutions, before anything samples.

A small instruct model often cannot do the task as shipped (the embedded SmolLM2-135M scores about 1 % on
GSM8K); SFT on the training problems' worked solutions, on the one training loop (full weights, or LoRA with
``loop.lora``, merged afterwards), gives a teacher that is stronger than its half-depth student, which is the
premise of everything after.

The prepared weights are saved as a transformers folder under ``artifacts/teacher/``. Every later stage gets
them through the run's teacher route (:func:`prepared_teacher` loads them into the loaded teacher, in place),
under the model id ``<base>+sft-<hash of the weights>``, so the ledger never mixes answers of the base teacher,
the prepared one or another preparation.
"""

from __future__ import annotations

import hashlib
import shutil
from typing import TYPE_CHECKING, Any

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.models.hf import HFTeacher
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.task import prompt
from protege.train.lm_data import LMExamples
from protege.train.lm_objectives import SFT
from protege.train.loop import LoopConfig, train
from protege.train.student import save_causal_lm

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.stage import StageContext

NAME = "prepare_teacher"
WEIGHTS = "model.safetensors"


class PrepareTeacherConfig(Section):
    """SFT of an in-process (``hf``) teacher on the training problems' worked solutions."""

    loop: LoopConfig = Field(description="Steps, batch and learning rate; loop.lora trains adapters instead of "
                             "all weights (merged into the saved teacher).")
    max_length: int = Field(256, ge=16, description="Longest prompt + solution, in tokens.")


def solution_examples(run: "Run", task: Any, tokenizer: Any, max_length: int, split: str = "train") -> LMExamples:
    """(prompt, worked solution) sequences of a split's problems that have a solution."""
    rows = run.records.read(tables.PROBLEMS)
    rows = rows[(rows["split"] == split) & (rows["solution"].astype(str).str.strip() != "")]
    if rows.empty:
        raise ValueError(f"no {split} problem has a worked solution, so there is nothing to fine-tune on: use a "
                         f"source with solutions (chain_sum, gsm8k:, a .jsonl with a solution column), or remove "
                         f"the prepare_teacher and student sections and give a ready student")
    prompts = [prompt(task, q) for q in rows["question"]]
    examples = LMExamples.from_pairs(tokenizer, prompts, rows["solution"].tolist(), max_length=max_length)
    if not len(examples):
        raise ValueError(f"every {split} prompt fills max_length={max_length} tokens, leaving no room for its "
                         f"solution: raise max_length")
    return examples


def hf_backend(teacher: Any, why: str) -> HFTeacher:
    if not all(hasattr(teacher, a) for a in ("model", "tokenizer")):
        raise ValueError(f"{why} needs the teacher's weights in this process (teacher.backend: hf); this teacher "
                         f"is {teacher.backend!r}. Remove the section or switch the backend.")
    return teacher


def weights_id(base_id: str, folder: Any) -> str:
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()[:12]
    return f"{base_id}+sft-{digest}"


def prepared_teacher(base: Any, run: "Run") -> HFTeacher:
    """The base teacher with the prepared weights loaded in place, under the weights-hashed model id."""
    from safetensors.torch import load_model

    folder = run.artifacts / tables.TEACHER
    if not (folder / WEIGHTS).exists():
        raise ValueError(f"the recipe prepares the teacher but {folder} holds no weights; "
                         f"run `protege run RECIPE --force prepare_teacher`")
    inner = hf_backend(base, "prepare_teacher")
    model_id = weights_id(inner.model_id.split("+sft-")[0], folder)
    if model_id != inner.model_id:
        load_model(inner.model, str(folder / WEIGHTS))
    console.info(f"prepared teacher {model_id}")
    # The same backend class (a subclass keeps its behaviour), now holding the prepared weights.
    return type(inner)(inner.model.eval(), inner.tokenizer, model_id=model_id, batch_size=inner.batch_size)


def run(ctx: "StageContext") -> dict:
    cfg: PrepareTeacherConfig = ctx.config
    teacher = hf_backend(ctx.route.backend(), "prepare_teacher")
    model, tokenizer = teacher.model, teacher.tokenizer
    examples = solution_examples(ctx.run, ctx.require_task(), tokenizer, cfg.max_length)
    for p in model.parameters():
        p.requires_grad_(cfg.loop.lora is None)
    result = train(model, SFT(), examples, cfg.loop.model_copy(update={"seed": ctx.seed}), run=ctx.run, name=NAME)
    trained = result.model.merge_and_unload() if cfg.loop.lora is not None else result.model
    for p in trained.parameters():
        p.requires_grad_(False)
    trained.eval()
    folder = ctx.run.artifact(tables.TEACHER)
    save_causal_lm(trained, tokenizer, folder)
    shutil.rmtree(ctx.run.artifacts / "checkpoints" / NAME, ignore_errors=True)  # the weights are saved now
    summary = {"model_id": weights_id(teacher.model_id, folder), "base_model": teacher.model_id,
               "examples": len(examples), "steps": result.steps, "seconds": round(result.seconds, 1),
               "final_loss": result.metrics.get("loss"), "lora": cfg.loop.lora is not None}
    ctx.run.write_json(tables.PREPARE_SUMMARY, summary)
    console.info(f"prepare_teacher: {result.steps} steps on {len(examples)} solutions, loss "
                 f"{summary['final_loss']}, {summary['model_id']}")
    return summary
