"""The ``icl`` stage: the teacher as a classifier with nothing trained, scored on the gold test like the students.

Three methods (``icl.methods``), all scoring every verbalizer after the prompt, through the ledgered teacher:

* ``zero_shot``: the task's own prompts (the family's calibrated scoring, no demonstrations);
* ``icl``: plain in-context learning, ``shots`` demonstrations from the gold pool (most similar first by BM25, or
  random) shown as answered examples;
* ``feedback``: feedback-driven ICL. First the teacher's *prior* answers on the pool, by plain ICL with
  ``prior_shots`` random other pool texts as demonstrations (leave-one-out: never the text itself); then for each
  text, the pool ranked by similarity, the first ``wrong_first`` texts it answered wrongly shown first with its
  answer, the correct label and a corrective note, then correctly answered ones with a confirming note, up to
  ``shots`` (:mod:`protege.tasks.classify.demos`). Missing wrong ones are filled with correct ones and counted.

The demonstration pool is a gold-labelled table (``pool_table``, the data stage's ``seed`` by default), so the
teacher baselines see the same gold labels as a student trained on the seed. Bad input is refused before any
teacher call: an empty pool, a pool smaller than the shots, a task label no pool text has, a prompt over the
teacher's context. Each method's label log-probabilities are corrected by their mean over the texts it scored
(``calibration: mean``; the small teachers otherwise give one label to everything), and both the raw and the
calibrated scores are reported.

Writes table ``icl`` (one row per text and method: ``text_id``, ``method``, ``teacher_probs``, ``teacher_label``,
``prompt_tokens``, ``fills``) and ``artifacts/icl.json``: per method, accuracy and macro-F1 with 95 % intervals
on each gold split, prompt tokens per text and teacher seconds per text (what the ledger recorded when the calls
were sent, so a re-run answered by the ledger keeps the measured time), and for feedback the prior accuracy on the pool and the fills.
:func:`test_baselines` reads them back for evaluate, which reports them beside the student on the same gold test.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal, Optional

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from protege.core import console
from protege.core.errors import UserError
from protege.core.section import Section
from protege.data.splits import stratified_take
from protege.evaluate.intervals import gold_scores
from protege.evaluate.metrics import accuracy
from protege.models import calibration as cal
from protege.tasks.classify import tables as catalog
from protege.tasks.classify.demos import Demo, clip, feedback_choice, feedback_prompt, plain_prompts
from protege.tasks.classify.retrieval import Ranker, Retrieval
from protege.tasks.classify.task import continuations, label_scores, render_all

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.models.base import Prompt
    from protege.models.ledgered import LedgeredTeacher
    from protege.stage import StageContext
    from protege.tasks.classify.task import ClassificationTask

Method = Literal["zero_shot", "icl", "feedback"]


class IclConfig(Section):
    """Training-free teacher baselines: zero-shot, plain ICL and feedback-driven ICL."""

    methods: list[Method] = Field(
        default_factory=lambda: ["zero_shot", "icl", "feedback"], min_length=1,
        description="Which baselines to run: zero_shot (no demonstrations), icl (plain in-context learning), "
        "feedback (wrong-first demonstrations with the teacher's earlier answers and a note on each).",
    )
    tables: list[str] = Field(default_factory=lambda: [catalog.TEST], min_length=1,
                              description="Tables whose texts the baselines label (test: the gold comparison).")
    pool_table: str = Field(catalog.SEED, description="Gold-labelled table the demonstrations come from.")
    pool_size: Optional[int] = Field(
        None, ge=1, description="Use this many pool texts (stratified by label, fixed by the seed); all if unset. "
        "More than the table holds is refused.")
    shots: int = Field(4, ge=1, description="Demonstrations per prompt (icl and feedback).")
    wrong_first: int = Field(2, ge=0, description="feedback: demonstrations the teacher answered wrongly, shown "
                             "first; when the pool has fewer, correct ones fill in and are counted.")
    prior_shots: int = Field(4, ge=1, description="feedback: random other pool texts shown when the teacher first "
                             "answers each pool text (its prior answers, leave-one-out).")
    retrieval: Retrieval = Field("bm25", description="How demonstrations are chosen: bm25 (the most similar pool "
                                 "texts, by the bm25s package) or random.")
    demo_chars: int = Field(300, ge=16, description="Demonstrations are cut to this many characters.")
    calibration: Literal["none", "mean"] = Field(
        "mean", description="Label-prior correction of each method's scores: mean subtracts the mean label "
        "log-probability over the texts the method scored (no labels used); none keeps the raw scores.")
    chunk_size: int = Field(16, ge=1, description="Texts scored per ledgered call.")
    seed: Optional[int] = Field(None, description="Seed of pool sampling and random demonstrations; the recipe's "
                                "seed if unset.")

    @model_validator(mode="after")
    def _check(self) -> "IclConfig":
        if self.wrong_first > self.shots:
            raise ValueError(f"icl.wrong_first = {self.wrong_first} is more than icl.shots = {self.shots}: the wrong "
                             "demonstrations are part of the shots; lower wrong_first or raise shots")
        return self

    def reads(self) -> tuple[str, ...]:
        demos = self.pool_table if set(self.methods) - {"zero_shot"} else None
        return tuple(dict.fromkeys([*self.tables, *([demos] if demos else [])]))


def _gold_rows(frame: pd.DataFrame) -> pd.DataFrame:
    if not len(frame) or "gold_index" not in frame.columns:
        return frame.iloc[0:0]
    return frame[frame["gold_index"].fillna(-1).astype(int) >= 0].reset_index(drop=True)


def demonstration_pool(ctx: "StageContext", cfg: IclConfig, task: "ClassificationTask", seed: int) -> pd.DataFrame:
    """The gold pool, checked against the settings before anything is spent."""
    pool = _gold_rows(ctx.run.records.read(cfg.pool_table))
    if not len(pool):
        raise UserError(f"icl: the demonstration pool (table {cfg.pool_table!r}) has no gold-labelled texts, so "
                        "there is nothing to retrieve from; set data.seed_size, or icl.pool_table to a gold table")
    if cfg.pool_size is not None:
        if cfg.pool_size > len(pool):
            raise UserError(f"icl.pool_size = {cfg.pool_size} but table {cfg.pool_table!r} has {len(pool)} gold texts; "
                            "lower icl.pool_size or leave it unset")
        pool = pool.iloc[np.sort(stratified_take(pool["gold"], cfg.pool_size, np.random.default_rng(seed)))]
        pool = pool.reset_index(drop=True)
    needed = max(cfg.shots, cfg.prior_shots + 1 if "feedback" in cfg.methods else 0)
    if len(pool) < needed:
        raise UserError(f"icl: the pool has {len(pool)} gold texts, fewer than the {needed} needed (icl.shots "
                        f"{cfg.shots}; feedback's leave-one-out priors need prior_shots + 1 = {cfg.prior_shots + 1}); "
                        "lower the shots or give a larger pool")
    have = set(pool["gold_index"].astype(int))
    absent = [label for i, label in enumerate(task.labels) if i not in have]
    if absent:
        raise UserError(f"icl: no pool text has the label(s) {absent}, so no demonstration can show them; add "
                        f"gold examples of them to table {cfg.pool_table!r} (a stratified data.seed_size large "
                        "enough holds every label)")
    return pool


def _check_context(teacher: "LedgeredTeacher", tokens: list[int], what: str) -> None:
    limit = teacher.context_length
    if limit is not None and tokens and max(tokens) > limit:
        raise UserError(f"icl {what}: a prompt takes {max(tokens)} tokens, more than the teacher's context of "
                        f"{limit}; lower icl.shots or icl.demo_chars")


def score(task: "ClassificationTask", teacher: "LedgeredTeacher", prompts: list[list["Prompt"]], what: str,
          chunk: int) -> tuple[np.ndarray, dict]:
    """Label log-probabilities ``(texts, prompts per text, labels)`` and the cost: tokens, fresh seconds."""
    each = [[teacher.prompt_tokens(p) for p in ps] for ps in prompts]
    _check_context(teacher, [max(n) for n in each], what)
    tokens = [sum(n) for n in each]
    words = continuations(task)
    out, began, misses = [], time.perf_counter(), teacher.stats.misses
    with console.progress(f"icl: {what}", total=len(prompts)) as advance:
        for start in range(0, len(prompts), chunk):
            part = prompts[start:start + chunk]
            flat = [p for ps in part for p in ps]
            rows = teacher.score(flat, [words] * len(flat))
            out.extend(np.array([label_scores(task, r) for r in rows]).reshape(len(part), -1, len(task.labels)))
            advance(len(part))
    fresh = (teacher.stats.misses - misses) / max(len(prompts[0]), 1) if prompts else 0
    flat = [p for ps in prompts for p in ps]
    # From the ledger: the seconds the backend took when each request was sent, in this run or an earlier one.
    seconds = teacher.score_seconds(flat, [words] * len(flat))
    return np.stack(out), {"prompt_tokens_per_text": float(np.mean(tokens)) if tokens else 0.0, "tokens": tokens,
                           "texts_sent": int(round(fresh)), "wall_seconds": round(time.perf_counter() - began, 2),
                           "seconds_per_text": round(seconds / len(prompts), 6) if prompts else None}


def calibrated(logp: np.ndarray, how: str) -> np.ndarray:
    """``(texts, labels)`` log-probabilities: per-prompt mean prior removed (``mean``), then averaged over prompts."""
    return cal.ensemble(cal.calibrate(logp, cal.mean_prior(logp) if how == "mean" else None))


def priors(task: "ClassificationTask", teacher: "LedgeredTeacher", pool: pd.DataFrame, cfg: IclConfig,
           seed: int) -> tuple[np.ndarray, dict]:
    """The teacher's leave-one-out plain-ICL answers on the pool (label indices) and what they cost."""
    ranker = Ranker(pool["text"].tolist(), "random", seed=seed)
    orders = ranker.rank(pool["text"].tolist(), exclude=list(range(len(pool))))
    texts, gold = pool["text"].tolist(), pool["gold_index"].astype(int).to_numpy()
    prompts = [plain_prompts(task, [Demo(clip(texts[j], cfg.demo_chars), int(gold[j])) for j in order[:cfg.prior_shots]],
                             texts[i]) for i, order in enumerate(orders)]
    logp, cost = score(task, teacher, prompts, "prior answers on the pool", cfg.chunk_size)
    first = calibrated(logp, cfg.calibration).argmax(-1)
    cost["pool_accuracy"] = round(accuracy(gold, first), 4)
    cost["pool_wrong"] = int((first != gold).sum())
    return first, cost


