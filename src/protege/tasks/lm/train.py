"""The ``train_lm`` stage: a student LM learns from the teacher's answers (``responses`` table) with one objective.

Objectives: ``sft`` (cross-entropy on the teacher's responses: sequence-level KD), ``logit_kd`` (the teacher in
memory, any divergence, optionally on-policy), ``cached_kd`` (the teacher's top-k from the ``cache_logits``
stage; no teacher in memory). ``compare_sft: true`` also trains an SFT-only student with the same loop settings,
so the report can show what the teacher's distributions add at equal steps.

Each student is saved to ``artifacts/students/<variant>/`` (a plain transformers folder; LoRA merged) and listed
in ``artifacts/train_lm.json`` for the ``evaluate_lm`` stage. A variant whose folder exists is not trained again;
an interrupted one resumes from its last checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, model_validator

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import Section
from protege.tasks.lm import tables
from protege.train.lm_objectives import DistillConfig
from protege.train.loop import LoopConfig
from protege.train.rollouts import OnPolicyConfig
from protege.train.student import StudentConfig
from protege.evaluate.lm_metrics import response_fit
from protege.train.lm_data import LMExamples
from protege.train.lm_objectives import SFT, CachedKD, LogitKD
from protege.train.loop import train
from protege.train.preflight import check_token_kd
from protege.train.rollouts import OnPolicySource
from protege.train.student import load_student, save_causal_lm

if TYPE_CHECKING:
    from protege.stage import StageContext
    from protege.core.run import Run


class TrainLMConfig(Section):
    """How the student LM is trained on the teacher's answers."""

    student: StudentConfig = Field(default_factory=StudentConfig, description="The student model.")
    objective: Literal["sft", "logit_kd", "cached_kd"] = Field(
        "logit_kd", description="sft: cross-entropy on the responses; logit_kd: divergence to the teacher in "
        "memory; cached_kd: divergence to the cached teacher top-k (needs a cache_logits stage).")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="Divergence and loss weights (KD).")
    on_policy: Optional[OnPolicyConfig] = Field(
        None, description="Roll out the student on a share of the batches (logit_kd only).")
    compare_sft: bool = Field(False, description="Also train an SFT-only student with the same loop settings.")
    loop: LoopConfig = Field(description="Steps, batch, optimiser, evaluation and checkpoints.")
    max_length: int = Field(512, ge=2, description="Longest prompt + response, in tokens; longer ones are cut.")
    splits: list[str] = Field(["train"], min_length=1, description="Splits of the responses table to train on.")
    eval_split: str = Field("dev", description="Split scored every loop.eval_every steps (NLL, KL to the teacher).")
    eval_examples: int = Field(32, ge=1, description="Held-out responses scored at each evaluation.")
    teacher_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Weights dtype of the in-memory teacher (logit_kd); it only runs forward.")

    @model_validator(mode="after")
    def _consistent(self) -> "TrainLMConfig":
        if self.on_policy is not None and self.objective != "logit_kd":
            raise ValueError(f"on_policy with objective {self.objective!r}: the teacher must score the student's "
                             "own continuations, so on-policy KD needs objective: logit_kd")
        return self


def variants(cfg: TrainLMConfig) -> list[str]:
    main = "on_policy_kd" if cfg.on_policy is not None else cfg.objective
    return [main, "sft"] if cfg.compare_sft and main != "sft" else [main]


def _vocab(model: Any) -> int:
    return model.get_output_embeddings().weight.shape[0]


def _pairs(frame) -> tuple[list[str], list[str]]:
    return frame["prompt"].astype(str).tolist(), frame["response"].astype(str).tolist()


def train_variant(ctx: "StageContext", name: str, teacher: Optional[tuple[Any, Any]]) -> dict:
    cfg: TrainLMConfig = ctx.config
    student, tokenizer = load_student(cfg.student, ctx.teacher_model)
    responses = ctx.run.records.read(tables.RESPONSES)
    if responses.empty:
        raise UserError("train_lm needs the teacher's answers: add 'prompts' and 'respond' stages before it")
    train_rows = responses[responses["split"].isin(cfg.splits)]
    if train_rows.empty:
        raise UserError(f"no response is in the splits {cfg.splits}; the responses table has splits "
                         f"{sorted(responses['split'].unique())}")
    if name != "sft" and teacher is not None:
        check_token_kd(teacher[1], tokenizer, teacher_logit_width=_vocab(teacher[0]), student_logit_width=_vocab(student))
    examples = LMExamples.from_pairs(tokenizer, *_pairs(train_rows), max_length=cfg.max_length)

    if name == "sft":
        objective: Any = SFT(cfg.distill.chunk_size)
        source: Any = examples
    elif name == "cached_kd":
        from protege.tasks.lm.cache_logits import cache_dir
        from protege.train.cached_source import CachedTeacherSource

        objective = CachedKD(cfg.distill)
        source = CachedTeacherSource.open(cache_dir(ctx.run), tokenizer, _vocab(student),
                                          temperature=cfg.distill.temperature)
    else:
        objective = LogitKD(teacher[0], cfg.distill)
        source = examples
        if cfg.on_policy is not None:
            source = OnPolicySource(examples, student, cfg.on_policy, eos_id=tokenizer.eos_token_id)

    evaluate = None
    held_out = responses[responses["split"] == cfg.eval_split].head(cfg.eval_examples)
    if cfg.loop.eval_every is not None and not held_out.empty:
        dev = LMExamples.from_pairs(tokenizer, *_pairs(held_out), max_length=cfg.max_length)
        evaluate = lambda model: response_fit(model, teacher[0] if teacher else None, dev)  # noqa: E731

    console.info(f"train_lm: {name} on {len(source)} examples, {cfg.loop.steps or cfg.loop.epochs} "
                 f"{'steps' if cfg.loop.steps else 'epochs'}")
    result = train(student, objective, source, cfg.loop, run=ctx.run, evaluate=evaluate, name=name)
    target = ctx.run.artifact(tables.STUDENTS, name)
    save_causal_lm(result.model, tokenizer, target)
    return {"path": str(target), "steps": result.steps, "seconds": round(result.seconds, 1),
            "seconds_per_step": result.metrics.get("seconds_per_step"), "final_loss": result.metrics.get("loss"),
            "stopped_early": result.stopped_early, "evaluations": result.evaluations}


def trained_students(run: "Run") -> dict[str, dict]:
    """Variants the ``train_lm`` stage has saved, by name."""
    path = run.artifacts / tables.TRAINED
    return run.read_json(tables.TRAINED)["students"] if path.exists() else {}


def run(ctx: "StageContext") -> dict:
    cfg: TrainLMConfig = ctx.config
    names = variants(cfg)
    needs_teacher = any(n in ("logit_kd", "on_policy_kd") for n in names) or cfg.loop.eval_every is not None
    teacher = ctx.teacher_weights(cfg.teacher_dtype) if needs_teacher and ctx.route is not None else None
    done = trained_students(ctx.run)
    for name in names:
        if name in done and (ctx.run.artifacts / tables.STUDENTS / name / "config.json").exists():
            console.info(f"[dim]train_lm: {name} already trained, skipped[/dim]")
            continue
        done[name] = train_variant(ctx, name, teacher)
        ctx.run.write_json(tables.TRAINED, {"students": done})
    return {name: {k: done[name][k] for k in ("steps", "seconds", "final_loss")} for name in names}
