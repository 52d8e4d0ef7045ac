"""The ``augment`` stage: iterative augmentation from the student's mistakes (LLM2LLM, PGKD).

A round: the student answers the teacher-labelled dev split; for each text where it disagrees with the teacher,
the teacher writes new texts modelled on it and the label it should have had; the teacher then labels them the
way annotate labels everything (same prompts, same calibration), and the student is retrained on its training
examples plus every generated text kept so far. A round is kept only if the retrained student agrees with the
teacher on dev more than the previous best; the first round that does not improve ends the stage. Every
generated text carries the id of the dev text it was modelled on in ``parent_id`` (table ``augmented``).

The dev texts guide generation, so dev agreement after augmentation is an optimistic estimate; the gold test
split, which no round sees, is what evaluate reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from protege.core import console
from protege.models.base import SamplingParams
from protege.core.records import record_id
from protege.core.section import Section, check_template
from protege.tasks.classify import tables
from protege.models import calibration as cal
from protege.tasks.classify.annotate import AnnotateConfig, score_texts
from protege.tasks.classify.annotate import teacher_tag
from protege.tasks.classify import inputs
from protege.tasks.classify.student import fit, load_student, predict_probs, save_student
from protege.tasks.classify.tables import STUDENT
from protege.tasks.classify.train import training_examples

if TYPE_CHECKING:
    from protege.stage import StageContext


class AugmentConfig(Section):
    """Rounds of new teacher-written examples modelled on the student's dev errors."""

    max_rounds: int = Field(2, ge=1, description="Most rounds; fewer when dev agreement stops improving.")
    max_errors: int = Field(32, ge=1, description="Dev errors used per round (the student's most confident first).")
    per_error: int = Field(1, ge=1, description="New texts the teacher writes for each error.")
    min_improvement: float = Field(
        0.0, ge=0, description="Dev agreement must rise by more than this for a round to be kept."
    )
    max_new_tokens: int = Field(64, ge=8, description="Length limit of each written text, in teacher tokens.")
    temperature: float = Field(0.8, ge=0, description="Sampling temperature of the teacher when writing.")
    instruction: str = Field(
        "Here is a text whose label is '{label}':\n\n{text}\n\nWrite one new, different text of the same kind "
        "whose label is also clearly '{label}'. Reply with the new text only.",
        description="Prompt for the teacher; {text} is the misclassified dev text, {label} its teacher label.",
    )

    @field_validator("instruction")
    @classmethod
    def _renders(cls, value: str) -> str:
        check_template(value, {"text": "sample text", "label": "label"}, "augment.instruction")
        return value


@dataclass
class Error:
    id: str
    text: str
    label: int  # the teacher's label, which the student missed


def student_errors(texts: Sequence[str], ids: Sequence[str], teacher_labels: np.ndarray, student_probs: np.ndarray,
                   limit: int) -> list[Error]:
    """Dev texts the student labels differently from the teacher, the most confidently wrong first."""
    pred = student_probs.argmax(1)
    wrong = np.flatnonzero(pred != teacher_labels)
    order = wrong[np.argsort(-student_probs[wrong, pred[wrong]], kind="stable")]
    return [Error(ids[i], texts[i], int(teacher_labels[i])) for i in order[:limit]]


def clean(text: str) -> str:
    """The written text without wrapping quotes or a leading 'Text:'-style label."""
    text = text.strip().strip('"').strip()
    head, sep, rest = text.partition(":")
    if sep and head.strip().lower() in ("text", "new text", "review", "example"):
        text = rest.strip()
    return text


def write_examples(teacher: Any, errors: list[Error], labels: list[str], config: AugmentConfig,
                   seed: int) -> list[tuple[Error, str]]:
    """(parent error, new text) pairs; empty and repeated texts are dropped."""
    prompts = [[{"role": "user", "content": config.instruction.format(text=e.text, label=labels[e.label])}]
               for e in errors]
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                            n=config.per_error, seed=seed)
    seen: set[str] = set()
    out = []
    for error, gens in zip(errors, teacher.generate(prompts, params)):
        for gen in gens:
            text = clean(gen.text)
            if text and text not in seen and text != error.text:
                seen.add(text)
                out.append((error, text))
    return out


def label_like_annotate(ctx: "StageContext", teacher: Any, texts: list[str]) -> np.ndarray:
    """Teacher label probabilities for new texts, with the calibration and ensembling annotate chose."""
    summary = ctx.run.read_json(tables.ANNOTATE_SUMMARY)
    variant = summary["calibration"]
    name, _, ensembled = variant.partition("+")
    prior = summary["priors"][name]
    logp = cal.calibrate(score_texts(ctx.require_task(), teacher, texts), None if prior is None else np.asarray(prior))
    return np.exp(cal.ensemble(logp) if ensembled else logp[:, 0])


def augmented_rows(pairs: list[tuple[Error, str]], probs: np.ndarray, labels: list[str], round_no: int,
                   teacher_tag: str, rule: dict) -> list[dict]:
    """Table rows for the new texts; candidate sets by annotate's threshold/mass ``rule`` (from annotate.json)."""
    rows = []
    for (parent, text), p in zip(pairs, probs):
        top = int(p.argmax())
        members = cal.candidate_set(p, threshold=rule["threshold"], mass=rule["mass"])
        rows.append({"id": record_id("augment", parent.id, text), "source": "augment", "split": "pool",
                     "text": text, "parent_id": parent.id, "teacher": teacher_tag, "round": round_no,
                     "teacher_probs": [float(x) for x in p], "teacher_index": top, "teacher_label": labels[top],
                     "teacher_confidence": float(p.max()), "modelled_on_label": labels[parent.label],
                     "candidates": [labels[i] for i in members]})
    return rows


