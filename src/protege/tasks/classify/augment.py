"""The ``augment`` stage: rounds of teacher examples aimed at the student's errors (LLM2LLM, PGKD, 2409.19759).

A round: the student answers the mined split — ``dev`` (against the teacher's dev labels) or ``seed`` (against
the gold labels it trained on); the round plans its requests (:mod:`.augment_plan`) by the strategy:

* ``new``: the teacher writes new texts, one request per mined error (``prompt: one_error``) or, with
  ``prompt: report``, requests for the weakest dev classes, each showing the student's per-class dev metrics and
  its confidently wrong texts; the teacher then labels what it wrote the way annotate labels everything;
* ``rephrase``: the teacher rewrites mined texts, which keep their label;
* ``answer_aug``: no new text; the teacher's calibrated answers for gold seed texts (errors first);
* ``auto``: one of those, by R = budget units / gold seed size and ``augment.thresholds``.

The student is retrained on its training examples plus every kept text. A round is kept when the early-stopping
metric on dev improves; ``early_stop.patience`` rounds in a row without improvement end the stage. Every row of
table ``augmented`` names the mined text it was modelled on (``parent_id``). The budget is checked before each
round at each request's worst-case cost, and what was asked is counted exactly (``augment.json``: ``spend``).

Dev texts guide generation, so dev agreement after augmentation is an optimistic estimate; the gold test split,
which no round sees, is what evaluate reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from protege.core import console
from protege.core.errors import UserError
from protege.core.records import record_id
from protege.models import calibration as cal
from protege.models.base import SamplingParams
from protege.tasks.classify import inputs, tables
from protege.tasks.classify.annotate import AnnotateConfig, score_texts, teacher_tag
from protege.tasks.classify.augment_config import AugmentConfig, Strategy
from protege.tasks.classify.augment_plan import (Error, Request, Split, affordable, budget_ratio, choose_strategy,
                                                 class_report, macro_f1, plan_requests, student_errors, units)
from protege.tasks.classify.student import fit, load_student, predict_probs, save_student
from protege.tasks.classify.train import training_examples

if TYPE_CHECKING:
    from protege.stage import StageContext


@dataclass
class Scores:
    """A student's probabilities on dev and on the gold seed, and how to save it."""

    dev: np.ndarray
    seed: np.ndarray
    save: Callable[[], None] = lambda: None


@dataclass
class Asked:
    """What one round's requests returned: teacher-labelled rows, completions generated, prompts scored."""

    rows: list[dict]
    generated: int
    scored: int


def resolve_strategy(config: AugmentConfig, seed_size: int) -> dict[str, Any]:
    """The strategy and, with a budget, R (refused below 1 before anything is spent)."""
    if config.budget is None:
        return {"requested": config.strategy, "strategy": config.strategy, "ratio": None}
    ratio = budget_ratio(config.budget.units, seed_size)
    chosen = choose_strategy(ratio, config.thresholds) if config.strategy == "auto" else config.strategy
    return {"requested": config.strategy, "strategy": chosen, "ratio": round(ratio, 4),
            "budget_units": config.budget.units, "seed_size": seed_size,
            "generation_cost": config.budget.generation_cost,
            "unit": "call units: 1 per scored prompt, generation_cost per generated completion",
            "thresholds": config.thresholds.model_dump()}


def _metric(config: AugmentConfig, dev: Split, probs: np.ndarray) -> float:
    if config.early_stop.metric == "macro_f1":
        return macro_f1(dev.labels, probs, probs.shape[1])
    return float((probs.argmax(1) == dev.labels).mean())


