"""What the classifier stages read from a run: teacher-labelled training texts, the teacher-labelled dev split,
the gold seed and the gold test split, as :class:`~protege.tasks.classify.student.Examples` or arrays; and from the
recipe, the train settings and labels the stages that train students share.

Tables come from the front half of the pipeline: ``seed``/``dev``/``test`` (``text``, ``gold_index``) from the
data stage, ``annotated`` (``split``, ``teacher_probs``, ``teacher_index``) from annotate, ``selected`` from select.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from protege.core.errors import UserError
from protege.core.run import Run
from protege.tasks.classify.student import ClassifierTrainConfig, Examples
from protege.tasks.classify import tables
from protege.tasks.classify.candidates import name_sets

if TYPE_CHECKING:
    from protege.stage import StageContext


def train_settings(ctx: "StageContext", why: str) -> tuple[ClassifierTrainConfig, list[str]]:
    """The recipe's ``train`` section and task labels, for a stage that trains a student with them."""
    train = ctx.section("train")
    if train is None or ctx.task is None:
        raise UserError(f"stage {ctx.name!r} {why}: the recipe needs 'task:' and 'train:' sections")
    return train, ctx.task.labels


def _need(frame: pd.DataFrame, columns: tuple[str, ...], what: str, fix: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if not len(frame) or missing:
        raise UserError(f"{what} is empty or lacks columns {missing or list(columns)}: {fix}")
    return frame


def teacher_examples(frame: pd.DataFrame, targets: Literal["soft", "hard", "candidates"],
                     labels: list[str]) -> Examples:
    """Rows with the teacher's distribution (soft), its top label (hard) or its candidate set (candidates: the
    ``candidates`` column, label names) as the target."""
    texts = frame["text"].tolist()
    if targets == "hard":
        return Examples.from_labels(texts, frame["teacher_index"].astype(int).tolist(), len(labels))
    probs = np.stack([np.asarray(p, dtype=np.float64) for p in frame["teacher_probs"]])
    if probs.shape[1] != len(labels):
        raise ValueError(f"teacher_probs have {probs.shape[1]} classes but the task has {len(labels)} labels; "
                         "re-run annotate after changing task.labels")
    probs = probs / probs.sum(1, keepdims=True)
    if targets == "candidates":
        if "candidates" not in frame.columns:
            raise UserError("train.targets: candidates needs the 'candidates' column annotate writes; the training "
                            "table has none: re-run annotate, or use targets soft or hard")
        return Examples.from_candidates(texts, probs, name_sets(frame["candidates"].tolist(), labels))
    return Examples.from_soft(texts, probs)


def training_table(run: Run, table: str) -> pd.DataFrame:
    return _need(run.records.read(table), ("text", "teacher_probs", "teacher_index"), f"table {table!r}",
                 "run the annotate and select stages first, or point train.train_table at a teacher-labelled table")


def annotated_split(run: Run, split: str) -> pd.DataFrame:
    """The annotated rows of one split (``dev`` or ``test``), each with the teacher's label and distribution."""
    table = run.records.read(tables.ANNOTATED)
    if len(table) and "split" in table.columns:
        table = table[table["split"] == split].reset_index(drop=True)
    return _need(table, ("text", "teacher_probs", "teacher_index"), f"the teacher-labelled {split} split",
                 f"keep '{split}' in annotate.tables so the teacher labels it")


def dev_targets(run: Run, how: str) -> tuple[list[str], np.ndarray, str]:
    """Dev texts, the labels early stopping aims at, and whose they are (``gold`` or ``teacher``), for
    ``train.dev_target`` ``how``: gold when asked, or with ``auto`` when every dev text has a gold label."""
    dev = annotated_split(run, tables.DEV)
    gold = dev["gold_index"].fillna(-1).astype(int).to_numpy() if "gold_index" in dev.columns else np.array([])
    complete = len(dev) > 0 and gold.size == len(dev) and bool((gold >= 0).all())
    if how == "gold" and not complete:
        raise UserError(f"train.dev_target: gold, but {int((gold < 0).sum()) if gold.size else len(dev)} of "
                        f"{len(dev)} dev texts have no gold label; give the dev split gold labels or set "
                        "train.dev_target: auto (teacher labels when gold is missing)")
    if how == "gold" or (how == "auto" and complete):
        return dev["text"].tolist(), gold.astype(np.int64), "gold"
    return dev["text"].tolist(), dev["teacher_index"].to_numpy(dtype=np.int64), "teacher"


def gold_seed(run: Run, num_labels: int) -> Examples:
    """The gold-labelled seed texts (rows without a gold label dropped); empty when the run has no seed."""
    seed = run.records.read(tables.SEED)
    if not len(seed) or "gold_index" not in seed.columns:
        return Examples.from_labels([], [], num_labels)
    seed = seed[seed["gold_index"].fillna(-1).astype(int) >= 0]
    return Examples.from_labels(seed["text"].tolist(), seed["gold_index"].astype(int).tolist(), num_labels)


def gold_test(run: Run) -> pd.DataFrame:
    """Annotated test rows that have a gold label: teacher and students are scored on exactly these."""
    test = annotated_split(run, tables.TEST)
    if "gold_index" not in test.columns:
        raise UserError("the annotated test split has no gold_index column: the data stage must keep gold labels")
    test = test[test["gold_index"].fillna(-1).astype(int) >= 0].reset_index(drop=True)
    if not len(test):
        raise UserError("no test text has a gold label; evaluate needs gold test data (data.label_column)")
    return test
