"""The data stage (section ``data``): read the source, write tables ``pool``, ``seed``, ``dev`` and ``test``.

Every row has ``text``, ``gold`` (the gold label name, None when unknown) and ``gold_index`` (position in
``task.labels``, -1 when unknown), plus provenance. ``pool`` holds the unlabelled texts the teacher annotates;
it keeps their gold labels only so the teacher can be measured: no stage trains on ``pool.gold``. ``seed`` is
the small gold-labelled set (teacher preparation, a gold baseline), ``dev`` is for choices (calibration,
early stopping), ``test`` for the final numbers. Ids hash the source and the text, so the four tables never
share an id (test texts are removed from the others) and re-running rewrites the same ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import PATH, Section
from protege.core.records import record_id
from protege.tasks.classify import tables
from protege.tasks.classify.task import label_indices
from protege.data.files import is_missing
from protege.data.packaged import PACKAGED
from protege.data.sources import load_source
from protege.data.splits import SplitSizes, split

if TYPE_CHECKING:
    from protege.stage import StageContext
    from protege.tasks.classify.task import ClassificationTask


class DataConfig(Section):
    """Where the texts come from and how they are split."""

    source: str = Field(
        description="A packaged dataset (drug-reviews, bbc-news, sst2, sentiment-<set> for fin, poem, tweet-emo, "
        "emocontext, laptop, rest), a .csv/.tsv/.jsonl/.json/.parquet "
        "file, or hf:<hub id or local folder> read by the datasets library.", json_schema_extra=PATH
    )
    test_source: Optional[str] = Field(
        None, description="A separate file (or hf:...) holding the test texts; otherwise the source's own "
        "test split, or test_fraction of its texts.", json_schema_extra=PATH
    )
    data_dir: Optional[Path] = Field(
        None, description="sst2: folder holding train.tsv and dev.tsv (default $PROTEGE_SST2_DIR, else "
        "../shared/data/sst2 beside a source checkout); sentiment-<set>: the collection's folder, holding e.g. "
        "SC/fin/train.csv (default $PROTEGE_SENTIMENT_DIR, else ../shared/data/sentiment).", json_schema_extra=PATH
    )
    text_column: str = Field("text", description="Column holding the texts (files and hf sources).")
    label_column: Optional[str] = Field(
        "label", description="Column holding the gold labels (names, or positions in task.labels); a source "
        "without it is unlabelled."
    )
    pool_size: Optional[int] = Field(
        None, ge=1, description="Unlabelled texts to keep for the teacher; all if unset. More than there are is "
        "refused, never silently cut."
    )
    seed_size: int = Field(0, ge=0, description="Gold-labelled training examples (stratified); 0 for none.")
    dev_size: int = Field(200, ge=0, description="Gold-labelled development examples (stratified): they choose "
                          "the teacher's calibration (30 or more for that) and stop training early.")
    test_size: Optional[int] = Field(
        None, ge=1, description="Gold test examples (stratified), drawn from labelled texts only and taken "
        "exactly or refused. Unset: the whole test split, or test_fraction of the labelled texts when the "
        "source has none."
    )
    test_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of the labelled texts held out as test when the source has no test "
        "split and test_size is unset."
    )
    seed: Optional[int] = Field(None, description="Seed for the splits; the recipe's seed if unset.")
    max_chars: int = Field(
        1000, ge=16, description="Texts are cut to this many characters (teacher cost grows with it)."
    )


def gold_names(task: "ClassificationTask", labels: list, where: str) -> list[str | None]:
    """Raw gold values (names, or positions in ``task.labels``) as label names.

    A missing value (None, NaN, a blank, ``null`` or ``NaN`` cell: :func:`~protege.data.files.is_missing`) means
    unlabelled, in every file format, unless it is itself one of the task's labels.
    """
    names_set = set(task.labels)
    known = [i for i, v in enumerate(labels) if v in names_set or not is_missing(v)]
    names: list[str | None] = [None] * len(labels)
    for i, index in zip(known, label_indices(task, [labels[i] for i in known], where=where)):
        names[i] = task.labels[index]
    return names


def run(ctx: "StageContext") -> dict:
    cfg: DataConfig = ctx.config
    task = ctx.require_task()
    if task is None:
        raise UserError("stage 'data' needs a 'task:' section: the labels the gold labels are mapped onto")
    splits = load_source(
        cfg.source, text_column=cfg.text_column, label_column=cfg.label_column, test_source=cfg.test_source,
        data_dir=cfg.data_dir,
    )
    known = PACKAGED.get(cfg.source)
    hint = f" (for {cfg.source}: task.labels {list(known.labels)})" if known else ""
    for name, frame in splits.items():  # map gold labels first: a wrong label set fails before any work
        names = gold_names(task, frame["label"].tolist(), f"{cfg.source} [{name}]{hint}")
        splits[name] = frame.assign(label=names)
    sizes = SplitSizes(seed=cfg.seed_size, dev=cfg.dev_size, test=cfg.test_size, pool=cfg.pool_size,
                       test_fraction=cfg.test_fraction)
    seed = ctx.seed if cfg.seed is None else cfg.seed
    frames = split(splits, sizes, seed=seed, max_chars=cfg.max_chars)
    summary: dict = {}
    for name in tables.SPLITS:
        frame = frames[name]
        gold = [g if isinstance(g, str) else None for g in frame["label"]]
        index = [task.labels.index(g) if g is not None else -1 for g in gold]
        rows = [
            {"id": record_id(cfg.source, text), "source": cfg.source, "split": name, "text": text, "gold": g,
             "gold_index": i}
            for text, g, i in zip(frame["text"], gold, index)
        ]
        ctx.run.records.replace(name, rows, stage=ctx.name)
        counts = {label: sum(g == label for g in gold) for label in task.labels}
        summary[name] = len(rows)
        summary[f"{name}_labels"] = counts
    if summary["test"]:
        majority = max(summary["test_labels"].values()) / summary["test"]
        summary["test_majority"] = round(majority, 4)
        console.info(
            f"data: pool {summary['pool']}, seed {summary['seed']}, dev {summary['dev']}, "
            f"test {summary['test']} (majority class {majority:.1%} of test)"
        )
    ctx.run.write_json(tables.DATA_SUMMARY, summary)
    return summary