def augment_rounds(
    *,
    config: AugmentConfig,
    strategy: Strategy,
    labels: list[str],
    dev: Split,
    seed: Split,
    start: Scores,
    label_cost: int,
    ask: Callable[[list[Request], int], Asked],
    retrain: Callable[[pd.DataFrame], Scores],
) -> dict[str, Any]:
    """The round loop, free of I/O: ``ask(requests, round)`` sends them and returns labelled rows and what it
    spent; ``retrain(rows)`` trains a student on the training examples plus ``rows``. ``label_cost``: scored
    prompts per text labelled (the task's templates)."""
    es, budget = config.early_stop, config.budget
    generation_cost = budget.generation_cost if budget else 1.0
    best = _metric(config, dev, start.dev)
    state, kept, pending, misses = start, [], [], 0
    answered: set[str] = set()
    spent = {"generated": 0, "scored": 0, "units": 0.0}
    history: list[dict] = [{"round": 0, "dev_metric": best, "new_examples": 0, "kept": True}]

    def stop(round_no: int, why: str) -> None:
        history.append({"round": round_no, "stopped": why})

    for round_no in range(1, config.max_rounds + 1):
        mined = dev if config.mine == "dev" else seed
        errors = student_errors(mined, state.dev if config.mine == "dev" else state.seed)
        seed_errors = student_errors(seed, state.seed)
        seen, unanswered = set(answered), []  # seed texts without the teacher's answer, errors first
        for e in seed_errors + [Error(i, t, int(y)) for i, t, y in zip(seed.ids, seed.texts, seed.labels)]:
            if e.id not in seen:
                seen.add(e.id)
                unanswered.append(e)
        if strategy != "answer_aug" and not errors:
            stop(round_no, f"the student makes no error on {config.mine}")
            break
        report = class_report(dev.labels, state.dev, len(labels))
        requests = plan_requests(config, strategy, errors, report, labels, unanswered)
        if budget is not None:
            requests = affordable(requests, budget.units - spent["units"], generation_cost, label_cost)
        if not requests:
            exhausted = strategy == "answer_aug" and not unanswered
            stop(round_no, "every seed text has the teacher's answer" if exhausted else "the budget is spent")
            break
        asked = ask(requests, round_no)
        answered.update(r.parent.id for r in requests if r.kind == "answer" and r.parent is not None)
        spent["generated"] += asked.generated
        spent["scored"] += asked.scored
        spent["units"] = units(spent["generated"], spent["scored"], generation_cost)
        if not asked.rows:
            stop(round_no, "the teacher wrote no usable text")
            break
        fitted = retrain(pd.DataFrame(kept + pending + asked.rows))
        value = _metric(config, dev, fitted.dev)
        improved = value > best + es.min_improvement
        asked_for = sorted({labels[r.label] for r in requests})
        history.append({"round": round_no, "errors": len(errors), "requests": len(requests),
                        "asked_for": asked_for, "new_examples": len(asked.rows), "dev_metric": value,
                        "kept": improved, "spent_units": spent["units"]})
        console.info(f"augment: round {round_no}: {len(asked.rows)} new rows from {len(requests)} requests "
                     f"({strategy}); dev {es.metric} {best:.1%} -> {value:.1%} "
                     f"({'kept' if improved else 'not kept'})")
        state = fitted  # the next round mines the newest student's errors
        if improved:
            best, kept, pending, misses = value, kept + pending + asked.rows, [], 0
            fitted.save()
            continue
        pending, misses = pending + asked.rows, misses + 1
        if misses >= es.patience:
            stop(round_no, f"dev {es.metric} did not improve for {misses} round(s)")
            break
    return {"history": history, "kept_rows": kept, "best_dev_metric": best, "spend": spent}


# -- the I/O shell ----------------------------------------------------------------------------------------------

def clean(text: str) -> str:
    """The written text without wrapping quotes or a leading 'Text:'-style label."""
    text = text.strip().strip('"').strip()
    head, sep, rest = text.partition(":")
    if sep and head.strip().lower() in ("text", "new text", "review", "example", "rewritten text"):
        text = rest.strip()
    return text


