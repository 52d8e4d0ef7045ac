"""A user's own file: missing labels in every format, sizes honoured or refused, one path rule, errors naming
the file and the fix, and the stage graph checked before anything runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from protege.core.errors import NotFound, UserError
from protege.core.run import Run
from protege.data.files import is_missing
from protege.data.splits import SplitSizes, split
from protege.pipeline.recipe import RecipeError, load_recipe, parse_recipe
from protege.pipeline.runner import plan, run_recipe

LABELS = ["neg", "pos"]


def rows(n_labelled: int, n_blank: int) -> list[dict]:
    out = [{"text": f"labelled text {i}", "label": LABELS[i % 2]} for i in range(n_labelled)]
    return out + [{"text": f"unlabelled text {i}", "label": None} for i in range(n_blank)]


def write(folder: Path, fmt: str, data: list[dict], blank: object) -> Path:
    """``data`` with its missing labels spelt as ``blank`` (None: the key left out of JSON lines)."""
    path = folder / f"mine.{fmt}"
    if fmt == "jsonl":
        lines = []
        for r in data:
            row = dict(r)
            if row["label"] is None:
                if blank is None:
                    del row["label"]
                else:
                    row["label"] = blank
            lines.append(json.dumps(row))
        path.write_text("\n".join(lines) + "\n")
    else:
        frame = pd.DataFrame([{**r, "label": blank if r["label"] is None else r["label"]} for r in data])
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path)
    return path


def test_is_missing_knows_the_spellings_of_no_value():
    for value in (None, float("nan"), "", "  ", "NaN", "null", "None", "N/A", "na"):
        assert is_missing(value), value
    for value in ("neg", 0, 0.0, "0", False):
        assert not is_missing(value), value


@pytest.mark.parametrize("fmt,blank", [("csv", ""), ("csv", "NaN"), ("csv", "null"), ("jsonl", None),
                                       ("jsonl", "null-json"), ("jsonl", ""), ("parquet", None),
                                       ("parquet", math.nan)])
def test_blank_nan_null_and_missing_labels_mean_unlabelled(tmp_path, fmt, blank):
    blank = None if blank == "null-json" else blank  # json.dumps(None) writes null
    path = write(tmp_path, fmt, rows(20, 30), blank)
    recipe = parse_recipe({"name": "t", "run_dir": str(tmp_path / "run"), "task": {"labels": LABELS},
                           "data": {"source": str(path), "seed_size": 4, "dev_size": 4, "test_size": 12}})
    run_recipe(recipe)
    run = Run(tmp_path / "run")
    sizes = {t: len(run.records.read(t)) for t in ("pool", "seed", "dev", "test")}
    assert sizes == {"pool": 30, "seed": 4, "dev": 4, "test": 12}
    assert run.records.read("pool")["gold"].isna().all()
    assert run.records.read("test")["gold"].notna().all()


def frame(n_labelled: int, n_blank: int) -> pd.DataFrame:
    return pd.DataFrame(rows(n_labelled, n_blank))


def test_test_size_is_taken_exactly_from_labelled_texts_without_a_test_split():
    out = split({"train": frame(42, 100)}, SplitSizes(seed=10, dev=8, test=12), seed=0, max_chars=100)
    assert {k: len(v) for k, v in out.items()} == {"pool": 112, "seed": 10, "dev": 8, "test": 12}
    assert out["test"]["label"].notna().all()


@pytest.mark.parametrize("sizes,key", [(SplitSizes(test=50), "test_size"),
                                       (SplitSizes(seed=20, dev=20, test=10), "seed_size \\+ dev_size"),
                                       (SplitSizes(pool=500, test=5), "pool_size")])
def test_sizes_that_cannot_be_met_are_refused_naming_the_key(sizes, key):
    with pytest.raises(UserError, match=f"data.{key} = .*never changed silently"):
        split({"train": frame(42, 100)}, sizes, seed=0, max_chars=100)


def test_a_test_size_beyond_the_sources_test_split_is_refused():
    with pytest.raises(UserError, match="test_size = 30 but only 20"):
        split({"train": frame(40, 0), "test": frame(20, 5)}, SplitSizes(test=30), seed=0, max_chars=100)


def test_every_path_is_taken_from_the_recipe_file_and_run_dir_defaults_under_the_working_dir(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "mine.csv").write_text("text,label\na,neg\n")
    (folder / "recipe.yaml").write_text("name: mine\ntask: {labels: [neg, pos]}\n"
                                        "data: {source: data/mine.csv, test_source: data/test.csv}\n"
                                        "train: {student: minilm-l6}\n")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(folder / "recipe.yaml")
    assert recipe.data.source == str(folder / "data" / "mine.csv")
    assert recipe.data.test_source == str(folder / "data" / "test.csv")  # absent, yet a path: the error names it
    assert recipe.train.student == "minilm-l6"  # a name, not a path
    assert recipe.run_dir == elsewhere / "runs" / "mine"


def test_a_missing_data_file_is_not_found_with_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "r.yaml").write_text("name: x\ntask: {labels: [a, b]}\ndata: {source: nothere.csv}\n")
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(tmp_path / "r.yaml")
    with pytest.raises(NotFound, match=f"not found: {tmp_path / 'nothere.csv'}"):
        run_recipe(recipe)


def test_a_stage_graph_that_cannot_feed_itself_fails_at_plan_time(tmp_path):
    recipe = parse_recipe({"name": "t", "run_dir": str(tmp_path / "run"), "task": {"labels": LABELS},
                           "teacher": {"model": "x"}, "data": {"source": "unused.csv"}, "annotate": {},
                           "train": {}})
    with pytest.raises(RecipeError, match="'train' reads 'selected'.*add a 'select:' section"):
        plan(recipe)
    ok = parse_recipe({"name": "t", "run_dir": str(tmp_path / "run"), "task": {"labels": LABELS},
                       "teacher": {"model": "x"}, "data": {"source": "unused.csv"}, "annotate": {},
                       "train": {"train_table": "annotated"}})
    assert [s.name for s in plan(ok)] == ["data", "annotate", "train"]
