"""The sentiment collection's loader: set folders, aspect-given rows as one text, a clear error when absent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from protege.data.packaged import PACKAGED, SENTIMENT_DIR, SENTIMENT_SETS
from protege.data.sources import load_source


def write_set(root: Path, sub: str, rows: dict[str, list[dict]]) -> None:
    folder = root / sub
    folder.mkdir(parents=True)
    for split, items in rows.items():
        pd.DataFrame(items).to_csv(folder / f"{split}.csv", index=False)


def test_sentence_sets_read_label_names_and_aspect_sets_put_the_aspect_first(tmp_path):
    write_set(tmp_path, "SC/fin", {
        "train": [{"sentence": "Profit rose 5 %", "label_id": 2, "label": "positive"},
                  {"sentence": "Sales fell", "label_id": 0, "label": "negative"}],
        "test": [{"sentence": "Flat quarter", "label_id": 1, "label": "neutral"}],
    })
    write_set(tmp_path, "ATSC/laptop", {
        "train": [{"sentence": "Great screen, weak battery", "aspect": "battery", "label_id": 0, "label": "negative"},
                  {"sentence": "Great screen, weak battery", "aspect": "screen", "label_id": 2, "label": "positive"}],
        "test": [{"sentence": "It boots", "aspect": "boot time", "label_id": 1, "label": "neutral"}],
    })
    fin = load_source("sentiment-fin", data_dir=tmp_path)
    assert fin["train"].to_dict("records") == [{"text": "Profit rose 5 %", "label": "positive"},
                                               {"text": "Sales fell", "label": "negative"}]
    assert fin["test"]["label"].tolist() == ["neutral"]
    laptop = load_source("sentiment-laptop", data_dir=tmp_path)
    # One sentence with two aspects is two distinct texts, so neither is dropped as a duplicate.
    assert laptop["train"]["text"].tolist() == ["Aspect: battery. Sentence: Great screen, weak battery",
                                                "Aspect: screen. Sentence: Great screen, weak battery"]
    assert set(PACKAGED["sentiment-laptop"].labels) == {"negative", "neutral", "positive"}


def test_absent_folder_names_the_setting_that_fixes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"EMO/tweet_emo/train.csv.*PROTEGE_SENTIMENT_DIR|"
                       r"PROTEGE_SENTIMENT_DIR.*EMO/tweet_emo/train.csv"):
        load_source("sentiment-tweet-emo", data_dir=tmp_path / "nowhere")


def test_a_file_without_a_label_column_is_refused(tmp_path):
    write_set(tmp_path, "SC/poem", {"train": [{"sentence": "a verse", "label_id": 0}],
                                    "test": [{"sentence": "b verse", "label_id": 1}]})
    with pytest.raises(ValueError, match=r"no column\(s\) \['label'\]"):
        load_source("sentiment-poem", data_dir=tmp_path)


@pytest.mark.skipif(not SENTIMENT_DIR.exists(), reason="sentiment benchmark folder absent")
@pytest.mark.parametrize("name", sorted(SENTIMENT_SETS))
def test_shared_sets_have_the_declared_labels(name):
    splits = PACKAGED[f"sentiment-{name}"].load(None)
    assert set(splits["test"]["label"]) == set(PACKAGED[f"sentiment-{name}"].labels)
    assert len(splits["train"]) > 500