def write_texts(teacher: Any, requests: list[Request], config: AugmentConfig, seed: int) -> list[tuple[Request, str]]:
    """(request, written text) pairs; empty texts, repeats and copies of the parent are dropped."""
    params = SamplingParams(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                            n=config.per_error, seed=seed)
    seen: set[str] = set()
    out = []
    for request, gens in zip(requests, teacher.generate([r.messages for r in requests], params)):
        for gen in gens:
            text = clean(gen.text)
            if text and text not in seen and (request.parent is None or text != request.parent.text):
                seen.add(text)
                out.append((request, text))
    return out


def label_like_annotate(ctx: "StageContext", teacher: Any, texts: list[str]) -> np.ndarray:
    """Teacher label probabilities for texts, with the calibration and ensembling annotate chose."""
    summary = ctx.run.read_json(tables.ANNOTATE_SUMMARY)
    name, _, ensembled = summary["calibration"].partition("+")
    prior = summary["priors"][name]
    logp = cal.calibrate(score_texts(ctx.require_task(), teacher, texts), None if prior is None else np.asarray(prior))
    return np.exp(cal.ensemble(logp) if ensembled else logp[:, 0])


def _row(request: Request, text: str, probs: np.ndarray, labels: list[str], round_no: int, tag: str,
         rule: dict, strategy: str) -> dict:
    top = int(probs.argmax())
    parent = request.parent.id if request.parent is not None else None
    return {"id": record_id("augment", strategy, parent, request.shown, text), "source": "augment", "split": "pool",
            "text": text, "parent_id": parent, "teacher": tag, "round": round_no, "strategy": strategy,
            "teacher_probs": [float(x) for x in probs], "teacher_index": top, "teacher_label": labels[top],
            "teacher_confidence": float(probs.max()), "modelled_on_label": labels[request.label],
            "candidates": [labels[i] for i in cal.candidate_set(probs, threshold=rule["threshold"], mass=rule["mass"])]}


def _splits(ctx: "StageContext", num_labels: int) -> tuple[Split, Split, dict[str, np.ndarray]]:
    """Dev (teacher labels) and gold seed splits, and each text's target distribution (what a rewrite keeps)."""
    dev = inputs.annotated_split(ctx.run, tables.DEV)
    seed = ctx.run.records.read(tables.SEED)
    if len(seed) and "gold_index" in seed.columns:
        seed = seed[seed["gold_index"].fillna(-1).astype(int) >= 0].reset_index(drop=True)
    else:
        seed = pd.DataFrame({"id": [], "text": [], "gold_index": []})
    gold = seed["gold_index"].to_numpy(dtype=np.int64)
    targets = {i: np.asarray(p, dtype=np.float64) for i, p in zip(dev["id"], dev["teacher_probs"])}
    targets.update({i: np.eye(num_labels)[y] for i, y in zip(seed["id"], gold)})
    return (Split(dev["id"].tolist(), dev["text"].tolist(), dev["teacher_index"].to_numpy(dtype=np.int64)),
            Split(seed["id"].tolist(), seed["text"].tolist(), gold), targets)


