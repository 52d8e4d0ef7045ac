"""The ``train`` stage: the tagger student on the seed plus the synthetic rows, and the seed-only baseline.

Synthetic rows come with their current label (:mod:`protege.tasks.absa.labels`: refined, else annotated, else
normalised) at ``synthetic_weight``; with polarity annotations and ``soft_targets`` their aspects learn the
teacher's polarity distribution. The student is saved as a plain transformers folder (``artifacts/student``,
``AutoModelForTokenClassification`` + ``AutoTokenizer``); ``seed_baseline`` also trains the same tagger on the
seed alone (``artifacts/seed_student``), the comparison that says whether the synthetic data helped.

With ``pretrain`` the encoder first continues pre-training as a masked LM on the run's rationales (or on the
reviews alone, the control) — :mod:`protege.tasks.absa.pretrain` — and every tagger of the stage starts from
that encoder (``artifacts/pretrained_encoder``); ``train.json`` records what it was pre-trained on.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from protege.core import console
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.labels import Source, synthetic_examples
from protege.tasks.absa.pretrain import PretrainConfig, corpus_texts, pretrain_encoder
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
    pretrain: Optional[PretrainConfig] = Field(
        None, description="Masked-LM continued pre-training of the encoder on the rationales stage's texts "
        "before the taggers are trained; null: none.",
    )
    threads: int = Field(
        1,
        ge=1,
        description="torch CPU threads while training: on a small shared CPU, extra "
        "intra-op threads spin rather than help.",
    )


def _fit(ctx: StageContext, cfg: TrainConfig, name: str, rows, dev, scheme: TagScheme, info: dict,
         encoder: Optional[str]) -> dict:
    base = TaggerConfig(**{k: getattr(cfg, k) for k in TaggerConfig.model_fields})
    if encoder is not None:
        base = base.model_copy(update={"student": encoder})
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


def _pretrain(ctx: StageContext, cfg: TrainConfig) -> tuple[Optional[str], Optional[dict]]:
    """The pre-trained encoder's folder and what it learnt from; (None, None) without ``pretrain``."""
    if cfg.pretrain is None:
        return None, None
    if t.RATIONALES not in ctx.run.records.tables():
        raise ValueError(
            "train.pretrain reads the rationales stage's table, which this run does not have: add a "
            "'rationales:' section (e.g. mode: import, reviews_file: fsa_mixtral) or remove train.pretrain"
        )
    texts, info = corpus_texts(ctx.run.records.read(t.RATIONALES), cfg.pretrain)
    folder = ctx.run.artifact(t.PRETRAINED)
    info.update(pretrain_encoder(cfg.student, texts, cfg.pretrain, folder, run=ctx.run, name=t.PRETRAINED,
                                 seed=ctx.seed))
    console.info(f"train: encoder pre-trained (masked LM) on {info['texts']} {info['corpus']} texts, "
                 f"{info['steps']} steps, loss {info['first_loss']} -> {info['last_loss']}")
    return str(folder), info


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
        encoder, pretrained = _pretrain(ctx, cfg)
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
                    "pretrained": pretrained,
                },
                encoder,
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
                {"synthetic": "none", "synthetic_rows": 0, "soft_targets": False, "pretrained": pretrained},
                encoder,
            )
    ctx.run.write_json(t.TRAINED, trained)
    console.info(f"train: student on {len(seed)} seed + {len(synthetic)} synthetic ({source}) sentences")
    return {
        name: {"rows": v["rows"], "best_dev_pair_f1": v["best_dev_pair_f1"]} for name, v in trained.items()
    }
