"""The ``evaluate`` stage: teacher, student, majority class and the comparison students on the gold test split.

Teacher probabilities are the ones annotate wrote for the test texts (the same teacher, prompts and calibration
the student learnt from). Every student listed in ``artifacts/train.json`` is loaded and run on the same texts.
Speed is measured on this machine: the teacher (through its backend, never the ledger's cache) and the student
answer the same texts. Writes ``artifacts/metrics.json`` and says the outcome in one sentence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.evaluate import metrics, speed
from protege.tasks.classify import compare
from protege.core.section import Section
from protege.tasks.classify import inputs
from protege.tasks.classify.student import load_student, predict_probs
from protege.tasks.classify.tables import GOLD_SEED, STUDENT
from protege.tasks.classify import tables
from protege.tasks.classify.annotate import score_texts

if TYPE_CHECKING:
    from protege.stage import StageContext


class EvaluateConfig(Section):
    """How teacher and student are compared on gold test data."""

    bins: int = Field(10, ge=1, description="Equal-width confidence bins of the calibration error and reliability plot.")
    speed_examples: int = Field(
        32, ge=1, description="Test texts both models answer for the speed comparison (teacher time grows with it)."
    )
    speed_batch_size: int = Field(8, ge=1, description="Texts per call when measuring throughput (both models).")
    measure_speed: bool = Field(True, description="Time teacher and student; false skips the teacher's reload.")
    thresholds: compare.Thresholds = Field(
        default_factory=compare.Thresholds, description="When results are flagged rather than reported as results."
    )


def _teacher_predict(ctx: "StageContext") -> Any:
    """Label scoring with the annotating teacher's backend, bypassing the ledger so the time is real."""
    backend = ctx.route.backend()
    task = ctx.require_task()
    return lambda texts: score_texts(task, backend, texts)


def training_mix(entry: dict[str, Any]) -> str:
    """'300 teacher-labelled + 60 gold (x2)' from a train.json entry."""
    parts = [f"{entry['teacher_labelled']} teacher-labelled"] if entry["teacher_labelled"] else []
    if entry["gold"]:
        repeats = entry.get("gold_repeats", 1)
        parts.append(f"{entry['gold']} gold" + (f" (x{repeats})" if repeats > 1 else ""))
    return " + ".join(parts) or "nothing"


def run(ctx: "StageContext") -> dict[str, Any]:
    cfg: EvaluateConfig = ctx.config
    task = ctx.require_task()
    if task is None:
        raise UserError("stage 'evaluate' needs a 'task:' section")
    labels = task.labels
    test = inputs.gold_test(ctx.run)
    texts = test["text"].tolist()
    gold = test["gold_index"].astype(int).to_numpy()
    trained = ctx.run.read_json(tables.TRAINED)["students"] if (ctx.run.artifacts / tables.TRAINED).exists() else {}
    if STUDENT not in trained:
        raise UserError("evaluate needs a trained student: run the train stage first (artifacts/train.json)")

    probs = {"teacher": np.stack([np.asarray(p, dtype=np.float64) for p in test["teacher_probs"]])}
    loaded = {}
    with console.progress("evaluate: students on gold test", total=len(trained)) as advance:
        for name, entry in trained.items():
            model, tokenizer, card = load_student(ctx.run.artifacts / entry["path"])
            max_length = card.get("max_length", 128)
            probs[name] = predict_probs(model, tokenizer, texts, max_length=max_length)
            if name == STUDENT:
                loaded[name] = (model, tokenizer, max_length)
            advance(1)
    result = compare.compare(gold, {k: v for k, v in probs.items() if not k.startswith("curve-")}, labels,
                             bins=cfg.bins)
    result["name"] = ctx.recipe_name
    result["learning_curve"] = [
        {"name": name, "examples": entry["teacher_labelled"], "accuracy": float((probs[name].argmax(1) == gold).mean()),
         "macro_f1": metrics.macro_f1(gold, probs[name].argmax(1), len(labels))}
        for name, entry in trained.items() if name == STUDENT or name.startswith("curve-")
    ]
    result["training"] = {f"{name} trained on": training_mix(e) for name, e in trained.items()
                          if not name.startswith("curve-")}
    if cfg.measure_speed:
        sample = texts[: cfg.speed_examples]
        model, tokenizer, max_length = loaded[STUDENT]
        student_speed = speed.measure(lambda batch: predict_probs(model, tokenizer, batch, max_length=max_length),
                                      sample, batch_size=cfg.speed_batch_size)
        teacher_speed = speed.measure(_teacher_predict(ctx), sample, batch_size=cfg.speed_batch_size)
        result["speed"] = speed.compare(teacher_speed, student_speed)
    annotate_path = ctx.run.artifacts / tables.ANNOTATE_SUMMARY
    if annotate_path.exists():
        result["teacher_variants"] = ctx.run.read_json(tables.ANNOTATE_SUMMARY).get("variants", {})
    result["flags"] = compare.flags(result, cfg.thresholds)
    result["headline"] = compare.headline(result)
    ctx.run.write_json(tables.METRICS, result)
    for flag in result["flags"]:
        console.warn(flag["message"], code=flag["code"])
    console.headline(result["headline"])
    models = result["models"]
    summary = {name: {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
               for name, m in models.items()}
    summary["majority"] = {"accuracy": round(result["majority"]["accuracy"], 4)}
    summary["flags"] = [f["code"] for f in result["flags"]]
    if GOLD_SEED in models:
        summary["beats_gold_seed"] = models[STUDENT]["macro_f1"] >= models[GOLD_SEED]["macro_f1"]
    return summary
