"""The ``data`` stage: seed, dev and test sentences (optionally a harder test set and an unlabelled pool).

Either a SemEval dataset (``dataset: lap``, with ``seed_split: sample2`` or ``sample5``, from ``absa_dir``,
else ``$PROTEGE_ABSA_DIR``, else ``../shared/data/absa``) or the user's own JSON / JSON-lines files
(``seed_file``, ``dev_file``, ``test_file``) in the same shape. Data issues (offsets repaired, unknown
polarities, dropped conflicts, ...) are counted per split in ``artifacts/data.json``; a missing folder or
file, an unknown dataset or an incomplete set of files is an error naming the key, raised before anything is
read.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from protege.core import console
from protege.core.section import Section
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.data import HARD_TEST, Loaded, absa_folder, load_semeval, read_absa_file, semeval_path
from protege.tasks.absa.rows import example_rows
from protege.tasks.absa.task import AbsaExample, AbsaTask


class DataConfig(Section):
    """Where the labelled sentences come from."""

    dataset: Optional[Literal["lap", "res", "res15"]] = Field(
        None,
        description="SemEval dataset: lap (2014 laptops), res (2014 restaurants), res15 (2015 restaurants). "
        "Leave out to use seed_file/dev_file/test_file.",
    )
    seed_split: str = Field(
        "sample2",
        description="The seed: sample2 or sample5 (DS²-ABSA's 2 %/5 % subsets) or "
        "train (the full training set: the ceiling).",
    )
    absa_dir: Optional[str] = Field(
        None,
        description="The SemEval folder; default $PROTEGE_ABSA_DIR, else "
        "../shared/data/absa beside the checkout.",
    )
    seed_file: Optional[str] = Field(
        None, description="Your labelled seed sentences (JSON list or JSON lines)."
    )
    dev_file: Optional[str] = Field(None, description="Your labelled dev sentences.")
    test_file: Optional[str] = Field(None, description="Your labelled test sentences.")
    hard_test: bool = Field(
        True, description="Also load the harder test set when the dataset has one (lap, res)."
    )
    dev_size: Optional[int] = Field(
        None,
        ge=1,
        description="Keep at most this many dev sentences (a seeded sample): "
        "dev is scored at every evaluation of every training.",
    )
    test_size: Optional[int] = Field(
        None, ge=1, description="Keep at most this many test sentences (quick runs)."
    )
    pool_size: int = Field(
        0,
        ge=0,
        description="Unlabelled sentences taken from the dataset's train split (not in "
        "the seed) for annotate to label; 0 for none.",
    )

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        files = {k: getattr(self, k) for k in ("seed_file", "dev_file", "test_file")}
        if self.dataset is None and not all(files.values()):
            missing = [k for k, v in files.items() if not v]
            raise ValueError(
                f"data: set data.dataset (lap, res, res15) or all of seed_file/dev_file/test_file; "
                f"missing {missing}"
            )
        if self.dataset is not None and any(files.values()):
            raise ValueError("data: give data.dataset or the three *_file keys, not both")
        if self.pool_size and self.dataset is None:
            raise ValueError(
                "data.pool_size needs data.dataset (the pool comes from its train split); set it to 0"
            )
        return self


def _sample(examples: list[AbsaExample], size: Optional[int], seed: int) -> list[AbsaExample]:
    if size is None or size >= len(examples):
        return examples
    picked = sorted(random.Random(seed).sample(range(len(examples)), size))
    return [examples[i] for i in picked]


def _check_paths(cfg: DataConfig) -> None:
    """Configuration problems surface here, before any file is read."""
    if cfg.dataset is None:
        for key in ("seed_file", "dev_file", "test_file"):
            if not Path(getattr(cfg, key)).expanduser().is_file():
                raise FileNotFoundError(
                    f"data.{key}: no such file {getattr(cfg, key)}; give the path of a JSON or "
                    "JSON-lines file of {ID, sentence, aspects}"
                )
        return
    absa_folder(cfg.absa_dir)
    for split in ("dev", "test", cfg.seed_split):
        path = semeval_path(cfg.dataset, split, cfg.absa_dir)
        if not path.is_file():
            raise FileNotFoundError(f"data.seed_split/dataset: {path} does not exist; check data.absa_dir")


def load_splits(cfg: DataConfig, task: AbsaTask) -> dict[str, Loaded]:
    """The loaded splits by table name (seed, dev, test, and hard_test / pool when asked for)."""
    _check_paths(cfg)
    if cfg.dataset is None:
        return {
            t.SEED: read_absa_file(cfg.seed_file, task),
            t.DEV: read_absa_file(cfg.dev_file, task),
            t.TEST: read_absa_file(cfg.test_file, task),
        }
    out = {
        t.SEED: load_semeval(cfg.dataset, cfg.seed_split, task, cfg.absa_dir),
        t.DEV: load_semeval(cfg.dataset, "dev", task, cfg.absa_dir),
        t.TEST: load_semeval(cfg.dataset, "test", task, cfg.absa_dir),
    }
    if cfg.hard_test and cfg.dataset in HARD_TEST:
        out[t.HARD] = load_semeval(cfg.dataset, "hard", task, cfg.absa_dir)
    if cfg.pool_size:
        train = load_semeval(cfg.dataset, "train", task, cfg.absa_dir)
        seen = {e.sentence for e in out[t.SEED].examples}
        unlabelled = [AbsaExample(e.id, e.sentence) for e in train.examples if e.sentence not in seen]
        out[t.POOL] = Loaded(unlabelled, source=train.source)
    return out


def run(ctx: StageContext) -> dict:
    cfg: DataConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    loaded = load_splits(cfg, task)
    sizes = {t.DEV: cfg.dev_size, t.TEST: cfg.test_size, t.POOL: cfg.pool_size or None}
    summary: dict = {"dataset": cfg.dataset or "files", "seed_split": cfg.seed_split, "splits": {}}
    for name, part in loaded.items():
        examples = _sample(part.examples, sizes.get(name), ctx.seed)
        ctx.run.records.replace(name, example_rows(examples, name, part.source), stage=ctx.name)
        polarities = Counter(a.polarity for e in examples for a in e.aspects)
        summary["splits"][name] = {
            "sentences": len(examples),
            "aspects": sum(polarities.values()),
            "without_aspects": sum(not e.aspects for e in examples),
            "polarities": dict(polarities),
            "issues": part.issues.summary(),
            "source": part.source,
        }
        if part.issues:
            console.info(f"data: {name}: {dict(part.issues.counts)}")
    ctx.run.write_json(t.DATA_SUMMARY, summary)
    return {name: s["sentences"] for name, s in summary["splits"].items()}
