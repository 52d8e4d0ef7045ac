"""The ``annotate`` stage: the teacher's label distribution for every text of ``pool``, ``dev`` and ``test``.

For each text and prompt template, every verbalizer is scored as a continuation of the prompt in one call
(the backend reuses the prompt's computation across them). Scoring runs a chunk of texts at a time through the
ledgered teacher, and each chunk's raw scores are appended to the ``annotated`` table at once, so a kill loses
at most one chunk and a re-run scores only texts not yet written (the ledger answers any it had asked about).

Once every text is scored, the raw scores are calibrated and ensembled (:mod:`protege.models.calibration`) and
the table is rewritten with the final columns. ``artifacts/annotate.json`` records the teacher's label
distribution and, where gold labels exist, what each variant (raw, calibrated, ensembled) scores on them.

Columns added to each row of ``pool``/``dev``/``test``:
``raw_scores`` (templates x labels: label log-probabilities before any normalisation), ``teacher_logprobs``
and ``teacher_probs`` (labels: the final distribution), ``teacher_label`` / ``teacher_index`` (its argmax),
``teacher_confidence`` (its max), ``teacher_entropy`` (normalised to [0, 1]), ``candidates`` (labels the
teacher considers possible), ``calibration`` (the variant used), plus ``teacher`` and ``prompt_hash``.

A text whose prompt would not fit the teacher's context is cut to fit (``too_long: truncate``, counted in
``annotate.json`` and the report) or refused before any request (``too_long: refuse``); the table keeps the
whole text.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import Section
from protege.core.records import record_id
from protege.models import calibration as cal
from protege.tasks.classify import tables
from protege.tasks.classify.candidate_prompt import ask_candidates
from protege.tasks.classify.candidates import coverage, warn_on_coverage
from protege.models.context import fit_text, surely_fits
from protege.tasks.classify.task import continuations, label_scores, render_all
from protege.evaluate.metrics import accuracy, largest_class_share, macro_f1

if TYPE_CHECKING:
    from protege.models.ledgered import LedgeredTeacher
    from protege.stage import StageContext
    from protege.tasks.classify.task import ClassificationTask

PENDING = "pending"  # calibration value of rows scored but not yet calibrated


class AnnotateConfig(Section):
    """How the teacher labels texts."""

    tables: list[str] = Field(
        default_factory=lambda: [tables.POOL, tables.DEV, tables.TEST],
        description="Tables whose texts are labelled; pool is what the student learns from, dev chooses the "
        "calibration, test lets evaluate compare teacher and student without another teacher pass.",
    )
    calibration: Literal["auto", "none", "contextual", "mean"] = Field(
        "auto",
        description="Label-prior correction: none; contextual (divide by the distribution of content-free "
        "inputs); mean (subtract the mean label log-probability over the pool); auto picks the variant "
        "(calibration and ensembling) with the best macro-F1 on gold dev labels, or the default (mean, "
        "ensembled over several templates) when there are fewer than min_dev of them.",
    )
    min_dev: int = Field(
        30, ge=1, description="calibration auto: gold dev texts needed to choose a variant. A handful cannot tell "
        "variants apart (one text is several points of macro-F1), so with fewer auto warns and uses the default.",
    )
    ensemble: bool = Field(
        True,
        description="With several task.templates, average their label log-probabilities (auto chooses).",
    )
    content_free: list[str] = Field(
        default_factory=lambda: ["N/A", "", "[MASK]"], min_length=1,
        description="Inputs with no content, scored to estimate the prior for contextual calibration.",
    )
    chunk_size: int = Field(32, ge=1, description="Texts scored between two saves of the annotated table.")
    candidate_threshold: float = Field(
        0.6, gt=0, le=1, description="Below this top probability the teacher counts as unsure and a "
        "candidate set of several labels is recorded."
    )
    candidate_mass: float = Field(
        0.9, gt=0, le=1,
        description="An unsure teacher's candidate set is the fewest labels holding this much mass.",
    )
    candidate_source: Literal["scores", "generate"] = Field(
        "scores", description="Where candidate sets come from: scores (the threshold/mass rule above, free) or "
        "generate (one more greedy teacher request per text asking for every label that could apply; for a "
        "generating teacher such as an OpenAI-compatible chat server). An answer naming no label falls back to "
        "the scored rule and is counted.",
    )
    candidate_min_coverage: float = Field(
        0.5, ge=0, le=1, description="Warn when the candidate sets hold the gold label on fewer than this share of "
        "the gold dev texts (the warning gives the coverage).",
    )
    too_long: Literal["truncate", "refuse"] = Field(
        "truncate", description="A text whose prompt exceeds the teacher's context: truncate it to fit (counted in "
        "the report), or refuse the run before any teacher request.",
    )


def teacher_tag(teacher: "LedgeredTeacher") -> str:
    return f"{teacher.backend}:{teacher.model_id}"


def score_texts(task: "ClassificationTask", teacher: "LedgeredTeacher", texts: list[str]) -> np.ndarray:
    """Label log-probabilities ``(texts, templates, labels)``: one ledgered ``score`` call for all prompts."""
    n_templates = len(task.templates)
    prompts = [p for text in texts for p in render_all(task, text)]
    words = continuations(task)
    scores = teacher.score(prompts, [words] * len(prompts))
    per_label = np.array([label_scores(task, row) for row in scores], dtype=np.float64)
    return per_label.reshape(len(texts), n_templates, len(task.labels))


def prompt_hash(task: "ClassificationTask", text: str) -> str:
    return record_id(render_all(task, text), continuations(task))


def _inputs(ctx: "StageContext", names: list[str]) -> pd.DataFrame:
    unknown = [t for t in names if t not in set(tables.SPLITS) | set(ctx.run.records.tables())]
    if unknown:
        raise UserError(f"annotate.tables names {unknown}, which this run does not have (it has "
                         f"{ctx.run.records.tables()}); run the data stage first or fix annotate.tables")
    frames = [frame for frame in (ctx.run.records.read(t) for t in names) if len(frame)]
    if not frames:
        raise UserError(f"annotate: tables {names} are all empty; nothing to label")
    return pd.concat(frames, ignore_index=True).drop_duplicates("id").reset_index(drop=True)


def fit_to_context(task: "ClassificationTask", teacher: "LedgeredTeacher", texts: list[str],
                   too_long: str) -> tuple[list[str], dict]:
    """``texts`` cut where their prompts exceed the teacher's context, and what was cut (texts, longest prompt)."""
    limit = teacher.context_length
    if limit is None:
        return texts, {}
    reserve = max(teacher.text_tokens(c) for c in continuations(task))

    def count(text: str) -> int:
        return max(teacher.prompt_tokens(p) for p in render_all(task, text)) + reserve

    empty, copies = count(""), max(t.count("{text}") for t in task.templates)
    out, cut, longest = [], 0, 0
    for text in texts:
        size = 0 if surely_fits(empty, text, copies, limit) else count(text)
        if size <= limit:
            out.append(text)
            continue
        cut, longest = cut + 1, max(longest, size)
        if too_long == "refuse":
            raise ValueError(f"annotate: a text's prompt takes {size} tokens, more than the teacher's context of "
                             f"{limit} (text starts {text[:60]!r}); set annotate.too_long: truncate to cut such "
                             "texts to fit, or shorten them in the data")
        out.append(fit_text(text, count, limit))
    return out, ({"texts": cut, "context": limit, "longest_prompt_tokens": longest} if cut else {})


