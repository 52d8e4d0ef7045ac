"""The absa family's registry: its task section, its stages in run order, its catalogue."""

from __future__ import annotations

from protege.evaluate.report import report_stage
from protege.stage import Family, Stage
from protege.tasks.absa import annotate, data_stage, evaluate, rationales, refine_stage, report, synthesize, train_stage
from protege.tasks.absa import tables as t
from protege.tasks.absa.task import AbsaTask

FAMILY = Family(
    name="absa",
    description="Aspect-based sentiment: a teacher writes and labels review sentences (DS²-ABSA), the labels "
    "are "
    "refined, and a small tagger learns (aspect term, polarity) pairs.",
    task=AbsaTask,
    outputs=t.OUTPUTS,
    stages=(
        Stage(
            "data",
            data_stage.DataConfig,
            data_stage.run,
            "Gold seed, dev and test sentences (SemEval or files).",
            writes=(*t.SPLITS, t.HARD, t.POOL, t.DATA_SUMMARY),
        ),
        Stage(
            "rationales",
            rationales.RationalesConfig,
            rationales.run,
            "Teacher analyses and rewrites of unlabelled reviews, cleaned and parsed (or an imported file).",
            writes=(t.RATIONALES, t.RATIONALE_SUMMARY),
            teacher=lambda cfg: cfg.mode != "import",
        ),
        Stage(
            "synthesize",
            synthesize.SynthesizeConfig,
            synthesize.run,
            "Synthetic labelled sentences: the teacher's two DS²-ABSA streams, or an imported file.",
            reads=(t.SEED,),
            uses=(t.DEV, t.TEST, t.HARD),
            writes=(t.SYNTHETIC, t.SYNTH_SUMMARY),
            teacher=lambda cfg: cfg.mode != "import",
        ),
        Stage(
            "annotate",
            annotate.AnnotateConfig,
            annotate.run,
            "The teacher scores each aspect's polarity, or writes the pairs of each sentence.",
            reads=(t.SEED,),
            uses=(t.SYNTHETIC, t.POOL, t.DEV),
            writes=(t.ANNOTATED, t.ANNOTATE_SUMMARY, t.ANNOTATE_LOGS),
            sections=("train",),
            teacher=True,
        ),
        Stage(
            "refine",
            refine_stage.RefineStageConfig,
            refine_stage.run,
            "Noisy self-training rounds revise the synthetic labels.",
            reads=(t.SYNTHETIC, t.SEED, t.DEV),
            uses=(t.ANNOTATED,),
            writes=(t.REFINED, t.REFINE_SUMMARY, t.REFINE_LOGS),
            sections=("train",),
        ),
        Stage(
            "train",
            train_stage.TrainConfig,
            train_stage.run,
            "The tagger student on seed + synthetic, and the seed-only baseline (optionally after masked-LM "
            "pre-training on the rationales).",
            reads=(t.SEED, t.DEV),
            uses=(t.SYNTHETIC, t.ANNOTATED, t.REFINED, t.RATIONALES),
            writes=(t.STUDENT, t.SEED_STUDENT, t.TRAINED, t.TRAIN_LOGS, t.PRETRAINED, t.PRETRAIN_LOGS),
        ),
        Stage(
            "evaluate",
            evaluate.EvaluateConfig,
            evaluate.run,
            "Pair/aspect F1, polarity scores and breakdowns on the gold test sentences.",
            reads=(t.TEST, t.TRAINED),
            uses=(
                t.HARD,
                t.STUDENT,
                t.SEED_STUDENT,
                t.SYNTH_SUMMARY,
                t.ANNOTATE_SUMMARY,
                t.REFINE_SUMMARY,
                t.DATA_SUMMARY,
                t.RATIONALE_SUMMARY,
            ),
            writes=(t.METRICS,),
        ),
        report_stage(report.build, reads=(t.METRICS,), writes=(t.REPORT,)),
    ),
)
