"""The teacher-call ledger: one SQLite file (WAL) that remembers every teacher answer and every finished stage.

Every teacher request is keyed by a hash of backend, model, method, the single item asked about and the
parameters. A request whose key is present is answered from the ledger, so re-running a recipe after a crash
or a kill pays for no call twice. Each answer is committed as soon as it arrives.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    method TEXT NOT NULL,
    request BLOB NOT NULL,
    response BLOB NOT NULL,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    latency_s REAL NOT NULL DEFAULT 0,
    cost REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    summary TEXT,
    signature TEXT,
    inputs TEXT
);
"""
# Columns added after the first release; a ledger written before gets them on open.
_ADDED_COLUMNS = {"stages": ("signature TEXT", "inputs TEXT")}


def call_key(backend: str, model: str, method: str, item: Any, params: Any) -> str:
    """Stable hash of one teacher request; JSON with sorted keys so dict order never changes the key."""
    blob = json.dumps([backend, model, method, item, params], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _pack(obj: Any) -> bytes:
    return zlib.compress(json.dumps(obj, ensure_ascii=False).encode(), 3)


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


@dataclass
class CallRecord:
    key: str
    backend: str
    model: str
    method: str
    request: Any
    response: Any
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cost: float = 0.0


@dataclass
class LedgerTotals:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost: float


class Ledger:
    """Thread-safe access to ``ledger.sqlite``; one connection per thread, as sqlite3 requires."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(SCHEMA)
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a process kill without losing committed rows; only power loss could.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- teacher calls -------------------------------------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found: dict[str, Any] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in conn.execute(f"SELECT key, response FROM calls WHERE key IN ({marks})", chunk):
                found[key] = _unpack(blob)
        return found

    def put_many(self, records: Iterable[CallRecord]) -> None:
        now = time.time()
        rows = [
            (r.key, r.backend, r.model, r.method, _pack(r.request), _pack(r.response), r.prompt_tokens,
             r.completion_tokens, r.latency_s, r.cost, now)
            for r in records
        ]
        with self._conn() as conn:
            conn.executemany("INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)

    def totals(self) -> LedgerTotals:
        row = self._conn().execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COALESCE(SUM(latency_s),0), COALESCE(SUM(cost),0) FROM calls"
        ).fetchone()
        return LedgerTotals(*row)

    def totals_by_method(self) -> dict[str, LedgerTotals]:
        rows = self._conn().execute(
            "SELECT method, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), SUM(latency_s), SUM(cost)"
            " FROM calls GROUP BY method ORDER BY method"
        )
        return {m: LedgerTotals(*rest) for m, *rest in rows}

    # -- stages --------------------------------------------------------------------------------------------
    def stage_status(self, name: str) -> str | None:
        row = self._conn().execute("SELECT status FROM stages WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def mark_stage(self, name: str, status: str, summary: dict | None = None, *, signature: str | None = None,
                   inputs: dict | None = None) -> None:
        """``running`` records the stage's signature and the settings behind it; any other status its summary."""
        now = time.time()
        with self._conn() as conn:
            if status == "running":
                conn.execute(
                    "INSERT INTO stages(name,status,started_at,signature,inputs) VALUES(?,?,?,?,?) ON CONFLICT(name)"
                    " DO UPDATE SET status=excluded.status, started_at=excluded.started_at, finished_at=NULL,"
                    " signature=excluded.signature, inputs=excluded.inputs",
                    (name, status, now, signature, json.dumps(inputs, default=str) if inputs is not None else None),
                )
            else:
                conn.execute(
                    "UPDATE stages SET status=?, finished_at=?, summary=? WHERE name=?",
                    (status, now, json.dumps(summary or {}, default=str), name),
                )

    def stages(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT name, status, started_at, finished_at, summary, signature, inputs FROM stages ORDER BY started_at"
        )
        return [
            {"name": n, "status": s, "started_at": a, "finished_at": b, "summary": json.loads(m) if m else {},
             "signature": sig, "inputs": json.loads(i) if i else None}
            for n, s, a, b, m, sig, i in rows
        ]