def _score_missing(
    ctx: "StageContext", teacher: "LedgeredTeacher", inputs: pd.DataFrame, cfg: AnnotateConfig
) -> dict:
    """Score every input row not yet in ``annotated`` by this teacher with these prompts; append per chunk."""
    task = ctx.require_task()
    tag = teacher_tag(teacher)
    fitted, truncated = fit_to_context(task, teacher, inputs["text"].tolist(), cfg.too_long)
    if truncated:
        console.warn(f"annotate: {truncated['texts']} texts were cut to fit the teacher's context of "
                     f"{truncated['context']} tokens (the longest prompt took {truncated['longest_prompt_tokens']})",
                     code="texts_truncated")
    hashes = [prompt_hash(task, t) for t in fitted]
    done: set[str] = set()
    existing = ctx.run.records.read(tables.ANNOTATED)
    if len(existing):
        current = dict(zip(inputs["id"], hashes))
        done = {i for i, t, h in zip(existing["id"], existing["teacher"], existing["prompt_hash"])
                if t == tag and current.get(i) == h}
    todo = [i for i, row_id in enumerate(inputs["id"]) if row_id not in done]
    misses_before = teacher.stats.misses
    began = time.perf_counter()
    keep = [c for c in ("id", "source", "split", "text", "gold", "gold_index") if c in inputs.columns]
    with console.progress("annotate: teacher scores", total=len(todo)) as advance:
        for start in range(0, len(todo), cfg.chunk_size):
            positions = todo[start : start + cfg.chunk_size]
            chunk = inputs.iloc[positions]
            scores = score_texts(task, teacher, [fitted[i] for i in positions])
            rows = [
                {**row, "raw_scores": raw.tolist(), "teacher": tag, "prompt_hash": hashes[i],
                 "calibration": PENDING}
                for row, raw, i in zip(chunk[keep].to_dict("records"), scores, positions)
            ]
            ctx.run.records.append(tables.ANNOTATED, rows, stage=ctx.name)
            advance(len(rows))
    seconds = time.perf_counter() - began
    fresh = teacher.stats.misses - misses_before
    texts_fresh = fresh / max(len(task.templates), 1)
    return {
        "texts": len(inputs),
        "texts_scored_now": len(todo),
        "backend_calls": fresh,
        "seconds": round(seconds, 2),
        "seconds_per_100_texts": round(100 * seconds / texts_fresh, 2) if texts_fresh else None,
        "truncated": truncated,
    }


