"""The ``train`` stage for classification: the student on the teacher's labels, and the students it is compared with.

Writes ``artifacts/student/`` (the student, the weights with the best dev accuracy against
``train.dev_target``), and when the recipe asks, ``artifacts/students/gold_seed_student/`` (same trainer, gold
seed labels only) and ``artifacts/students/curve-<n>/`` (trained on the first n of a fixed shuffle of the
training texts, for the report's learning curve). ``artifacts/train.json`` lists them with what each was trained on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from protege.core.errors import UserError
from protege.core import console
from protege.core.run import Run
from protege.tasks.classify import inputs
from protege.tasks.classify.student import ClassifierTrainConfig, Examples, fit, save_student
from protege.tasks.classify import tables

if TYPE_CHECKING:
    from protege.stage import StageContext

STUDENT, GOLD_SEED = tables.STUDENT, tables.GOLD_SEED


def training_examples(run: Run, config: ClassifierTrainConfig, labels: list[str]) -> tuple[Examples, int]:
    """Teacher-labelled examples (plus the gold seed, repeated, when ``use_gold``) and how many are teacher-labelled."""
    if config.train_table is None:
        teacher = Examples.from_labels([], [], len(labels))
    else:
        teacher = inputs.teacher_examples(inputs.training_table(run, config.train_table), config.targets, labels)
    if not config.use_gold:
        return teacher, len(teacher)
    seed = inputs.gold_seed(run, len(labels))
    if not len(seed):
        console.warn("train.use_gold is set but the run has no gold seed (data.seed_size); training on teacher labels only",
                     code="no_gold_seed")
    repeated = seed.subset(np.tile(np.arange(len(seed)), config.gold_repeats)) if len(seed) else seed
    return teacher + repeated, len(teacher)


def train_and_save(ctx: "StageContext", name: str, examples: Examples, folder: tuple[str, ...],
                   info: dict[str, Any], cfg: ClassifierTrainConfig | None = None) -> dict[str, Any]:
    """Fit one student, save it under ``artifacts/<folder>``, drop its resume checkpoints; returns its entry."""
    cfg = cfg or ctx.config
    labels = ctx.require_task().labels
    dev_texts, dev_labels, whose = inputs.dev_targets(ctx.run, cfg.dev_target)
    fitted = fit(cfg, examples, dev_texts, dev_labels, labels, run=ctx.run, name=name, seed=ctx.seed)
    target = ctx.run.artifact(*folder)
    entry = {"path": str(target.relative_to(ctx.run.artifacts)), "examples": len(examples), **info,
             "base_model": cfg.student,
             "steps": fitted.result.steps, "best_dev_accuracy": fitted.result.best, "dev_target": whose,
             "stopped_early": fitted.result.stopped_early, "seconds": round(fitted.result.seconds, 1)}
    save_student(fitted.model, fitted.tokenizer, target, labels=labels, info={**entry, "max_length": cfg.max_length})
    against = "gold labels" if whose == "gold" else "the teacher's labels"
    agreement = (f", best dev accuracy against {against} {fitted.result.best:.1%}" if fitted.result.best is not None
                 else "")
    console.info(f"train: {name}: {len(examples)} examples, {fitted.result.steps} steps{agreement}")
    return entry


def same_steps(cfg: ClassifierTrainConfig, examples: int, seed_examples: int) -> ClassifierTrainConfig:
    """The trainer for the gold-seed baseline, as many optimizer steps long as the student's.

    A hundred gold texts are three or four steps per epoch: with the student's epochs the baseline would stop
    after about ten steps, under-trained, and flatter the student. Early stopping still picks its best weights.
    """
    if cfg.loop.epochs is None:
        return cfg
    epochs = cfg.loop.epochs * examples / max(seed_examples, 1)
    return cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"epochs": epochs})})


def run(ctx: "StageContext") -> dict[str, Any]:
    cfg: ClassifierTrainConfig = ctx.config
    task = ctx.require_task()
    if task is None:
        raise UserError("stage 'train' needs a 'task:' section: the labels the student predicts")
    labels = task.labels
    examples, n_teacher = training_examples(ctx.run, cfg, labels)
    gold_rows = len(examples) - n_teacher
    gold = {"gold": gold_rows // cfg.gold_repeats, "gold_repeats": cfg.gold_repeats} if gold_rows else {"gold": 0}
    students = {STUDENT: train_and_save(ctx, STUDENT, examples, (STUDENT,), {"teacher_labelled": n_teacher, **gold})}
    if cfg.gold_seed_baseline:
        seed = inputs.gold_seed(ctx.run, len(labels))
        if len(seed):
            students[GOLD_SEED] = train_and_save(ctx, GOLD_SEED, seed, (tables.STUDENTS, GOLD_SEED),
                                                 {"teacher_labelled": 0, "gold": len(seed)},
                                                 same_steps(cfg, len(examples), len(seed)))
        else:
            console.warn("train.gold_seed_baseline: the run has no gold seed (data.seed_size: 0); no baseline trained",
                         code="no_gold_seed_baseline")
    teacher_part = examples.subset(range(n_teacher))
    gold_part = examples.subset(range(n_teacher, len(examples)))
    order = np.random.default_rng(ctx.seed).permutation(n_teacher)
    for fraction in sorted(set(cfg.learning_curve)):
        n = int(round(fraction * n_teacher))
        if not 0 < n < n_teacher:
            continue
        name = f"curve-{n}"
        students[name] = train_and_save(ctx, name, teacher_part.subset(order[:n]) + gold_part, (tables.STUDENTS, name),
                                        {"teacher_labelled": n, **gold})
    ctx.run.write_json(tables.TRAINED, {"students": students, "targets": cfg.targets, "use_gold": cfg.use_gold})
    return {name: {"examples": s["examples"], "best_dev_accuracy": s["best_dev_accuracy"]} for name, s in students.items()}
