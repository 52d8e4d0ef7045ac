"""Records: examples with their provenance, stored as Parquet shards under ``<run>/records/<table>/``.

A table is append-only. Each ``append`` writes one new shard atomically (temp file, then rename), so a crash
loses at most the batch being written and never leaves a torn file. Reading concatenates the shards and keeps
the last version of each ``id``, so re-writing a record after a resume never duplicates it. A shard that cannot
be read (a disk fault, a hand edit) raises :class:`~protege.core.errors.ShardCorrupt` naming the file; the
runner adds which stage to re-run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from protege.core.errors import ShardCorrupt

# Columns every record carries, whatever the task: where it came from and what made it.
PROVENANCE = {
    "id": "stable identifier: a hash of the source and the content",
    "source": "dataset or generator the example came from",
    "split": "train | dev | test | pool",
    "stage": "the stage that wrote this version of the record",
    "teacher": "backend:model of the teacher that annotated or generated it, empty if none",
    "prompt_hash": "hash of the rendered prompt sent to the teacher, empty if none",
    "parent_id": "id of the record this one was derived from (augmentation), empty if none",
    "reason": "why a selection stage kept it, empty otherwise",
    "created_at": "unix time this version was written",
}


def record_id(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RecordStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def tables(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.parquet")))

    def append(self, table: str, rows: Iterable[dict], *, stage: str = "") -> int:
        """Write ``rows`` as one new shard; fills missing provenance columns. Returns the number written."""
        rows = list(rows)
        if not rows:
            return 0
        now = time.time()
        for row in rows:
            if "id" not in row:
                raise ValueError(f"record for table {table!r} has no 'id': {sorted(row)}")
            # pandas spells a missing value NaN even in a column of strings (an unlabelled text's gold label);
            # Arrow would then type the column from its first rows and refuse the strings after them.
            for key, value in row.items():
                if isinstance(value, float) and math.isnan(value):
                    row[key] = None
            for col in PROVENANCE:
                row.setdefault(col, "")
            row["stage"] = row["stage"] or stage
            row["created_at"] = now
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns():020d}-{os.getpid()}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(pa.Table.from_pylist(rows), tmp)
        os.replace(tmp, folder / name)
        return len(rows)

    def read(self, table: str) -> pd.DataFrame:
        """All records of ``table``, last version of each id, in first-written order."""
        shards = sorted((self.root / table).glob("part-*.parquet"))
        if not shards:
            return pd.DataFrame(columns=list(PROVENANCE))
        frame = pd.concat([_read(s, table).to_pandas() for s in shards], ignore_index=True)
        return frame.drop_duplicates("id", keep="last").reset_index(drop=True)

    def __call__(self, table: str, *, as_dataset: bool = False) -> Any:
        """``run.records("pool")``: the table de-duplicated, as a pandas frame (or a ``datasets.Dataset``).

        A name that is not a table of the run is an error listing the tables it has.
        """
        if table not in self.tables():
            from protege.core.errors import UserError

            raise UserError(f"the run has no table {table!r}; it has: {', '.join(self.tables()) or 'none yet'}")
        frame = self.read(table)
        if not as_dataset:
            return frame
        import datasets

        return datasets.Dataset.from_pandas(frame, preserve_index=False)

    def ids(self, table: str) -> set[str]:
        shards = sorted((self.root / table).glob("part-*.parquet"))
        return {i for s in shards for i in _read(s, table, columns=["id"]).column("id").to_pylist()}

    def count(self, table: str) -> int:
        return len(self.ids(table))

    def drop(self, table: str) -> None:
        """Remove a whole table (a stage about to rewrite it with other settings)."""
        folder = self.root / table
        if folder.exists():
            for shard in folder.glob("*.parquet*"):
                shard.unlink()

    def replace(self, table: str, rows: Iterable[dict], *, stage: str = "") -> int:
        """Atomically swap the whole table for ``rows`` (used by stages that rewrite their output)."""
        folder = self.root / table
        old = sorted(folder.glob("part-*.parquet")) if folder.exists() else []
        written = self.append(table, rows, stage=stage)
        for shard in old:
            shard.unlink()
        return written


def _read(shard: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(shard, columns=columns)
    except (pa.ArrowException, OSError) as exc:
        raise ShardCorrupt(f"records shard {shard} of table {table!r} cannot be read ({exc})", path=shard,
                           table=table) from None
