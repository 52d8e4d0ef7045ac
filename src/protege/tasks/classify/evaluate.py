"""The ``evaluate`` stage: teacher, student, majority class and the comparison students on the gold test split.

Teacher probabilities are the ones annotate wrote for the test texts (the same teacher, prompts and calibration
the student learnt from). Every student listed in ``artifacts/train.json`` is loaded and run on the same texts.
Speed is measured on this machine: the teacher and the student answer the same texts, each batched as it
would be in bulk. The teacher is timed through the ledger (:meth:`~protege.models.ledgered.LedgeredTeacher.measure`):
its timed requests are sent for real and recorded as paid ``timing`` requests, and the measurement is kept, so
evaluating again with the same teacher, texts and batch size reuses it and sends nothing. Certainty (:mod:`.certainty`): a 95 % interval on
every accuracy and on the student's difference from each baseline, temperature scaling of the student on gold
dev labels, its most confident errors beside the teacher's label, advice that knows what the recipe did. Cost
(:mod:`protege.evaluate.costs`): teacher calls paid and answered by the ledger, tokens, time, money, model sizes.
When the ``icl`` stage ran, its training-free teacher baselines on the same gold test texts (accuracy, macro-F1
with intervals, prompt tokens and seconds per text) are copied in as ``teacher_baselines``, so the report shows them
beside the student. Writes ``artifacts/metrics.json`` and the student's model card, and says the outcome in one sentence.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.evaluate import metrics, speed
from protege.evaluate.costs import parameters, run_costs
from protege.evaluate.intervals import bootstrap_metric
from protege.tasks.classify import certainty, model_card
from protege.tasks.classify.candidates import frame_coverage
from protege.tasks.classify.certainty import CertaintyConfig
from protege.tasks.classify import compare, icl
from protege.core.section import Section
from protege.tasks.classify import inputs
from protege.tasks.classify.student import load_student, predict_probs
from protege.tasks.classify.tables import GOLD_SEED, STUDENT
from protege.tasks.classify import tables
from protege.tasks.classify.annotate import score_texts
from protege.tasks.classify.task import continuations, render_all

if TYPE_CHECKING:
    from protege.stage import StageContext


class EvaluateConfig(Section):
    """How teacher and student are compared on gold test data."""

    bins: int = Field(10, ge=1, description="Equal-width confidence bins of the calibration error and reliability plot.")
    speed_examples: int = Field(
        32, ge=1, description="Test texts both models answer for the speed comparison (teacher time grows with it)."
    )
    speed_batch_size: int = Field(8, ge=1, description="Teacher: texts per call when measuring its throughput.")
    student_batch_size: int = Field(64, ge=1, description="Student: texts per batch when measuring its throughput "
                                    "(an encoder answers many texts at once; the teacher scores them a few at a time).")
    measure_speed: bool = Field(True, description="Time teacher and student; false skips the teacher's reload.")
    thresholds: compare.Thresholds = Field(
        default_factory=compare.Thresholds, description="When results are flagged rather than reported as results."
    )
    certainty: CertaintyConfig = Field(
        default_factory=CertaintyConfig, description="Intervals, calibration flag and error examples."
    )


def teacher_speed(ctx: "StageContext", texts: list[str], batch_size: int) -> speed.Speed:
    """The annotating teacher's speed on ``texts``, measured once per teacher, prompts and batch size."""
    task = ctx.require_task()
    what = {"prompts": [render_all(task, t) for t in texts], "labels": continuations(task), "batch_size": batch_size}
    measured = ctx.teacher.measure("speed", what, lambda timed: speed.measure(
        lambda batch: score_texts(task, timed, batch), texts, batch_size=batch_size).to_dict())
    return speed.Speed(**measured)


def training_mix(entry: dict[str, Any]) -> str:
    """'300 teacher-labelled + 60 gold (x2)' from a train.json entry."""
    parts = [f"{entry['teacher_labelled']} teacher-labelled"] if entry["teacher_labelled"] else []
    if entry["gold"]:
        repeats = entry.get("gold_repeats", 1)
        parts.append(f"{entry['gold']} gold" + (f" (x{repeats})" if repeats > 1 else ""))
    return " + ".join(parts) or "nothing"


def what_it_did(ctx: "StageContext") -> dict[str, Any]:
    """What the recipe already did, read from the run: so advice never repeats it."""
    arts = ctx.run.artifacts
    data = ctx.run.read_json(tables.DATA_SUMMARY) if (arts / tables.DATA_SUMMARY).exists() else {}
    annotate = ctx.run.read_json(tables.ANNOTATE_SUMMARY) if (arts / tables.ANNOTATE_SUMMARY).exists() else {}
    trained = ctx.run.read_json(tables.TRAINED) if (arts / tables.TRAINED).exists() else {}
    return {"prepared_teacher": (arts / tables.PREPARE_SUMMARY).exists(), "use_gold": bool(trained.get("use_gold")),
            "seed": data.get("seed", 0), "dev": data.get("dev", 0),
            "calibration_default": str(annotate.get("chosen_by", "")).startswith("default"),
            "data": {k: data[k] for k in tables.SPLITS if k in data}}