def method_prompts(method: str, task: "ClassificationTask", texts: list[str], pool: pd.DataFrame | None,
                   first: np.ndarray | None, cfg: IclConfig, seed: int) -> tuple[list[list["Prompt"]], list[int]]:
    """Every text's prompts for ``method`` and, for feedback, how many wrong slots correct demonstrations filled."""
    if method == "zero_shot":
        return [render_all(task, t) for t in texts], [0] * len(texts)
    assert pool is not None
    shown = [clip(t, cfg.demo_chars) for t in pool["text"]]
    gold = pool["gold_index"].astype(int).to_numpy()
    ranking = Ranker(pool["text"].tolist(), cfg.retrieval, seed=seed).rank(texts)
    if method == "icl":
        return [plain_prompts(task, [Demo(shown[j], int(gold[j])) for j in order[:cfg.shots]], t)
                for t, order in zip(texts, ranking)], [0] * len(texts)
    assert first is not None
    prompts, fills = [], []
    for t, order in zip(texts, ranking):
        chosen, filled = feedback_choice(order, first == gold, cfg.shots, cfg.wrong_first)
        prompts.append([feedback_prompt(task, [Demo(shown[j], int(gold[j]), int(first[j])) for j in chosen], t)])
        fills.append(filled)
    return prompts, fills


