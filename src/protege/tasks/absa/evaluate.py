"""The ``evaluate`` stage: the trained taggers on the gold test sentences (and the harder test set).

For each tagger folder the run has (``student``, ``seed_student``): pair and aspect-term P/R/F1, polarity
accuracy and macro-F1 over the aspects it found, the polarity confusion table, each for all test sentences,
for those whose gold aspects carry several polarities (``multi_polarity``) and for the harder test set. The
generation health of the run (parse and grounding rates of synthesize and annotate), the data issues and
the refinement history, what the taggers were trained (and pre-trained) on and the rationales' quality are
copied in, so the report reads ``metrics.json`` alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from protege.core.run import Run
from protege.core.section import Section
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.metrics import absa_scores, labels_of, multi_polarity_ids
from protege.tasks.absa.rows import examples_of
from protege.tasks.absa.student import torch_threads
from protege.tasks.absa.tagger import predict_aspects
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaTask


class EvaluateConfig(Section):
    """Scoring of the trained taggers."""

    batch_size: int = Field(32, ge=1, description="Sentences per tagger forward pass.")
    threads: int = Field(1, ge=1, description="torch CPU threads while predicting.")


def _artifact(run: Run, name: str) -> Any:
    path = run.artifacts / name
    return run.read_json(name) if path.exists() else None


def _flags(models: dict) -> list[dict]:
    flags = []
    student, base = models.get(t.STUDENT), models.get(t.SEED_STUDENT)
    if student and base and student["test"]["all"]["pair"]["f1"] <= base["test"]["all"]["pair"]["f1"]:
        flags.append(
            {
                "code": "synthetic_did_not_help",
                "message": f"the student's test pair F1 ({student['test']['all']['pair']['f1']:.3f}) is not "
                "above "
                f"the seed-only tagger's ({base['test']['all']['pair']['f1']:.3f})",
            }
        )
    if student and student["test"]["all"]["pair"]["predicted"] == 0:
        flags.append(
            {
                "code": "student_predicts_nothing",
                "message": "the student found no aspect in any test sentence",
            }
        )
    return flags


def run(ctx: StageContext) -> dict:
    cfg: EvaluateConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    scheme = TagScheme(tuple(task.labels))
    sets = {"test": examples_of(ctx.run.records.read(t.TEST))}
    hard = examples_of(ctx.run.records.read(t.HARD))
    if hard:
        sets["hard_test"] = hard
    models: dict = {}
    with torch_threads(cfg.threads):
        for name in (t.STUDENT, t.SEED_STUDENT):
            folder = ctx.run.artifacts / name
            if not folder.is_dir():
                continue
            model, tokenizer = (
                AutoModelForTokenClassification.from_pretrained(folder),
                AutoTokenizer.from_pretrained(folder),
            )
            models[name] = {}
            for split, examples in sets.items():
                gold = labels_of(examples)
                pred = predict_aspects(model, tokenizer, scheme, examples, batch_size=cfg.batch_size)
                models[name][split] = absa_scores(
                    gold, pred, task.labels, {"multi_polarity": multi_polarity_ids(gold)}
                )
    if not models:
        raise ValueError("evaluate: no trained tagger in this run; run the train stage first")
    synth, annotate = _artifact(ctx.run, t.SYNTH_SUMMARY), _artifact(ctx.run, t.ANNOTATE_SUMMARY)
    metrics = {
        "models": models,
        "labels": list(task.labels),
        "flags": _flags(models),
        "data": _artifact(ctx.run, t.DATA_SUMMARY),
        "synthesize": synth,
        "annotate": annotate,
        "refine": _artifact(ctx.run, t.REFINE_SUMMARY),
        "trained": _artifact(ctx.run, t.TRAINED),
        "rationales": _artifact(ctx.run, t.RATIONALE_SUMMARY),
        "generation": {
            "synthesize": (synth or {}).get("generation"),
            "annotate": (annotate or {}).get("generation"),
        },
    }
    ctx.run.write_json(t.METRICS, metrics)
    return {name: round(m["test"]["all"]["pair"]["f1"], 4) for name, m in models.items()}