def augment_rounds(
    *,
    config: AugmentConfig,
    dev_ids: list[str],
    dev_texts: list[str],
    dev_labels: np.ndarray,
    start_accuracy: float,
    start_probs: np.ndarray,
    write_and_label: Callable[[list[Error], int], list[dict]],
    retrain: Callable[[pd.DataFrame], tuple[float, np.ndarray, Callable[[], None]]],
) -> dict[str, Any]:
    """The round loop, free of I/O: ``write_and_label(errors, round)`` returns new teacher-labelled rows,
    ``retrain(all kept rows)`` returns (dev agreement, dev probabilities, save-this-student)."""
    best, probs = start_accuracy, start_probs
    kept: list[dict] = []
    history = [{"round": 0, "dev_agreement": start_accuracy, "new_examples": 0, "kept": True}]
    for round_no in range(1, config.max_rounds + 1):
        errors = student_errors(dev_texts, dev_ids, dev_labels, probs, config.max_errors)
        if not errors:
            history.append({"round": round_no, "stopped": "the student agrees with the teacher on every dev text"})
            break
        new = write_and_label(errors, round_no)
        if not new:
            history.append({"round": round_no, "stopped": "the teacher wrote no usable text"})
            break
        accuracy, new_probs, save = retrain(pd.DataFrame(kept + new))
        improved = accuracy > best + config.min_improvement
        history.append({"round": round_no, "errors": len(errors), "new_examples": len(new),
                        "dev_agreement": accuracy, "kept": improved})
        console.info(f"augment: round {round_no}: {len(new)} new texts from {len(errors)} errors; dev agreement "
                     f"{best:.1%} -> {accuracy:.1%} ({'kept' if improved else 'not kept, stopping'})")
        if not improved:
            break
        best, probs = accuracy, new_probs
        kept += new
        save()
    return {"history": history, "kept_rows": kept, "best_dev_agreement": best}


def run(ctx: "StageContext") -> dict[str, Any]:
    cfg: AugmentConfig = ctx.config
    train_cfg, labels = inputs.train_settings(ctx, "retrains the student")
    dev = inputs.annotated_split(ctx.run, tables.DEV)
    dev_texts, dev_labels = dev["text"].tolist(), dev["teacher_index"].to_numpy(dtype=np.int64)
    model, tokenizer, card = load_student(ctx.run.artifact(STUDENT))
    start_probs = predict_probs(model, tokenizer, dev_texts, max_length=train_cfg.max_length)
    start = float((start_probs.argmax(1) == dev_labels).mean())
    teacher = ctx.teacher
    base, _ = training_examples(ctx.run, train_cfg, labels)

    def write_and_label(errors: list[Error], round_no: int) -> list[dict]:
        pairs = write_examples(teacher, errors, labels, cfg, seed=ctx.seed + round_no)
        if not pairs:
            return []
        probs = label_like_annotate(ctx, teacher, [text for _, text in pairs])
        # A run annotated before annotate.json recorded its rule was annotated with the defaults.
        default = AnnotateConfig()
        rule = ctx.run.read_json(tables.ANNOTATE_SUMMARY).get("candidates") or {
            "threshold": default.candidate_threshold, "mass": default.candidate_mass}
        rows = augmented_rows(pairs, probs, labels, round_no, teacher_tag(teacher), rule)
        ctx.run.records.append(tables.AUGMENTED, [dict(r) for r in rows], stage=ctx.name)
        return rows

    def retrain(rows: pd.DataFrame) -> tuple[float, np.ndarray, Callable[[], None]]:
        extra = inputs.teacher_examples(rows, train_cfg.targets, labels)
        fitted = fit(train_cfg, base + extra, dev_texts, dev_labels, labels, run=ctx.run,
                     name=f"augment-{rows['round'].max()}", seed=ctx.seed)
        probs = predict_probs(fitted.model, fitted.tokenizer, dev_texts, max_length=train_cfg.max_length)
        info = {**card, "examples": len(base) + len(extra), "augmented": len(extra), "best_dev_accuracy": fitted.result.best}
        return (float((probs.argmax(1) == dev_labels).mean()), probs,
                lambda: save_student(fitted.model, fitted.tokenizer, ctx.run.artifact(STUDENT), labels=labels, info=info))

    outcome = augment_rounds(config=cfg, dev_ids=dev["id"].tolist(), dev_texts=dev_texts, dev_labels=dev_labels,
                             start_accuracy=start, start_probs=start_probs, write_and_label=write_and_label,
                             retrain=retrain)
    kept = len(outcome["kept_rows"])
    if kept:
        trained = ctx.run.read_json(tables.TRAINED)
        entry = trained["students"][STUDENT]
        entry.update(examples=entry["examples"] + kept, teacher_labelled=entry["teacher_labelled"] + kept, augmented=kept)
        ctx.run.write_json(tables.TRAINED, trained)
    summary = {"history": outcome["history"], "kept_examples": kept,
               "dev_agreement_before": start, "dev_agreement_after": outcome["best_dev_agreement"]}
    ctx.run.write_json(tables.AUGMENT_SUMMARY, summary)
    return {k: v for k, v in summary.items() if k != "history"}
