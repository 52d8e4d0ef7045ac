"""The ``refine`` stage: DS²-ABSA's label refinement of the synthetic rows.

First normalisation (done when the rows were written or imported: grounding, polarity synonyms, order,
de-duplication); this stage reports how many raw labels it changed or dropped. Then ``rounds`` of noisy
self-training (:func:`protege.tasks.absa.student.self_train`): a tagger built like the ``train`` section's
(student, max length, loop), with token-drop and dropout noise, learns seed + synthetic (synthetic at
``weight``), re-predicts the synthetic sentences, and its confident disagreements replace the labels
(:mod:`protege.tasks.absa.refine`). ``artifacts/refine.json`` keeps each round's change rate and dev pair F1.
"""

from __future__ import annotations

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.labels import Source, synthetic_examples
from protege.tasks.absa.refine import RefineConfig
from protege.tasks.absa.rows import dump_aspects, examples_of
from protege.tasks.absa.student import raw_aspects, raw_label_of, self_train, torch_threads
from protege.tasks.absa.tagger import TaggerConfig
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaTask


class RefineStageConfig(Section):
    """Noisy self-training of the synthetic labels."""

    rounds: int = Field(1, ge=0, description="Self-training rounds; 0 reports normalisation only.")
    labels: Source = Field(
        "auto",
        description="The labels refined: auto (annotated if present, else normalised), "
        "annotated, normalised, published, raw.",
    )
    weight: float = Field(
        0.5, gt=0, le=1, description="Loss weight of a synthetic sentence (a seed sentence is 1)."
    )
    token_drop: float = Field(0.1, ge=0, lt=1, description="Input noise: share of labelled pieces masked.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Model noise: dropout set on every dropout layer.")
    threads: int = Field(
        1,
        ge=1,
        description="torch CPU threads while training (extra ones spin on a busy CPU).",
    )
    merge: RefineConfig = Field(
        default_factory=RefineConfig, description="How predictions revise the labels."
    )


def _normalisation(ctx: StageContext, task: AbsaTask) -> dict:
    """How the normalised labels differ from the raw teacher pairs (the published 17-35 %)."""
    frame = ctx.run.records.read(t.SYNTHETIC)
    changed = dropped = pairs = 0
    for sentence, raw, aspects in zip(frame["sentence"], frame["raw_label"], examples_of(frame)):
        raw_pairs = raw_label_of(raw)
        verbatim = raw_aspects(sentence, raw_pairs, task)
        pairs += len(raw_pairs)
        dropped += max(0, len(raw_pairs) - len(aspects.aspects))
        changed += set(verbatim) != set(aspects.aspects)
    return {
        "rows": len(frame),
        "raw_pairs": pairs,
        "pairs_dropped": dropped,
        "rows_changed": changed,
        "rows_changed_rate": changed / len(frame) if len(frame) else 0.0,
    }


def run(ctx: StageContext) -> dict:
    cfg: RefineStageConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    source, synthetic, _ = synthetic_examples(ctx.run, cfg.labels, task, exclude=("refined",))
    train_cfg = ctx.section("train")
    base = (
        TaggerConfig(**{k: getattr(train_cfg, k) for k in TaggerConfig.model_fields})
        if train_cfg
        else TaggerConfig()
    )
    noisy = base.model_copy(update={"token_drop": cfg.token_drop, "dropout": cfg.dropout})
    seed, dev = examples_of(ctx.run.records.read(t.SEED)), examples_of(ctx.run.records.read(t.DEV))
    with torch_threads(cfg.threads):
        refined, history = self_train(
            noisy,
            cfg.merge,
            cfg.rounds,
            seed,
            synthetic,
            dev,
            TagScheme(tuple(task.labels)),
            cfg.weight,
            run=ctx.run,
            random_seed=ctx.seed * 100,
        )
    before = {e.id: e.aspects for e in synthetic}
    ctx.run.records.replace(
        t.REFINED,
        [
            {
                "id": e.id,
                "sentence": e.sentence,
                "aspects": dump_aspects(e.aspects),
                "changed": e.aspects != before[e.id],
                "split": t.SYNTHETIC,
            }
            for e in refined
        ],
        stage=ctx.name,
    )
    summary = {
        "labels": source,
        "normalisation": _normalisation(ctx, task),
        "rounds": [
            {
                "round": h.round,
                "change_rate": h.change_rate,
                "best_dev_pair_f1": h.best_dev_pair_f1,
                **h.summary,
            }
            for h in history
        ],
    }
    ctx.run.write_json(t.REFINE_SUMMARY, summary)
    for h in history:
        console.info(f"refine: round {h.round}: change rate {h.change_rate:.3f}")
    return {"rows": len(refined), "change_rates": [round(h.change_rate, 4) for h in history]}
