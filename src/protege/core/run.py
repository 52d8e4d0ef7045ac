"""A run directory: everything one recipe produced, and the only channel through which stages talk.

    <run>/recipe.yaml       the resolved recipe, as validated
    <run>/ledger.sqlite     every teacher call and stage status (protege.core.ledger)
    <run>/records/<table>/  Parquet shards of examples with provenance (protege.core.records)
    <run>/artifacts/        checkpoints, metrics (JSON), plots, the report
    <run>/stages/<name>.yaml  the settings that produced each finished stage's outputs
    <run>/events.jsonl      one JSON object per event, for machines
    <run>/run.lock          held by the process running a recipe here (protege.core.lock)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from protege.core.errors import NotFound
from protege.core.ledger import Ledger
from protege.core.lock import RunLock
from protege.core.records import RecordStore
from protege.core.secrets import scrub


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(self.path / "ledger.sqlite")
        self.records = RecordStore(self.path / "records")
        self.artifacts = self.path / "artifacts"
        self.artifacts.mkdir(exist_ok=True)

    @classmethod
    def open_existing(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / "ledger.sqlite").exists():
            raise NotFound(f"{path.resolve()} is not a protege run directory (no ledger.sqlite); pass the run_dir "
                           "of a recipe that ran")
        return cls(path)

    @property
    def metrics(self) -> dict[str, Any]:
        """What the run's evaluation wrote (``artifacts/metrics.json``); an error before evaluation has run."""
        path = self.artifacts / "metrics.json"
        if not path.exists():
            raise NotFound(f"{path} does not exist yet: the run has no evaluation; run a recipe with its "
                           "evaluate stage")
        return self.read_json(path.name)

    def artifact(self, *parts: str) -> Path:
        """Path under ``artifacts/``, with parent folders created."""
        target = self.artifacts.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, name: str, obj: Any) -> Path:
        target = self.artifact(name)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, default=str))
        os.replace(tmp, target)
        return target

    def read_json(self, name: str) -> Any:
        return json.loads((self.artifacts / name).read_text())

    def write_stage_settings(self, stage: str, inputs: dict) -> Path:
        """Keep the settings a finished stage ran with beside the run (also in the ledger)."""
        folder = self.path / "stages"
        folder.mkdir(exist_ok=True)
        target = folder / f"{stage}.yaml"
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(inputs, sort_keys=False))
        os.replace(tmp, target)
        return target

    def lock(self, *, wait_s: float = 0.0, on_stale: Any = None) -> RunLock:
        """The run directory's lock (not yet acquired): ``with run.lock(): ...`` keeps other runs out."""
        return RunLock(self.path, wait_s=wait_s, on_stale=on_stale)

    def log_event(self, event: str, **fields: Any) -> None:
        with open(self.path / "events.jsonl", "a") as fh:
            fh.write(scrub(json.dumps({"time": time.time(), "event": event, **fields}, default=str)) + "\n")