def _dev_gold(ctx: "StageContext") -> tuple[list[str], np.ndarray]:
    dev = ctx.run.records.read(tables.DEV)
    if not len(dev) or "gold_index" not in dev.columns:
        return [], np.zeros(0, dtype=np.int64)
    dev = dev[dev["gold_index"].fillna(-1).astype(int) >= 0]
    return dev["text"].tolist(), dev["gold_index"].astype(int).to_numpy()


def _speed(ctx: "StageContext", cfg: EvaluateConfig, texts: list[str], student: tuple) -> dict[str, Any]:
    """Batched throughput of both models on the same texts; the student also on enough copies to time it."""
    sample = texts[: cfg.speed_examples]
    model, tokenizer, max_length = student
    repeated = (sample * (1 + 4 * cfg.student_batch_size // max(len(sample), 1)))[: 4 * cfg.student_batch_size]
    student_speed = speed.measure(lambda b: predict_probs(model, tokenizer, b, max_length=max_length,
                                                          batch_size=cfg.student_batch_size),
                                  repeated, batch_size=cfg.student_batch_size)
    out = speed.compare(teacher_speed(ctx, sample, cfg.speed_batch_size), student_speed)
    out["batch_sizes"] = {"teacher": cfg.speed_batch_size, "student": cfg.student_batch_size}
    return out


def run(ctx: "StageContext") -> dict[str, Any]:
    began = time.perf_counter()
    cfg: EvaluateConfig = ctx.config
    task = ctx.require_task()
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
                loaded[name] = (model, tokenizer, max_length, card)
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
    model, tokenizer, max_length, card = loaded[STUDENT]
    preds = {k: v.argmax(1) for k, v in probs.items() if not k.startswith("curve-")}
    preds["majority"] = np.full(gold.size, labels.index(result["majority"]["label"]))
    conf = cfg.certainty
    for name in result["models"]:
        result["models"][name]["accuracy_interval"] = certainty.accuracy_interval(preds[name] == gold, conf.confidence)
        result["models"][name]["macro_f1_interval"] = list(bootstrap_metric(
            lambda rows, p=preds[name]: metrics.macro_f1(gold[rows], p[rows], len(labels)), gold.size,
            confidence=conf.confidence))
    result["majority"]["accuracy_interval"] = certainty.accuracy_interval(preds["majority"] == gold, conf.confidence)
    result["differences"] = certainty.differences(gold, preds, conf)
    dev_texts, dev_gold = _dev_gold(ctx)
    dev_probs = predict_probs(model, tokenizer, dev_texts, max_length=max_length) if dev_texts else None
    result["calibration"] = certainty.calibration(dev_probs, dev_gold if dev_texts else None, probs[STUDENT], gold,
                                                  cfg.bins)
    dev_annotated = ctx.run.records.read(tables.ANNOTATED)
    if len(dev_annotated) and "split" in dev_annotated.columns:
        dev_annotated = dev_annotated[dev_annotated["split"] == tables.DEV]
    result["candidates"] = {split: stats for split, stats in (
        (tables.DEV, frame_coverage(dev_annotated, labels)), (tables.TEST, frame_coverage(test, labels))) if stats}
    baselines = icl.test_baselines(ctx.run, test["id"].tolist())
    if baselines is not None:
        result["teacher_baselines"] = baselines
    result["error_examples"] = certainty.error_examples(texts, gold, preds, probs[STUDENT], labels, conf.error_examples)
    teacher_params = None
    if cfg.measure_speed:
        result["speed"] = _speed(ctx, cfg, texts, (model, tokenizer, max_length))
        teacher_params = parameters(getattr(ctx.route.backend(), "model", None))
    did = what_it_did(ctx)
    result["data"] = did["data"]
    costs = run_costs(ctx.run, running=ctx.name, running_seconds=time.perf_counter() - began)
    costs["training_seconds"] = round(sum(e.get("seconds", 0) for e in trained.values()), 1)
    teacher_cfg = ctx.route.config if ctx.route is not None else None
    costs["teacher"] = {"name": f"{teacher_cfg.backend}:{teacher_cfg.model}" if teacher_cfg else None,
                        "parameters": teacher_params}
    costs["student"] = {"name": card.get("base_model", "student"), "parameters": parameters(model)}
    result["cost"] = costs
    result["flags"] = (compare.flags(result, cfg.thresholds, prepared=did["prepared_teacher"])
                       + certainty.certainty_flags(result, did, conf))
    result["advice"] = certainty.advice(result, did)
    result["headline"] = compare.headline(result)
    ctx.run.write_json(tables.METRICS, result)
    model_card.write(ctx.run, result)
    for flag in result["flags"]:
        console.warn(flag["message"], code=flag["code"])
    console.headline(result["headline"])
    models = result["models"]
    summary = {name: {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
               for name, m in models.items()}
    summary["majority"] = {"accuracy": round(result["majority"]["accuracy"], 4)}
    summary["flags"] = [f["code"] for f in result["flags"]]
    if GOLD_SEED in result["differences"]:
        summary["beats_gold_seed"] = result["differences"][GOLD_SEED]["interval"][0] > 0
    return summary
