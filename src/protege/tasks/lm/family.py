"""The language-model family's registry: its stages in run order and its catalogue.

Adding a stage: write its module (a ``Section`` config and ``run(ctx) -> dict``), add its tables to
:mod:`protege.tasks.lm.tables`, and add one :class:`Stage` line here.
"""

from __future__ import annotations

from protege.evaluate.report import report_stage
from protege.stage import Family, Stage
from protege.tasks.lm import cache_logits, evaluate, prompts, report, respond, train
from protege.tasks.lm import tables as t

FAMILY = Family(
    name="lm",
    description="A student language model learns from a teacher's answers (SFT) and distributions (logit KD).",
    task=None,
    outputs=t.OUTPUTS,
    stages=(
        Stage("prompts", prompts.PromptsConfig, prompts.run, "Instructions for the teacher to answer.",
              writes=(t.PROMPTS,)),
        Stage("respond", respond.RespondConfig, respond.run,
              "The teacher answers the prompts: the data of sequence-level KD.",
              reads=(t.PROMPTS,), writes=(t.RESPONSES, t.MESSAGES), teacher=True),
        Stage("cache_logits", cache_logits.CacheLogitsConfig, cache_logits.run,
              "Store the teacher's top-k log-probabilities over the responses, for logit KD without it.",
              reads=(t.RESPONSES,), writes=(t.LOGIT_CACHE,), teacher=True),
        Stage("train_lm", train.TrainLMConfig, train.run,
              "Train student LMs on the teacher's answers: SFT, logit KD, cached KD, on-policy KD.",
              reads=(t.RESPONSES,), uses=(t.LOGIT_CACHE,), writes=(t.STUDENTS, t.TRAINED, t.TRAIN_LOGS),
              teacher=True),
        Stage("evaluate_lm", evaluate.EvaluateLMConfig, evaluate.run,
              "Student LMs against the teacher on held-out prompts.",
              reads=(t.RESPONSES, t.PROMPTS, t.TRAINED), uses=(t.STUDENTS,), writes=(t.METRICS,),
              sections=("train_lm",), teacher=True),
        report_stage(report.build, reads=(t.METRICS,), writes=(t.REPORT,)),
    ),
)