def run(ctx: "StageContext") -> dict:
    cfg: IclConfig = ctx.config
    task = ctx.require_task()
    seed = ctx.seed if cfg.seed is None else cfg.seed
    known = set(catalog.SPLITS) | set(ctx.run.records.tables())
    unknown = [t for t in cfg.reads() if t not in known]
    if unknown:
        raise UserError(f"icl names tables {unknown} this run does not have (it has {sorted(known)}); run the data "
                        "stage first or fix icl.tables / icl.pool_table")
    targets = pd.concat([ctx.run.records.read(t) for t in cfg.tables], ignore_index=True)
    if not len(targets):
        raise UserError(f"icl: tables {cfg.tables} are empty; nothing to label")
    demos_needed = bool(set(cfg.methods) - {"zero_shot"})
    pool = demonstration_pool(ctx, cfg, task, seed) if demos_needed else None
    teacher = ctx.teacher
    texts = targets["text"].tolist()
    gold = targets["gold_index"].fillna(-1).astype(int).to_numpy() if "gold_index" in targets else np.full(len(texts), -1)
    summary: dict = {"teacher": f"{teacher.backend}:{teacher.model_id}", "labels": task.labels,
                     "settings": cfg.model_dump(mode="json"), "pool": len(pool) if pool is not None else 0,
                     "methods": {}}
    first = None
    if "feedback" in cfg.methods:
        assert pool is not None
        first, prior_cost = priors(task, teacher, pool, cfg, seed)
        summary["priors"] = {k: v for k, v in prior_cost.items() if k != "tokens"}
        console.info(f"icl: prior answers on the pool: {prior_cost['pool_accuracy']:.1%} right, "
                     f"{prior_cost['pool_wrong']} wrong of {len(pool)}")
    rows = []
    for method in cfg.methods:
        prompts, fills = method_prompts(method, task, texts, pool, first, cfg, seed)
        logp, cost = score(task, teacher, prompts, method, cfg.chunk_size)
        final = calibrated(logp, cfg.calibration)
        raw = calibrated(logp, "none")
        probs = np.exp(final)
        entry = {k: v for k, v in cost.items() if k != "tokens"}
        entry["fills"], entry["texts"] = int(sum(fills)), len(texts)
        for split in targets["split"].unique():
            mask = (targets["split"] == split).to_numpy() & (gold >= 0)
            if mask.any():
                entry[split] = gold_scores(gold[mask], final[mask].argmax(-1), len(task.labels), seed=seed)
                entry[split]["raw"] = gold_scores(gold[mask], raw[mask].argmax(-1), len(task.labels), seed=seed)
        summary["methods"][method] = entry
        # One row per text and method: the id names both, text_id the text.
        rows += [{"id": f"{r['id']}-{method}", "text_id": r["id"], "split": r["split"], "text": r["text"], "gold_index": int(g), "method": method,
                  "teacher_probs": [float(x) for x in p], "teacher_index": int(p.argmax()),
                  "teacher_label": task.labels[int(p.argmax())], "prompt_tokens": int(n), "fills": int(f)}
                 for r, g, p, n, f in zip(targets.to_dict("records"), gold, probs, cost["tokens"], fills)]
    ctx.run.records.replace(catalog.ICL, rows, stage=ctx.name)
    ctx.run.write_json(catalog.ICL_SUMMARY, summary)
    _say(summary)
    return {m: {"accuracy": e.get(catalog.TEST, {}).get("accuracy"), "macro_f1": e.get(catalog.TEST, {}).get("macro_f1"),
                "prompt_tokens_per_text": round(e["prompt_tokens_per_text"], 1)} for m, e in summary["methods"].items()}


