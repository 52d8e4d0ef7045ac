"""Labelled or unlabelled texts from wherever they live, as named splits of ``text`` / ``label`` frames.

A source is a packaged dataset name (:mod:`protege.data.packaged`), a local file (.csv, .tsv, .jsonl, .json,
.parquet), or ``hf:<hub id or local folder>`` for anything ``datasets.load_dataset`` reads. Columns are mapped
onto ``text`` and ``label``; a source without a label column yields ``label`` = None (an unlabelled pool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from protege.core.errors import UserError, not_found
from protege.data.files import SUFFIXES, read_rows
from protege.data.packaged import PACKAGED, Splits

HF_PREFIX = "hf:"


def describe_sources() -> str:
    return (
        f"a packaged dataset ({', '.join(PACKAGED)}), a file ({', '.join(SUFFIXES)}), or "
        f"{HF_PREFIX}<hub id or folder> for the datasets library"
    )


def map_columns(rows: pd.DataFrame, text_column: str, label_column: str | None, where: str) -> pd.DataFrame:
    """The text and label columns, renamed ``text`` and ``label``; a missing column is an error."""
    if text_column not in rows.columns:
        raise UserError(
            f"{where}: no text column {text_column!r}; its columns are {list(rows.columns)}. "
            "Set data.text_column to the column holding the texts."
        )
    has_label = label_column is not None and label_column in rows.columns
    if label_column is not None and not has_label and label_column != "label":
        raise UserError(
            f"{where}: no label column {label_column!r}; its columns are {list(rows.columns)}. "
            "Set data.label_column, or leave it unset for unlabelled texts."
        )
    unknown = pd.Series([None] * len(rows), index=rows.index, dtype=object)
    labels = rows[label_column] if has_label else unknown
    return pd.DataFrame({"text": rows[text_column].astype(str), "label": labels.to_numpy()})


def _read_file(path: Path, text_column: str, label_column: str | None) -> pd.DataFrame:
    return map_columns(pd.DataFrame(read_rows(path)), text_column, label_column, str(path))


def _read_hf(target: str, text_column: str, label_column: str | None) -> Splits:
    import datasets

    folder = Path(target).expanduser()
    if (folder / "dataset_dict.json").exists() or (folder / "dataset_info.json").exists():
        loaded: Any = datasets.load_from_disk(str(folder))
    else:
        # A local folder of data files or a hub id; the hub is reached only for ids that are not local.
        loaded = datasets.load_dataset(str(folder) if folder.exists() else target)
    if isinstance(loaded, datasets.Dataset):
        loaded = {"train": loaded}
    out: Splits = {}
    for split, dataset in loaded.items():
        frame = dataset.to_pandas()
        feature = dataset.features.get(label_column) if label_column else None
        if isinstance(feature, datasets.ClassLabel):
            # Integer class ids become their names, so task.labels can be written as words.
            frame[label_column] = [feature.int2str(int(v)) if v is not None and v >= 0 else None
                                   for v in frame[label_column]]
        out[split] = map_columns(frame, text_column, label_column, f"{target} [{split}]")
    if "test" not in out and "validation" in out:
        out["test"] = out.pop("validation")
    if "train" not in out:
        raise UserError(f"{target}: the dataset has no 'train' split (it has {sorted(out)})")
    return {name: out[name] for name in ("train", "test") if name in out}


def load_source(
    source: str,
    *,
    text_column: str = "text",
    label_column: str | None = "label",
    test_source: str | None = None,
    data_dir: Path | None = None,
) -> Splits:
    """Splits ``train`` and, when the source has one or ``test_source`` is given, ``test``."""
    if source in PACKAGED:
        splits = PACKAGED[source].load(data_dir)
    elif source.startswith(HF_PREFIX):
        splits = _read_hf(source[len(HF_PREFIX):], text_column, label_column)
    else:
        path = Path(source).expanduser()
        if path.suffix.lower() not in SUFFIXES:
            if not path.exists():
                raise UserError(f"data.source {source!r} is not {describe_sources()}")
            raise UserError(f"data.source {path.resolve()}: unsupported file type; use {', '.join(SUFFIXES)}")
        if not path.exists():
            raise not_found(path, "data.source", "fix the path; paths in a recipe are taken from the recipe "
                            "file's folder")
        splits = {"train": _read_file(path, text_column, label_column)}
    if test_source is not None:
        if test_source.startswith(HF_PREFIX):
            test = _read_hf(test_source[len(HF_PREFIX):], text_column, label_column)
            splits["test"] = test.get("test", test["train"])
        else:
            splits["test"] = _read_file(Path(test_source).expanduser(), text_column, label_column)
    return splits