def _variants(
    logp: np.ndarray, priors: dict[str, np.ndarray | None], ensembled: bool
) -> dict[str, np.ndarray]:
    """Every (calibration, ensembling) combination as ``(texts, labels)`` log-probabilities."""
    out = {}
    for name, prior in priors.items():
        calibrated = cal.calibrate(logp, prior)
        out[name] = calibrated[:, 0]
        if ensembled:
            out[f"{name}+ensemble"] = cal.ensemble(calibrated)
    return out


def _gold_scores(pred: np.ndarray, gold: np.ndarray, k: int) -> dict:
    return {"n": int(len(gold)), "accuracy": round(accuracy(gold, pred), 4),
            "macro_f1": round(macro_f1(gold, pred, k), 4),
            "largest_class_share": round(largest_class_share(pred), 4)}


def _choose(cfg: AnnotateConfig, report: dict, n_templates: int) -> tuple[str, str]:
    if cfg.calibration != "auto":
        name = cfg.calibration + ("+ensemble" if cfg.ensemble and n_templates > 1 else "")
        return name, "recipe"
    on_dev = {v: s["dev"]["macro_f1"] for v, s in report.items() if "dev" in s}
    default = "mean" + ("+ensemble" if n_templates > 1 else "")
    n_dev = max((s["dev"]["n"] for s in report.values() if "dev" in s), default=0)
    if n_dev < cfg.min_dev:
        console.warn(f"annotate: calibration auto needs at least {cfg.min_dev} gold dev texts to choose (annotate."
                     f"min_dev) and has {n_dev}; using the default, {default}. Raise data.dev_size, or set "
                     "annotate.calibration yourself.", code="calibration_default")
        return default, f"default ({n_dev} gold dev texts, fewer than {cfg.min_dev})"
    return max(on_dev, key=lambda v: (on_dev[v], v == "none")), f"best dev macro-F1 on {n_dev} texts"


def multi_token(task: "ClassificationTask", backend: object) -> list[str]:
    """Verbalizers the teacher's tokenizer splits into several tokens (empty when the backend cannot tell)."""
    encode = getattr(backend, "encode_continuation", None)
    if encode is None:
        return []
    return [word for word in continuations(task) if len(encode(word)) > 1]


def _candidate_sets(cfg: AnnotateConfig, task: "ClassificationTask", teacher: "LedgeredTeacher", table: pd.DataFrame,
                    probs: np.ndarray, gold: np.ndarray) -> tuple[list[list[int]], dict]:
    """Every text's candidate set (label indices) and their coverage of the gold label on dev and test."""
    sets = [cal.candidate_set(p, threshold=cfg.candidate_threshold, mass=cfg.candidate_mass) for p in probs]
    unparsed = 0
    if cfg.candidate_source == "generate":
        asked = ask_candidates(task, teacher, table["text"].tolist())
        unparsed = sum(not a for a in asked)
        if unparsed:
            console.warn(f"annotate: {unparsed} of {len(asked)} candidate answers named no label; those texts keep "
                         "the scored threshold/mass set", code="candidates_unparsed")
        sets = [a or s for a, s in zip(asked, sets)]
    summary: dict = {"source": cfg.candidate_source, "threshold": cfg.candidate_threshold,
                     "mass": cfg.candidate_mass, "unparsed": unparsed}
    for split in (tables.DEV, tables.TEST):
        rows = np.flatnonzero((table["split"] == split).to_numpy() & (gold >= 0))
        if len(rows):
            summary[split] = coverage([sets[i] for i in rows], gold[rows])
    if tables.DEV in summary:
        warn_on_coverage(summary[tables.DEV], tables.DEV, cfg.candidate_min_coverage)
    return sets, summary


