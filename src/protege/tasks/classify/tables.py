"""The classification family's run-directory catalogue: every table and artifact its stages read or write.

Stages name tables and artifacts through these constants, never through string literals, and the family's
registry (:mod:`protege.tasks.classify`) declares which stage writes and reads each, so ``protege inspect``
can say who produced what and the pipeline knows which stage feeds which.
"""

from __future__ import annotations

from protege.stage import Output, training_files

# record tables
POOL, SEED, DEV, TEST = "pool", "seed", "dev", "test"
SPLITS = (POOL, SEED, DEV, TEST)
ANNOTATED = "annotated"
STUDENT_POOL = "student_pool"
SELECTED = "selected"
AUGMENTED = "augmented"
ICL = "icl"

# artifacts (paths under artifacts/)
DATA_SUMMARY = "data.json"
TEACHER_ADAPTER = "teacher_adapter"
PREPARE_SUMMARY = "prepare_teacher.json"
ANNOTATE_SUMMARY = "annotate.json"
SELECT_SUMMARY = "select.json"
STUDENT = "student"  # the distilled student's folder, and its name in train.json
GOLD_SEED = "gold_seed_student"
STUDENTS = "students"  # the folder of the comparison students
TRAINED = "train.json"
AUGMENT_SUMMARY = "augment.json"
METRICS = "metrics.json"
ICL_SUMMARY = "icl.json"
MODEL_CARD = "model_card"
REPORT = "report"

_TEXT = ("id", "text", "split", "gold_label", "gold_index")

OUTPUTS = (
    Output(POOL, "table", "unlabelled texts the teacher annotates and the student may learn from", _TEXT),
    Output(SEED, "table", "the small gold-labelled seed set", _TEXT),
    Output(DEV, "table", "gold dev texts: calibration choice and early stopping", _TEXT),
    Output(TEST, "table", "gold test texts: the final comparison", _TEXT),
    Output(DATA_SUMMARY, "artifact", "split sizes and label counts", path=DATA_SUMMARY),
    Output(TEACHER_ADAPTER, "artifact", "LoRA adapter of the prepared teacher", path=TEACHER_ADAPTER),
    Output(PREPARE_SUMMARY, "artifact", "teacher preparation history", path=PREPARE_SUMMARY),
    Output(ANNOTATED, "table", "the teacher's calibrated label distribution for every pool, dev and test text",
           ("id", "text", "split", "raw_scores", "teacher_probs", "teacher_index", "teacher_label",
            "teacher_confidence", "teacher_entropy", "candidates", "calibration")),
    Output(ANNOTATE_SUMMARY, "artifact", "calibration variants and their gold scores", path=ANNOTATE_SUMMARY),
    Output(ICL, "table", "zero-shot, plain-ICL and feedback-ICL teacher labels of the texts icl.tables names",
           ("id", "text", "split", "method", "teacher_probs", "teacher_label", "prompt_tokens", "fills")),
    Output(ICL_SUMMARY, "artifact", "the training-free teacher baselines on gold labels, with their prompt cost",
           path=ICL_SUMMARY),
    Output(STUDENT_POOL, "table", "the first-round student's probabilities on the pool", ("id", "student_probs")),
    Output(SELECTED, "table", "the annotated texts the student learns from", ("id", "text", "teacher_probs", "reason")),
    Output(SELECT_SUMMARY, "artifact", "selection strategy and label counts", path=SELECT_SUMMARY),
    Output(STUDENT, "artifact", "the distilled student (a transformers folder)", path=STUDENT),
    Output(STUDENTS, "artifact", "comparison students: gold seed only, learning curve", path=STUDENTS),
    Output(TRAINED, "artifact", "every trained student and what it learnt from", path=TRAINED),
    Output(AUGMENTED, "table", "teacher-written examples modelled on the student's errors",
           ("id", "text", "parent_id", "round", "teacher_probs")),
    Output(AUGMENT_SUMMARY, "artifact", "augmentation rounds and their dev scores", path=AUGMENT_SUMMARY),
    Output(METRICS, "artifact", "teacher, student and baselines on gold test data", path=METRICS),
    Output(MODEL_CARD, "artifact", "the student's model card (README.md in its folder)", path=f"{STUDENT}/README.md"),
    Output(REPORT, "artifact", "report.html, report.md and its plots", path="report*"),
)
FIRST_STUDENT_LOGS, TRAIN_LOGS, AUGMENT_LOGS = "first_student_logs", "train_logs", "augment_logs"
OUTPUTS += (
    Output(FIRST_STUDENT_LOGS, "artifact", "checkpoints and training metrics of the first student",
           path=training_files("first_student")),
    Output(TRAIN_LOGS, "artifact", "checkpoints and training metrics of the students train fits",
           path=training_files(STUDENT, GOLD_SEED, "curve-*")),
    Output(AUGMENT_LOGS, "artifact", "checkpoints and training metrics of the augmentation rounds' students",
           path=training_files("augment-*")),
)
PREPARE_LOGS = "prepare_teacher_logs"
OUTPUTS += (Output(PREPARE_LOGS, "artifact", "checkpoints and training metrics of teacher preparation",
                   path=training_files("prepare_teacher")),)
