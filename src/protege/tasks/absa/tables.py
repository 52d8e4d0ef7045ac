"""The absa family's run-directory catalogue: every table and artifact its stages read or write.

Labels are stored as JSON text of ``[{"from", "to", "target", "polarity"}]`` (the SemEval shape) so a table
round-trips through Parquet unchanged; :mod:`protege.tasks.absa.rows` converts.
"""

from __future__ import annotations

from protege.stage import Output, training_files

# record tables
SEED, DEV, TEST, HARD, POOL = "seed", "dev", "test", "hard_test", "pool"
SPLITS = (SEED, DEV, TEST)
SYNTHETIC = "synthetic"
ANNOTATED = "annotated"
REFINED = "refined"
RATIONALES = "rationales"

# artifacts (paths under artifacts/)
DATA_SUMMARY = "data.json"
SYNTH_SUMMARY = "synthesize.json"
ANNOTATE_SUMMARY = "annotate.json"
REFINE_SUMMARY = "refine.json"
RATIONALE_SUMMARY = "rationales.json"
PRETRAINED = "pretrained_encoder"
STUDENT = "student"
SEED_STUDENT = "seed_student"
TRAINED = "train.json"
METRICS = "metrics.json"
REPORT = "report"
REFINE_LOGS, TRAIN_LOGS, ANNOTATE_LOGS = "refine_logs", "train_logs", "annotate_logs"
PRETRAIN_LOGS = "pretrain_logs"

_GOLD = ("id", "sentence", "split", "aspects")

OUTPUTS = (
    Output(SEED, "table", "the small gold-labelled seed set the synthesis starts from", _GOLD),
    Output(DEV, "table", "gold dev sentences: early stopping and refinement checks", _GOLD),
    Output(TEST, "table", "gold test sentences: the final scores", _GOLD),
    Output(
        HARD,
        "table",
        "the harder gold test sentences (implicit or mixed sentiment), when the dataset has them",
        _GOLD,
    ),
    Output(POOL, "table", "unlabelled sentences annotate may label (aspects column empty)", _GOLD),
    Output(
        DATA_SUMMARY, "artifact", "split sizes, polarity counts and the data issues found", path=DATA_SUMMARY
    ),
    Output(
        SYNTHETIC,
        "table",
        "teacher-written (or imported) sentences with provenance and labels",
        (
            "id",
            "sentence",
            "stream",
            "method",
            "parents",
            "raw_label",
            "aspects",
            "published",
            "teacher",
            "prompt_hash",
        ),
    ),
    Output(
        SYNTH_SUMMARY, "artifact", "synthesis budget use, drops and parse/grounding rates", path=SYNTH_SUMMARY
    ),
    Output(
        RATIONALES,
        "table",
        "teacher analyses and rewrites of unlabelled reviews: raw, cleaned, parsed opinions, overall polarity",
        ("id", "review_id", "review", "rating", "kind", "raw", "text", "cut", "usable", "parsed", "opinions",
         "overall", "teacher", "prompt_hash"),
    ),
    Output(
        RATIONALE_SUMMARY,
        "artifact",
        "per teacher: rationale kinds, cuts, parse rate and agreement with the star ratings",
        path=RATIONALE_SUMMARY,
    ),
    Output(
        ANNOTATED,
        "table",
        "teacher labels for synthetic or pool sentences (polarity distributions or pairs)",
        ("id", "sentence", "aspects", "distributions", "candidates", "mode", "teacher", "prompt_hash"),
    ),
    Output(
        ANNOTATE_SUMMARY,
        "artifact",
        "annotation mode, calibration, agreement and generation rates",
        path=ANNOTATE_SUMMARY,
    ),
    Output(
        REFINED,
        "table",
        "synthetic labels after normalisation and noisy self-training",
        ("id", "sentence", "aspects", "changed"),
    ),
    Output(
        REFINE_SUMMARY,
        "artifact",
        "normalisation changes and the change rate of every round",
        path=REFINE_SUMMARY,
    ),
    Output(STUDENT, "artifact", "the tagger student (a plain transformers folder)", path=STUDENT),
    Output(
        SEED_STUDENT,
        "artifact",
        "the same tagger trained on the seed alone (the baseline)",
        path=SEED_STUDENT,
    ),
    Output(
        PRETRAINED,
        "artifact",
        "the encoder after masked-LM continued pre-training on reviews (and rationales), before tagging",
        path=PRETRAINED,
    ),
    Output(
        PRETRAIN_LOGS, "artifact", "checkpoints and metrics of the masked-LM pre-training",
        path=training_files(PRETRAINED),
    ),
    Output(TRAINED, "artifact", "what each trained tagger learnt from", path=TRAINED),
    Output(METRICS, "artifact", "pair/aspect/polarity scores, breakdowns and generation rates", path=METRICS),
    Output(REPORT, "artifact", "report.html, report.md", path="report*"),
    Output(
        REFINE_LOGS,
        "artifact",
        "checkpoints and metrics of the self-training rounds",
        path=training_files("refine-*"),
    ),
    Output(
        TRAIN_LOGS,
        "artifact",
        "checkpoints and metrics of the trained taggers",
        path=training_files(STUDENT, SEED_STUDENT),
    ),
    Output(
        ANNOTATE_LOGS,
        "artifact",
        "checkpoints and metrics of the seed tagger that finds aspects to score",
        path=training_files("annotate-tagger"),
    ),
)
