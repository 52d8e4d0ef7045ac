"""The classification family's registry: its task section, its stages in run order, its catalogue.

Adding a stage: write its module (a ``Section`` config and ``run(ctx) -> dict``), add its tables to
:mod:`protege.tasks.classify.tables`, and add one :class:`Stage` line here.
"""

from __future__ import annotations

from protege.evaluate.report import report_stage
from protege.stage import Family, Stage
from protege.tasks.classify import annotate, augment, data, deploy, evaluate, first_student, icl, prepare, report, select, train
from protege.tasks.classify import tables as t
from protege.tasks.classify.student import ClassifierTrainConfig
from protege.tasks.classify.task import ClassificationTask

FAMILY = Family(
    name="classification",
    description="A teacher labels texts; a small encoder classifier learns its calibrated label distributions.",
    task=ClassificationTask,
    outputs=t.OUTPUTS,
    student=deploy.load,
    stages=(
        Stage("data", data.DataConfig, data.run,
              "Texts to classify and their pool/seed/dev/test split.",
              writes=(*t.SPLITS, t.DATA_SUMMARY)),
        Stage("prepare_teacher", prepare.PrepareTeacherConfig, prepare.run,
              "Fine-tune the teacher (LoRA) on the gold seed set before it annotates.",
              reads=(t.SEED,), writes=(t.TEACHER_ADAPTER, t.PREPARE_SUMMARY, t.PREPARE_LOGS), teacher=True,
              adapts_teacher=prepare.prepared_teacher),
        Stage("annotate", annotate.AnnotateConfig, annotate.run,
              "The teacher's calibrated label distribution for every pool, dev and test text.",
              reads=(t.POOL,), uses=(t.DEV, t.TEST, t.TEACHER_ADAPTER), writes=(t.ANNOTATED, t.ANNOTATE_SUMMARY),
              teacher=True),
        Stage("icl", icl.IclConfig, icl.run,
              "Training-free teacher baselines on gold data: zero-shot, plain ICL and feedback-driven ICL.",
              needs=lambda cfg: cfg.reads(), writes=(t.ICL, t.ICL_SUMMARY), teacher=True),
        Stage("first_student", first_student.FirstStudentConfig, first_student.run,
              "A quick student trained before selection; its pool probabilities drive select.strategy llkd.",
              reads=(t.ANNOTATED,), writes=(t.STUDENT_POOL, t.FIRST_STUDENT_LOGS), sections=("train",)),
        Stage("select", select.SelectConfig, select.run, "Which annotated texts the student learns from.",
              reads=(t.ANNOTATED,), uses=(t.STUDENT_POOL, t.SEED), writes=(t.SELECTED, t.SELECT_SUMMARY)),
        Stage("train", ClassifierTrainConfig, train.run,
              "The student classifier trained on the teacher's labels (and the students it is compared with).",
              reads=(t.ANNOTATED,), uses=(t.SELECTED, t.SEED), needs=lambda cfg: (cfg.train_table,) if cfg.train_table else (),
              writes=(t.STUDENT, t.STUDENTS, t.TRAINED, t.TRAIN_LOGS)),
        Stage("augment", augment.AugmentConfig, augment.run,
              "Rounds of teacher-written examples modelled on the student's dev errors, then retraining.",
              reads=(t.TRAINED, t.STUDENT, t.ANNOTATED, t.ANNOTATE_SUMMARY), uses=(t.SELECTED, t.SEED),
              writes=(t.AUGMENTED, t.AUGMENT_SUMMARY, t.STUDENT, t.TRAINED, t.AUGMENT_LOGS),
              sections=("train",), teacher=True),
        Stage("evaluate", evaluate.EvaluateConfig, evaluate.run,
              "Teacher, student and baselines on the gold test split: quality, agreement, calibration, speed.",
              reads=(t.ANNOTATED, t.TRAINED),
              uses=(t.STUDENT, t.STUDENTS, t.ANNOTATE_SUMMARY, t.TEACHER_ADAPTER, t.ICL, t.ICL_SUMMARY),
              writes=(t.METRICS, t.MODEL_CARD), teacher=True),
        report_stage(report.build, reads=(t.METRICS,), writes=(t.REPORT,)),
    ),
)
