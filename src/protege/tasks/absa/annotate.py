"""The ``annotate`` stage: the teacher labels synthetic (or pool) sentences, in one of two modes.

``polarity``: the aspects come from the table's own label (``aspects: gold``) or from a tagger trained on the
seed (``aspects: tagger``, for unlabelled sentences); the teacher *scores* each polarity word in a prompt that
names the aspect (:mod:`protege.tasks.absa.polarity`), and the calibrated distribution becomes the aspect's
soft target (its argmax the polarity). ``generate``: the teacher writes the pairs of each sentence, shown the
``shots`` seed sentences most similar to it (TF-IDF cosine) as examples; the answer is parsed and
grounded, and the parse and grounding rates are recorded.

Both ask through the ledger, so a re-run, or a run resumed after a kill, pays only for what is new. The
``annotated`` table holds one row per sentence: ``aspects``, ``distributions`` (polarity mode), ``raw_label``
(generate mode), ``mode``, ``teacher``, ``prompt_hash``.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

import numpy as np
import pandas as pd
from pydantic import Field

from protege.core.records import record_id
from protege.core.section import Section
from protege.models import calibration as cal
from protege.models.base import SamplingParams
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.ground import normalise
from protege.tasks.absa.metrics import generation_rates
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.polarity import CONTENT_FREE, calibrate_polarities, polarity_words, score_aspects
from protege.tasks.absa.prompts import pairs_prompt
from protege.tasks.absa.rows import dump_aspects, examples_of
from protege.tasks.absa.student import torch_threads, training_set
from protege.tasks.absa.tagger import TaggerConfig, fit_tagger, predict_aspects
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect, Issues


class AnnotateConfig(Section):
    """How the teacher labels sentences."""

    mode: Literal["polarity", "generate"] = Field(
        "polarity",
        description="polarity: score each aspect's polarity words; generate: the teacher writes the pairs.",
    )
    tables: list[str] = Field(
        default_factory=lambda: [t.SYNTHETIC],
        description="Tables whose sentences are labelled: synthetic and/or pool.",
    )
    aspects: Literal["gold", "tagger"] = Field(
        "gold",
        description="polarity: aspects from the table's label "
        "(gold) or from a tagger trained on the seed (tagger).",
    )
    calibration: Literal["none", "mean", "contextual"] = Field(
        "mean",
        description="polarity: remove the teacher's polarity prior (mean over the scored aspects, or a "
        "content-free input); none keeps the raw scores.",
    )
    words: dict[str, list[str]] = Field(
        default_factory=dict,
        description="polarity: extra answer words per "
        "polarity, e.g. {positive: [good]}; each polarity's own name is always scored.",
    )
    shots: int = Field(4, ge=0, description="generate: seed sentences shown, the most similar first.")
    max_new_tokens: int = Field(64, ge=8, description="generate: tokens per answer.")
    candidate_threshold: float = Field(
        0.6,
        gt=0,
        le=1,
        description="polarity: below this top probability the teacher counts as unsure and "
        "the aspect's candidates are the fewest polarities holding candidate_mass.",
    )
    candidate_mass: float = Field(
        0.9, gt=0, le=1, description="polarity: mass an unsure candidate set holds."
    )
    limit: Optional[int] = Field(
        None, ge=1, description="Label at most this many sentences (the first ones)."
    )


def _inputs(ctx: StageContext, cfg: AnnotateConfig) -> pd.DataFrame:
    known = set(ctx.run.records.tables())
    unknown = [name for name in cfg.tables if name not in known]
    if unknown:
        raise ValueError(
            f"annotate.tables names {unknown}, which this run does not have (it has {sorted(known)}); "
            "run synthesize (or data with pool_size) first, or fix annotate.tables"
        )
    frame = pd.concat([ctx.run.records.read(name) for name in cfg.tables], ignore_index=True)
    return frame.head(cfg.limit) if cfg.limit else frame


def _tagged(ctx: StageContext, examples: list[AbsaExample], task: AbsaTask) -> list[AbsaExample]:
    """The sentences with the aspects a seed-trained tagger finds (the teacher gives the polarities)."""
    train_cfg: TaggerConfig = ctx.section("train") or TaggerConfig()
    cfg = TaggerConfig(**{k: getattr(train_cfg, k) for k in TaggerConfig.model_fields})
    scheme = TagScheme(tuple(task.labels))
    seed, dev = examples_of(ctx.run.records.read(t.SEED)), examples_of(ctx.run.records.read(t.DEV))
    with torch_threads(getattr(train_cfg, "threads", 1)):
        fitted = fit_tagger(
            cfg,
            training_set(seed, [], 1.0),
            scheme,
            dev=dev,
            run=ctx.run,
            name="annotate-tagger",
            seed=ctx.seed,
        )
        found = predict_aspects(fitted.model, fitted.tokenizer, scheme, examples, max_length=cfg.max_length)
    return [AbsaExample(e.id, e.sentence, found[e.id]) for e in examples]


def _polarity(ctx: StageContext, cfg: AnnotateConfig, task: AbsaTask, examples: list[AbsaExample]) -> tuple:
    if cfg.aspects == "tagger":
        examples = _tagged(ctx, examples, task)
    words = polarity_words(task.labels, cfg.words)
    items = [(e.sentence, a.term) for e in examples for a in e.aspects]
    logp = score_aspects(ctx.teacher, items, words)
    content_free = (
        score_aspects(ctx.teacher, list(CONTENT_FREE), words) if cfg.calibration == "contextual" else None
    )
    probs = calibrate_polarities(logp, cfg.calibration, content_free)
    tag, rows, k, agree = f"{ctx.teacher.backend}:{ctx.teacher.model_id}", [], 0, []
    for e in examples:
        dists = [dict(zip(task.labels, map(float, probs[k + j]))) for j in range(len(e.aspects))]
        candidates = [
            [
                task.labels[i]
                for i in cal.candidate_set(
                    probs[k + j], threshold=cfg.candidate_threshold, mass=cfg.candidate_mass
                )
            ]
            for j in range(len(e.aspects))
        ]
        k += len(e.aspects)
        relabelled = tuple(
            Aspect(a.start, a.end, a.term, max(q, key=q.get)) for a, q in zip(e.aspects, dists)
        )
        agree += [a.polarity == b.polarity for a, b in zip(e.aspects, relabelled)]
        rows.append(
            {
                "id": e.id,
                "sentence": e.sentence,
                "aspects": dump_aspects(relabelled),
                "distributions": json.dumps(dists),
                "candidates": json.dumps(candidates),
                "raw_label": "",
                "mode": "polarity",
                "teacher": tag,
                "prompt_hash": record_id(
                    [polarity_words(task.labels, cfg.words)], [a.term for a in e.aspects]
                ),
            }
        )
    counts = probs.argmax(-1) if len(probs) else np.zeros(0, dtype=int)
    summary = {
        "aspects_scored": len(items),
        "calibration": cfg.calibration,
        "unsure_aspects": sum(len(c) > 1 for r in rows for c in json.loads(r["candidates"])),
        "polarity_counts": {q: int((counts == i).sum()) for i, q in enumerate(task.labels)},
        "agreement_with_previous_label": float(np.mean(agree)) if agree and cfg.aspects == "gold" else None,
    }
    return rows, summary


def _shots(seed: list[AbsaExample], sentences: list[str], k: int) -> list[list[AbsaExample]]:
    """The ``k`` seed sentences most similar to each sentence (TF-IDF cosine), the most similar first."""
    if not k or not seed:
        return [[] for _ in sentences]
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(
        [e.sentence for e in seed] + sentences
    )
    similarity = (
        vectoriser.transform(sentences) @ vectoriser.transform([e.sentence for e in seed]).T
    ).toarray()
    return [[seed[j] for j in np.argsort(-row, kind="stable")[:k]] for row in similarity]


def _generate(ctx: StageContext, cfg: AnnotateConfig, task: AbsaTask, examples: list[AbsaExample]) -> tuple:
    seed = examples_of(ctx.run.records.read(t.SEED))
    shots = _shots(seed, [e.sentence for e in examples], cfg.shots)
    prompts = [pairs_prompt(e.sentence, s, task.labels) for e, s in zip(examples, shots)]
    answers = ctx.teacher.generate(
        prompts, SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=0.0)
    )
    tag, rows, parsed, normed, issues = f"{ctx.teacher.backend}:{ctx.teacher.model_id}", [], [], [], Issues()
    for e, prompt, answer in zip(examples, prompts, answers):
        p = parse_pairs(answer[0].text)
        n = normalise(e.sentence, p.pairs, task, where=e.id)
        parsed.append(p)
        normed.append(n)
        issues.merge(n.issues)
        rows.append(
            {
                "id": e.id,
                "sentence": e.sentence,
                "aspects": dump_aspects(n.aspects),
                "distributions": "",
                "raw_label": json.dumps(p.pairs),
                "mode": "generate",
                "teacher": tag,
                "prompt_hash": record_id(prompt),
            }
        )
    return rows, {"generation": generation_rates(parsed, normed), "issues": issues.summary()}


def run(ctx: StageContext) -> dict:
    cfg: AnnotateConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    frame = _inputs(ctx, cfg)
    examples = examples_of(frame) if "aspects" in frame else []
    teacher = ctx.teacher  # a missing teacher section fails here, before any tagger is trained
    rows, summary = (_polarity if cfg.mode == "polarity" else _generate)(ctx, cfg, task, examples)
    split = dict(zip(frame["id"], frame["split"]))
    ctx.run.records.replace(
        t.ANNOTATED, [{**r, "split": split.get(r["id"], "")} for r in rows], stage=ctx.name
    )
    summary = {
        "mode": cfg.mode,
        "sentences": len(rows),
        "teacher": f"{teacher.backend}:{teacher.model_id}",
        **summary,
    }
    ctx.run.write_json(t.ANNOTATE_SUMMARY, summary)
    return {"sentences": len(rows), "mode": cfg.mode}
