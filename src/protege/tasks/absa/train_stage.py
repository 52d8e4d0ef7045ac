"""The ``train`` stage: the tagger student on the seed plus the synthetic rows, and the seed-only baseline.

Synthetic rows come with their current label (:mod:`protege.tasks.absa.labels`: refined, else annotated, else
normalised) at ``synthetic_weight``; with polarity annotations and ``soft_targets`` their aspects learn the
teacher's polarity distribution. The student is saved as a plain transformers folder (``artifacts/student``,
``AutoModelForTokenClassification`` + ``AutoTokenizer``); ``seed_baseline`` also trains the same tagger on the
seed alone (``artifacts/seed_student``), the comparison that says whether the synthetic data helped.
"""

from __future__ import annotations

from pydantic import Field

from protege.core import console
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.labels import Source, synthetic_examples
from protege.tasks.absa.rows import examples_of
from protege.tasks.absa.student import torch_threads, training_set
from protege.tasks.absa.tagger import TaggerConfig, fit_tagger, save_tagger
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaTask


class TrainConfig(TaggerConfig):
    """The tagger student and what it learns from."""

    synthetic: Source = Field(
        "auto",
        description="Synthetic labels learnt: auto (refined, else annotated, else "
        "normalised), refined, annotated, normalised, published, raw, or none.",
    )
    synthetic_weight: float = Field(0.5, gt=0, le=1, description="Loss weight of a synthetic sentence.")
    soft_targets: bool = Field(True, description="Learn polarity distributions where annotate scored them.")
    seed_baseline: bool = Field(True, description="Also train the tagger on the seed alone, for comparison.")
    threads: int = Field(
        1,
        ge=1,
        description="torch CPU threads while training: on a small shared CPU, extra "
        "intra-op threads spin rather than help.",
    )


def _fit(ctx: StageContext, cfg: TrainConfig, name: str, rows, dev, scheme: TagScheme, info: dict) -> dict:
    base = TaggerConfig(**{k: getattr(cfg, k) for k in TaggerConfig.model_fields})
    fitted = fit_tagger(base, rows, scheme, dev=dev, run=ctx.run, name=name, seed=ctx.seed)
    save_tagger(fitted.model, fitted.tokenizer, ctx.run.artifact(name), scheme, info)
    evals = [e["dev_pair_f1"] for e in fitted.result.evaluations if "dev_pair_f1" in e]
    return {
        **info,
        "rows": len(rows),
        "steps": fitted.result.steps,
        "lost_aspects": fitted.lost_aspects,
        "best_dev_pair_f1": max(evals) if evals else None,
        "seconds": round(fitted.result.seconds, 1),
    }


def run(ctx: StageContext) -> dict:
    cfg: TrainConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    scheme = TagScheme(tuple(task.labels))
    seed, dev = examples_of(ctx.run.records.read(t.SEED)), examples_of(ctx.run.records.read(t.DEV))
    if not seed:
        raise ValueError(
            "train: the seed table is empty; run the data stage (data.seed_split / data.seed_file)"
        )
    source, synthetic, dists = synthetic_examples(ctx.run, cfg.synthetic, task)
    with torch_threads(cfg.threads):
        trained = {
            t.STUDENT: _fit(
                ctx,
                cfg,
                t.STUDENT,
                training_set(seed, synthetic, cfg.synthetic_weight, dists if cfg.soft_targets else None),
                dev,
                scheme,
                {
                    "synthetic": source,
                    "synthetic_rows": len(synthetic),
                    "soft_targets": bool(dists) and cfg.soft_targets,
                },
            )
        }
        if cfg.seed_baseline:
            trained[t.SEED_STUDENT] = _fit(
                ctx,
                cfg,
                t.SEED_STUDENT,
                training_set(seed, [], 1.0),
                dev,
                scheme,
                {"synthetic": "none", "synthetic_rows": 0, "soft_targets": False},
            )
    ctx.run.write_json(t.TRAINED, trained)
    console.info(f"train: student on {len(seed)} seed + {len(synthetic)} synthetic ({source}) sentences")
    return {
        name: {"rows": v["rows"], "best_dev_pair_f1": v["best_dev_pair_f1"]} for name, v in trained.items()
    }