def run(ctx: "StageContext") -> dict:
    cfg: AnnotateConfig = ctx.config
    task = ctx.require_task()
    teacher = ctx.teacher
    several = multi_token(task, ctx.route.backend())
    if several:
        console.info(f"annotate: verbalizers of several tokens: {', '.join(repr(w) for w in several)}; each chunk "
                     "of texts takes one extra batched pass for them (measured within 1.5x of one-token words)")
    inputs = _inputs(ctx, cfg.tables)
    timing = _score_missing(ctx, teacher, inputs, cfg)

    table = ctx.run.records.read(tables.ANNOTATED)
    table = table[table["id"].isin(set(inputs["id"]))].set_index("id").loc[inputs["id"]].reset_index()
    logp = np.stack([np.stack(list(r)) for r in table["raw_scores"]]).astype(np.float64)
    k, n_templates = len(task.labels), logp.shape[1]
    in_pool = (table["split"] == tables.POOL).to_numpy()
    if not in_pool.any():
        console.warn("annotate: no pool texts; the mean prior is measured on all annotated texts instead", code="no_pool")
        in_pool = np.ones(len(table), dtype=bool)
    priors: dict[str, np.ndarray | None] = {
        "none": None,
        "contextual": cal.contextual_prior(score_texts(task, teacher, list(cfg.content_free))),
        "mean": cal.mean_prior(logp[in_pool]),
    }
    variants = _variants(logp, priors, ensembled=n_templates > 1)

    report: dict = {name: {} for name in variants}
    gold = table["gold_index"].fillna(-1).astype(int).to_numpy()
    for split in (tables.DEV, tables.TEST):
        rows = (table["split"] == split).to_numpy() & (gold >= 0)
        if rows.any():
            for name, lp in variants.items():
                report[name][split] = _gold_scores(lp[rows].argmax(-1), gold[rows], k)
    chosen, why = _choose(cfg, report, n_templates)
    final = variants[chosen]
    probs = np.exp(final)
    top = probs.argmax(-1)
    names = np.array(task.labels)
    sets, candidate_summary = _candidate_sets(cfg, task, teacher, table, probs, gold)
    table = table.assign(
        teacher_logprobs=list(final), teacher_probs=list(probs), teacher_index=top, teacher_label=names[top],
        teacher_confidence=probs.max(-1), teacher_entropy=cal.entropy(probs),
        candidates=[list(names[s]) for s in sets], calibration=chosen,
    )
    rows = table.to_dict("records")
    for row in rows:
        row["raw_scores"] = [list(map(float, r)) for r in row["raw_scores"]]
        for key in ("teacher_logprobs", "teacher_probs"):
            row[key] = [float(x) for x in row[key]]
    ctx.run.records.replace(tables.ANNOTATED, rows, stage=ctx.name)

    distribution = {s: {label: int(((table["split"] == s) & (table["teacher_label"] == label)).sum())
                        for label in task.labels} for s in table["split"].unique()}
    unsure = float((table["candidates"].map(len) > 1).mean())
    summary = {
        "teacher": teacher_tag(teacher), "labels": task.labels, "templates": n_templates,
        "calibration": chosen, "chosen_by": why, "variants": report,
        "teacher_label_distribution": distribution,
        "unsure_share": round(unsure, 4), "candidates": candidate_summary,
        "priors": {n: None if p is None else np.round(p, 4).tolist() for n, p in priors.items()},
        "timing": timing, "ledger": {"hits": teacher.stats.hits, "misses": teacher.stats.misses},
        "multi_token_verbalizers": several,
    }
    ctx.run.write_json(tables.ANNOTATE_SUMMARY, summary)
    _say(summary)
    # The pipeline adds teacher_requests (sent / from the ledger) to every stage summary that used a teacher.
    return {"rows": len(rows), "calibration": chosen, "texts_scored_now": timing["texts_scored_now"],
            "truncated_texts": timing["truncated"].get("texts", 0)}


def _say(summary: dict) -> None:
    console.info(f"annotate: teacher {summary['teacher']}, calibration {summary['calibration']} "
                 f"({summary['chosen_by']}); {summary['unsure_share']:.0%} of texts get a candidate set")
    for split in (tables.DEV, tables.TEST):
        stats = summary["candidates"].get(split)
        if stats:
            console.info(f"  candidate sets on gold {split}: hold the gold label on {stats['coverage']:.1%}, mean "
                         f"size {stats['mean_size']:.2f}")
    for name, scores in summary["variants"].items():
        parts = [f"{split} acc {s['accuracy']:.1%} macro-F1 {s['macro_f1']:.2f}"
                 for split, s in scores.items()]
        if parts:
            console.info(f"  {name:<22} " + "; ".join(parts))
