"""Read a table of examples from a local file: JSON lines, JSON, CSV, TSV or Parquet, chosen by the suffix.

Empty cells stay empty strings (a template never prints "nan"); what counts as a missing value in a column that
may be partly filled (a label column with some labels) is :func:`is_missing`'s call, the same for every format.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from protege.core.errors import UserError, not_found

SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")

# Spellings of "no value" that spreadsheets, pandas and JSON writers leave in a cell.
MISSING = frozenset({"", "nan", "null", "none", "na", "n/a"})


def is_missing(value: Any) -> bool:
    """True for None, NaN, and a blank/``NaN``/``null``/``None``/``NA``/``N/A`` string (any case)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return is_missing(value.item())
    if isinstance(value, str):
        return value.strip().lower() in MISSING
    return False


def read_rows(path: str | Path) -> list[dict]:
    """Every row of ``path`` as a dict of column -> value, in file order."""
    path = Path(path).expanduser()
    if not path.exists():
        raise not_found(path, "data file", f"give the path of a {', '.join(SUFFIXES)} file; paths in a recipe "
                        "are taken from the recipe file's folder")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise UserError(f"{path.resolve()}, line {number}: not valid JSON ({err.msg}); each line of "
                                    "a .jsonl file is one JSON object") from None
        return rows
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, list):
            raise UserError(f"{path.resolve()}: a .json file of examples must hold a list of objects, got "
                            f"{type(data).__name__}")
        return data
    if suffix in (".csv", ".tsv"):
        # keep_default_na=False: an empty cell is an empty string, not NaN, so templates never print "nan".
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", keep_default_na=False)
        return frame.to_dict("records")
    if suffix == ".parquet":
        return pd.read_parquet(path).to_dict("records")
    raise UserError(f"{path.resolve()}: unsupported suffix {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
