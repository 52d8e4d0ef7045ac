"""The teacher-call ledger: one SQLite file (WAL) that remembers every teacher answer and every finished stage.

Every teacher request is keyed by a hash of backend, model, method, the single item asked about and the
parameters. A request whose key is present is answered from the ledger, so re-running a recipe after a crash
or a kill pays for no call twice.

What is guaranteed (with :class:`~protege.models.ledgered.LedgeredTeacher`, the only writer of answers):

* **An answer is durable once it has arrived.** Each answer is committed as soon as the backend hands it over:
  a backend that streams answers (the OpenAI-compatible one) hands each over as its request completes and it is
  committed alone; an in-process backend hands over a batch it computed at once, committed in one transaction.
  A crash, an exception or a ``SIGKILL`` after that point loses nothing paid; re-running pays again only for
  what was in flight at that moment — requests sent and not yet answered (at most the backend's concurrency)
  and, for scoring, candidates already answered for a prompt whose other candidates were not.
* **Committed means on disk for a process kill**, not for a power loss: WAL with ``synchronous=NORMAL`` keeps
  every committed transaction through a kill of the process; a power cut or an OS crash can lose the last
  transactions (never corrupt the file), which the next run simply asks again.
* **An answer is never stored twice and never overwritten**: ``INSERT OR IGNORE`` on the key.
* **Spend is counted where it happens**: every row holds the request's prompt and completion tokens, latency
  and cost. Rows have a ``purpose``: ``answer`` (looked up by later requests), ``timing`` (a request sent to
  time the teacher, paid and counted but never used as an answer) or ``measurement`` (a result computed from
  timed requests, e.g. the teacher's speed, reused instead of timing again; it costs nothing itself).
* **A damaged file is named**: any read or write that finds the database malformed raises
  :class:`~protege.core.errors.LedgerCorrupt` with the path and how to recover.

Not guaranteed: two processes writing one ledger at once each pay for what neither had stored yet; the run
directory's lock (:mod:`protege.core.lock`) prevents that for ``protege run``.
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
from typing import Any, Callable, Iterable, TypeVar

from protege.core.errors import LedgerCorrupt

T = TypeVar("T")
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
    created_at REAL NOT NULL,
    purpose TEXT NOT NULL DEFAULT 'answer'
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
_ADDED_COLUMNS = {"stages": ("signature TEXT", "inputs TEXT"), "calls": ("purpose TEXT NOT NULL DEFAULT 'answer'",)}
PURPOSES = ("answer", "timing", "measurement")
# What SQLite says when the file itself is damaged (as opposed to busy or locked).
_DAMAGE = ("malformed", "not a database", "file is encrypted", "disk image", "database corrupt")


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
    purpose: str = "answer"


@dataclass
class LedgerTotals:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cost: float


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn SQLite's 'database disk image is malformed' into an error naming the file and the way out."""

    def wrapper(self: "Ledger", *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if not any(word in str(exc).lower() for word in _DAMAGE):
                raise
            raise LedgerCorrupt(
                f"the ledger {self.path} is damaged ({exc}). Its answers can usually be saved: "
                f"`sqlite3 {self.path} .recover | sqlite3 {self.path}.recovered`, then move "
                f"{self.path.name}.recovered over {self.path.name} (and delete its -wal and -shm files) and run "
                "the recipe again. Deleting the ledger instead makes the next run pay for every teacher answer "
                "again."
            ) from None

    wrapper.__name__, wrapper.__doc__ = method.__name__, method.__doc__
    return wrapper


def _when_unlocked(step: Callable[[], Any], patience_s: float = 60.0) -> Any:
    """Run ``step``, retrying while SQLite says the database is locked.

    Two processes opening a new ledger at once (the ranks of a distributed run) race to create its tables and to
    switch it to WAL; SQLite answers the loser "database is locked" at once, without waiting for its busy
    timeout (it would otherwise risk a deadlock between two readers that both want to write).
    """
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Ledger:
    """Thread-safe access to ``ledger.sqlite``; one connection per thread, as sqlite3 requires."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._create()

    @_guarded
    def _create(self) -> None:
        conn = self._conn()
        _when_unlocked(lambda: conn.executescript(SCHEMA))
        with conn:
            for table, columns in _ADDED_COLUMNS.items():
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60)
            _when_unlocked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
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
    @_guarded
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found: dict[str, Any] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, blob in conn.execute(f"SELECT key, response FROM calls WHERE key IN ({marks})"
                                          " AND purpose != 'timing'", chunk):
                found[key] = _unpack(blob)
        return found

    @_guarded
    def latency(self, keys: Iterable[str]) -> float:
        """Seconds the answers to ``keys`` took when they were sent (each key once; unknown keys count 0)."""
        keys = list(dict.fromkeys(keys))
        total, conn = 0.0, self._conn()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            row = conn.execute(f"SELECT SUM(latency_s) FROM calls WHERE key IN ({marks}) AND purpose != 'timing'",
                               chunk).fetchone()
            total += row[0] or 0.0
        return total

    @_guarded
    def put_many(self, records: Iterable[CallRecord]) -> None:
        """Store answers in one transaction (committed on return); a key already present is left as it was."""
        now = time.time()
        rows = [
            (r.key, r.backend, r.model, r.method, _pack(r.request), _pack(r.response), r.prompt_tokens,
             r.completion_tokens, r.latency_s, r.cost, now, r.purpose)
            for r in records
        ]
        with self._conn() as conn:
            conn.executemany("INSERT OR IGNORE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    @_guarded
    def totals(self) -> LedgerTotals:
        """Every paid request (answers and timing requests; measurements cost nothing and are left out)."""
        row = self._conn().execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0),"
            " COALESCE(SUM(latency_s),0), COALESCE(SUM(cost),0) FROM calls WHERE purpose != 'measurement'"
        ).fetchone()
        return LedgerTotals(*row)

    @_guarded
    def totals_by_method(self) -> dict[str, LedgerTotals]:
        """Paid requests per method; timing requests under ``<method> (timing)``."""
        rows = self._conn().execute(
            "SELECT method || CASE purpose WHEN 'timing' THEN ' (timing)' ELSE '' END AS name, COUNT(*),"
            " SUM(prompt_tokens), SUM(completion_tokens), SUM(latency_s), SUM(cost)"
            " FROM calls WHERE purpose != 'measurement' GROUP BY name ORDER BY name"
        )
        return {m: LedgerTotals(*rest) for m, *rest in rows}

    def spend(self) -> dict[str, Any]:
        """What the teacher cost this run: requests paid (answers and timing) and answered from the ledger by the
        runs that made each finished stage's outputs, tokens, seconds and cost."""
        totals = self.totals()
        by_method = self.totals_by_method()
        asked = [s["summary"].get("teacher_requests") or {} for s in self.stages()]
        return {
            "paid": totals.calls,
            "timing": sum(t.calls for m, t in by_method.items() if m.endswith("(timing)")),
            "from_ledger": sum(int(a.get("from_ledger", 0)) for a in asked),
            "prompt_tokens": totals.prompt_tokens, "completion_tokens": totals.completion_tokens,
            "seconds": round(totals.latency_s, 2), "cost": round(totals.cost, 6),
            "truncated_texts": sum(int(s["summary"].get("truncated_texts", 0)) for s in self.stages()),
        }

    # -- stages --------------------------------------------------------------------------------------------
    @_guarded
    def stage_status(self, name: str) -> str | None:
        row = self._conn().execute("SELECT status FROM stages WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    @_guarded
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

    @_guarded
    def stages(self) -> list[dict]:
        rows = self._conn().execute(
            "SELECT name, status, started_at, finished_at, summary, signature, inputs FROM stages ORDER BY started_at"
        )
        return [
            {"name": n, "status": s, "started_at": a, "finished_at": b, "summary": json.loads(m) if m else {},
             "signature": sig, "inputs": json.loads(i) if i else None}
            for n, s, a, b, m, sig, i in rows
        ]
