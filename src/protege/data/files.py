"""Read a table of examples from a local file: JSON lines, JSON, CSV, TSV or Parquet, chosen by the suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")


def read_rows(path: str | Path) -> list[dict]:
    """Every row of ``path`` as a dict of column -> value, in file order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file; give the path of a {', '.join(SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json file of examples must hold a list of objects, got {type(data).__name__}")
        return data
    if suffix in (".csv", ".tsv"):
        # keep_default_na=False: an empty cell is an empty string, not NaN, so templates never print "nan".
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
        return frame.to_dict("records")
    if suffix == ".parquet":
        return pd.read_parquet(path).to_dict("records")
    raise ValueError(f"{path}: unsupported suffix {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