def run(ctx: "StageContext") -> dict[str, Any]:
    cfg: AugmentConfig = ctx.config
    train_cfg, labels = inputs.train_settings(ctx, "retrains the student")
    dev, seed, targets = _splits(ctx, len(labels))
    plan = resolve_strategy(cfg, len(seed.ids))  # refuses a budget ratio below 1 before any call
    strategy = plan["strategy"]
    if (cfg.mine == "seed" or strategy == "answer_aug") and not seed.ids:
        raise UserError(f"augment: mine: {cfg.mine} with strategy {strategy} needs gold seed texts, and this run "
                        "has none: set data.seed_size, or use mine: dev with strategy new or rephrase")
    model, tokenizer, card = load_student(ctx.run.artifact(tables.STUDENT))

    def predict(m: Any, tok: Any, split: Split) -> np.ndarray:
        if not split.texts:
            return np.zeros((0, len(labels)))
        return predict_probs(m, tok, split.texts, max_length=train_cfg.max_length)

    start = Scores(predict(model, tokenizer, dev), predict(model, tokenizer, seed))
    teacher = ctx.teacher
    label_cost = len(ctx.require_task().templates)
    paid_before = {m: t.calls for m, t in ctx.run.ledger.totals_by_method().items()}
    base, _ = training_examples(ctx.run, train_cfg, labels)
    summary = ctx.run.read_json(tables.ANNOTATE_SUMMARY)
    # A run annotated before annotate.json recorded its rule was annotated with the defaults.
    rule = summary.get("candidates") or {"threshold": AnnotateConfig().candidate_threshold,
                                         "mass": AnnotateConfig().candidate_mass}

    def ask(requests: list[Request], round_no: int) -> Asked:
        gens = [r for r in requests if r.kind == "generate"]
        pairs = write_texts(teacher, gens, cfg, seed=ctx.seed + round_no) if gens else []
        to_label = [(r, t) for r, t in pairs if r.relabel] + [(r, r.parent.text) for r in requests if r.kind == "answer"]
        probs = label_like_annotate(ctx, teacher, [t for _, t in to_label]) if to_label else []
        tag = teacher_tag(teacher)
        rows = [_row(r, t, p, labels, round_no, tag, rule, strategy) for (r, t), p in zip(to_label, probs)]
        rows += [_row(r, t, targets[r.parent.id], labels, round_no, tag, rule, strategy)
                 for r, t in pairs if not r.relabel]
        if rows:
            ctx.run.records.append(tables.AUGMENTED, [dict(r) for r in rows], stage=ctx.name)
        return Asked(rows, sum(r.n for r in gens), len(to_label) * label_cost)

    def retrain(rows: pd.DataFrame) -> Scores:
        extra = inputs.teacher_examples(rows, train_cfg.targets, labels)
        fitted = fit(train_cfg, base + extra, dev.texts, dev.labels, labels, run=ctx.run,
                     name=f"augment-{rows['round'].max()}", seed=ctx.seed)
        info = {**card, "examples": len(base) + len(extra), "augmented": len(extra),
                "best_dev_accuracy": fitted.result.best}
        return Scores(predict(fitted.model, fitted.tokenizer, dev), predict(fitted.model, fitted.tokenizer, seed),
                      lambda: save_student(fitted.model, fitted.tokenizer, ctx.run.artifact(tables.STUDENT),
                                           labels=labels, info=info))

    outcome = augment_rounds(config=cfg, strategy=strategy, labels=labels, dev=dev, seed=seed, start=start,
                             label_cost=label_cost, ask=ask, retrain=retrain)
    kept = len(outcome["kept_rows"])
    if kept:
        trained = ctx.run.read_json(tables.TRAINED)
        entry = trained["students"][tables.STUDENT]
        entry.update(examples=entry["examples"] + kept, teacher_labelled=entry["teacher_labelled"] + kept, augmented=kept)
        ctx.run.write_json(tables.TRAINED, trained)
    paid = {m: t.calls - paid_before.get(m, 0) for m, t in ctx.run.ledger.totals_by_method().items()}
    spend = {**outcome["spend"], "paid_requests": {m: n for m, n in paid.items() if n}}
    if plan["ratio"] is not None:
        plan["ratio_spent"] = round(spend["units"] / plan["seed_size"], 4)
    result = {"history": outcome["history"], "kept_examples": kept, "metric": cfg.early_stop.metric,
              "dev_before": outcome["history"][0]["dev_metric"], "dev_after": outcome["best_dev_metric"],
              "prompt": cfg.prompt.kind, "mine": cfg.mine, "strategy": plan, "spend": spend}
    ctx.run.write_json(tables.AUGMENT_SUMMARY, result)
    return {k: v for k, v in result.items() if k != "history"}
