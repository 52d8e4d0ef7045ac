"""Loaders for every file format and the packaged datasets, the split into pool/seed/dev/test, the data stage."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from protege.data.packaged import PACKAGED, SST2_DIR
from protege.data.sources import load_source
from protege.data.splits import SplitSizes, split
from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import parse_recipe
from protege.core.run import Run

ROWS = [{"review": f"text number {i} " + ("good" if i % 3 else "bad"), "stars": "pos" if i % 3 else "neg"}
        for i in range(30)]


def write(folder: Path, fmt: str) -> Path:
    frame = pd.DataFrame(ROWS)
    path = folder / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        frame.to_parquet(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_files_of_every_format_load_with_a_column_mapping(tmp_path, fmt):
    splits = load_source(str(write(tmp_path, fmt)), text_column="review", label_column="stars")
    assert list(splits) == ["train"]
    assert splits["train"]["text"].tolist() == [r["review"] for r in ROWS]
    assert splits["train"]["label"].tolist() == [r["stars"] for r in ROWS]


def test_hf_datasets_folder_keeps_its_splits(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    for name, rows in (("train", ROWS[:20]), ("test", ROWS[20:])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    splits = load_source(f"hf:{folder}", text_column="review", label_column="stars")
    assert {k: len(v) for k, v in splits.items()} == {"train": 20, "test": 10}


def test_missing_columns_name_the_columns_that_exist(tmp_path):
    path = write(tmp_path, "csv")
    with pytest.raises(ValueError, match=r"no text column 'body'.*\['review', 'stars'\]"):
        load_source(str(path), text_column="body")
    with pytest.raises(ValueError, match="no label column 'rating'"):
        load_source(str(path), text_column="review", label_column="rating")
    unlabelled = load_source(str(path), text_column="review")  # default 'label' absent: unlabelled texts
    assert unlabelled["train"]["label"].isna().all()


def test_unknown_source_lists_what_is_accepted():
    with pytest.raises(ValueError, match="drug-reviews"):
        load_source("no-such-dataset")


def test_drug_reviews_has_three_classes_and_the_measured_majority():
    splits = PACKAGED["drug-reviews"].load(None)
    assert {k: len(v) for k, v in splits.items()} == {"train": 600, "test": 379}
    assert set(splits["test"]["label"]) == set(PACKAGED["drug-reviews"].labels)
    assert splits["test"]["label"].value_counts(normalize=True)["positive"] == pytest.approx(0.654, abs=5e-4)
    assert not splits["train"]["text"].str.contains("&#039;").any()  # HTML entities decoded


def test_bbc_news_split_is_stratified_and_fixed():
    splits = PACKAGED["bbc-news"].load(None)
    assert len(splits["train"]) + len(splits["test"]) == 2225
    assert sorted(splits["test"]["label"].unique()) == list(PACKAGED["bbc-news"].labels)
    share = splits["test"]["label"].value_counts(normalize=True)
    overall = pd.concat(splits.values())["label"].value_counts(normalize=True)
    assert (share - overall).abs().max() < 0.01
    assert splits["test"]["text"].tolist() == PACKAGED["bbc-news"].load(None)["test"]["text"].tolist()


@pytest.mark.skipif(not SST2_DIR.exists(), reason="SST-2 benchmark folder absent")
def test_sst2_reads_train_and_dev_as_test():
    splits = PACKAGED["sst2"].load(None)
    assert len(splits["train"]) > 60_000 and len(splits["test"]) > 6_000
    assert set(splits["test"]["label"]) == {0, 1}


def test_split_is_disjoint_stratified_deterministic_and_drops_test_texts():
    train = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["a"] * 150 + ["b"] * 50})
    test = pd.DataFrame({"text": ["t0", "t1", "x", "y"], "label": ["a", "a", "b", "a"]})
    sizes = SplitSizes(seed=20, dev=40, pool=100)
    tables = split({"train": train, "test": test}, sizes, seed=1, max_chars=100)
    assert {k: len(v) for k, v in tables.items()} == {"pool": 100, "seed": 20, "dev": 40, "test": 4}
    assert tables["seed"]["label"].value_counts().to_dict() == {"a": 15, "b": 5}
    texts = [set(t["text"]) for t in tables.values()]
    assert sum(len(t) for t in texts) == len(set().union(*texts))
    assert "t0" not in texts[0] | texts[1] | texts[2]  # a test text never trains or tunes
    again = split({"train": train, "test": test}, sizes, seed=1, max_chars=100)
    assert all(again[k]["text"].tolist() == tables[k]["text"].tolist() for k in tables)
    other = split({"train": train, "test": test}, sizes, seed=2, max_chars=100)
    assert other["seed"]["text"].tolist() != tables["seed"]["text"].tolist()


def test_split_without_test_carves_one_and_refuses_too_many_gold(tmp_path):
    train = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a", "b"] * 50})
    tables = split({"train": train}, SplitSizes(test_fraction=0.2), seed=0, max_chars=100)
    assert len(tables["test"]) == 20 and tables["test"]["label"].value_counts().to_dict() == {"a": 10, "b": 10}
    with pytest.raises(ValueError, match="seed_size \\+ dev_size = 90"):
        split({"train": train}, SplitSizes(seed=50, dev=40), seed=0, max_chars=100)


def test_data_stage_writes_four_tables_with_gold_and_provenance(tmp_path):
    path = write(tmp_path, "csv")
    recipe = parse_recipe({
        "name": "t", "run_dir": str(tmp_path / "run"),
        "task": {"labels": ["neg", "pos"]},
        "data": {"source": str(path), "text_column": "review", "label_column": "stars", "seed_size": 6,
                 "dev_size": 3, "test_size": 5, "test_fraction": 0.25},
    })
    run_recipe(recipe)
    run = Run(tmp_path / "run")
    tables = {name: run.records.read(name) for name in ("pool", "seed", "dev", "test")}
    assert {k: len(v) for k, v in tables.items()} == {"pool": 16, "seed": 6, "dev": 3, "test": 5}  # 30 texts
    every = pd.concat(tables.values())
    assert every["id"].is_unique and (every["source"] == str(path)).all()
    assert set(every["gold"]) == {"neg", "pos"}
    assert (every["gold_index"] == every["gold"].map({"neg": 0, "pos": 1})).all()
    assert set(tables["pool"]["split"]) == {"pool"}
    assert run.read_json("data.json")["seed_labels"] == {"neg": 2, "pos": 4}


def test_data_stage_names_the_fix_for_labels_outside_the_task(tmp_path):
    recipe = parse_recipe({
        "name": "t", "run_dir": str(tmp_path / "run"), "task": {"labels": ["neg", "positive"]},
        "data": {"source": str(write(tmp_path, "csv")), "text_column": "review", "label_column": "stars"},
    })
    with pytest.raises(ValueError, match="'pos'"):
        run_recipe(recipe)
