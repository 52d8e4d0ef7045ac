"""The reasoning family's registry: its task section, its stages in run order, its catalogue and its checks.

Adding a stage: write its module (a ``Section`` config and ``run(ctx) -> dict``), add its tables to
:mod:`protege.tasks.reasoning.tables`, and add one :class:`Stage` line here.
"""

from __future__ import annotations

from typing import Any

from protege.evaluate.report import report_stage
from protege.stage import Family, Stage
from protege.tasks.reasoning import budget, estimate, evaluate, prepare, problems, report, rl, student, train
from protege.tasks.reasoning import tables as t
from protege.tasks.reasoning.task import ReasoningTask


def check(recipe: Any) -> None:
    """What one section cannot see alone: the budget against the pre-sample, the arms self-training names, the
    problems the RL stage's prompts and held-out KL need."""
    est, alloc, selftrain = (getattr(recipe, n, None) for n in ("estimate", "allocate", "selftrain"))
    rl_cfg, counts = getattr(recipe, "rl", None), getattr(recipe, "problems", None)
    if rl_cfg is not None:
        if rl_cfg.prompts == "boundary" and est is None:
            raise ValueError("rl.prompts: boundary uses the estimate stage's labels: add an 'estimate:' section")
        if rl_cfg.heldout and counts is not None and counts.dev == 0:
            raise ValueError(f"rl.heldout={rl_cfg.heldout} measures the KL to the teacher on dev problems: set "
                             f"problems.dev (e.g. {rl_cfg.heldout}), or rl.heldout: 0")
    if alloc is not None:
        if est is None:
            raise ValueError("allocate re-uses the estimate stage's pre-samples: add an 'estimate:' section")
        if alloc.budget < est.k:
            raise ValueError(f"allocate.budget={alloc.budget} is smaller than estimate.k={est.k}: the pre-samples "
                             f"count toward the budget; raise allocate.budget to at least {est.k} or lower estimate.k")
        if any(a.better == "teacher" for a in alloc.arms) and recipe.teacher is None:
            raise ValueError("allocate.arms asks the teacher for better responses: add a 'teacher:' section")
    if selftrain is not None:
        if alloc is None:
            raise ValueError("selftrain trains on the allocate stage's arms: add an 'allocate:' section")
        unknown = sorted(set(selftrain.arms or []) - {a.name for a in alloc.arms})
        if unknown:
            raise ValueError(f"selftrain.arms names {unknown}, which allocate.arms does not have; use some of "
                             f"{[a.name for a in alloc.arms]}")


FAMILY = Family(
    name="reasoning",
    description="Verifiable reasoning: a prepared teacher, its pruned student, difficulty by sampling, an equal "
                "budget spent uniformly / HS-STaR / DAST, STaR and DPO self-training, GRPO / on-policy KD / KDRL.",
    task=ReasoningTask,
    outputs=t.OUTPUTS,
    check=check,
    stages=(
        Stage("problems", problems.ProblemsConfig, problems.run, "Problems with gold answers, split train/dev/test.",
              writes=(t.PROBLEMS,)),
        Stage("prepare_teacher", prepare.PrepareTeacherConfig, prepare.run,
              "Fine-tune the teacher on the worked solutions (SFT, full or LoRA) before it teaches.",
              reads=(t.PROBLEMS,), writes=(t.TEACHER, t.PREPARE_SUMMARY, t.PREPARE_LOGS), teacher=True,
              adapts_teacher=prepare.prepared_teacher),
        Stage("student", student.StudentStageConfig, student.run,
              "The half-depth student pruned from the prepared teacher, healed by logit KD.",
              reads=(t.PROBLEMS,), uses=(t.TEACHER,), writes=(t.STUDENT, t.STUDENT_SUMMARY, t.STUDENT_LOGS),
              teacher=True),
        Stage("estimate", estimate.EstimateConfig, estimate.run,
              "k samples per training problem from the policy; pass rates and difficulty labels.",
              reads=(t.PROBLEMS,), uses=(t.STUDENT, t.TEACHER), writes=(t.SAMPLES, t.STATS, t.ESTIMATE_SUMMARY),
              teacher=True),
        Stage("allocate", budget.AllocateConfig, budget.run,
              "Arms spending the same budget (uniform, HS-STaR, DAST) on extra samples from one shared pool.",
              reads=(t.SAMPLES, t.STATS), writes=(t.POOL, t.ARMS, t.ALLOCATE_SUMMARY), sections=("estimate",),
              teacher=True),
        Stage("selftrain", train.SelfTrainConfig, train.run,
              "One round of STaR SFT and/or DPO per arm, from the healed student.",
              reads=(t.SAMPLES, t.POOL, t.ARMS), writes=(t.SELFTRAINED, t.SELFTRAIN_SUMMARY, t.SELFTRAIN_LOGS),
              sections=("allocate",)),
        Stage("rl", rl.RLConfig, rl.run,
              "GRPO, on-policy KD and KDRL arms from the healed student at equal steps, with held-out KL.",
              reads=(t.PROBLEMS, t.STUDENT), uses=(t.STATS,), writes=(t.RL, t.RL_SUMMARY, t.RL_LOGS), teacher=True,
              needs=lambda cfg: (t.STATS,) if cfg.prompts == "boundary" else ()),
        Stage("evaluate", evaluate.EvaluateConfig, evaluate.run,
              "Teacher, student, self-trained and RL-trained students on the test problems, with paired intervals.",
              reads=(t.PROBLEMS,), uses=(t.STUDENT, t.SELFTRAIN_SUMMARY, t.RL_SUMMARY, t.ALLOCATE_SUMMARY,
                                         t.ESTIMATE_SUMMARY),
              writes=(t.RESULTS, t.METRICS), teacher=True),
        report_stage(report.build, reads=(t.METRICS,), writes=(t.REPORT,)),
    ),
)