def _say(summary: dict) -> None:
    for method, e in summary["methods"].items():
        test = e.get(catalog.TEST)
        quality = f"test acc {test['accuracy']:.1%} macro-F1 {test['macro_f1']:.2f}; " if test else ""
        fills = f", {e['fills']} fills" if method == "feedback" else ""
        console.info(f"icl: {method:<9} {quality}{e['prompt_tokens_per_text']:.0f} prompt tokens per text{fills}")


def test_baselines(run: "Run", test_ids: list[str]) -> dict | None:
    """Each method's scores on the gold test texts, its prompt tokens and seconds per text, from ``icl.json``: for
    evaluate to put beside the student. None when the icl stage has not run; ``{"mismatch": why}`` when it scored
    other test texts than ``test_ids`` (then its numbers do not compare with the student's)."""
    if not (run.artifacts / catalog.ICL_SUMMARY).exists():
        return None
    summary, table = run.read_json(catalog.ICL_SUMMARY), run.records.read(catalog.ICL)
    out: dict = {}
    for method, entry in summary["methods"].items():
        scored = set(table.loc[(table["method"] == method) & (table["split"] == catalog.TEST), "text_id"])
        if scored != set(test_ids) or catalog.TEST not in entry:
            return {"mismatch": f"icl {method} scored {len(scored)} test texts, not the {len(test_ids)} gold test "
                    "texts the students are scored on; keep icl.tables: [test] and re-run icl"}
        scores = {k: v for k, v in entry[catalog.TEST].items() if k != "raw"}
        out[method] = {**scores, "prompt_tokens_per_text": round(entry["prompt_tokens_per_text"], 1),
                       "seconds_per_text": entry["seconds_per_text"], "fills": entry["fills"]}
    return out
