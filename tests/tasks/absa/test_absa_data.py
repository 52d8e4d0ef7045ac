"""Loaders: data issues are counted and reported; configuration mistakes are errors saying how to fix them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from protege.data.packaged import SHARED_DATA
from protege.tasks.absa.data import (
    absa_folder, load_ds2_synthetic, load_semeval, parse_synthetic_id, read_absa_file,
)
from protege.tasks.absa.task import AbsaTask, Aspect

TASK = AbsaTask()
ROWS = [
    {"ID": "1", "sentence": "Great screen.", "aspects": [{"from": "6", "to": "12", "target": "screen",
                                                          "polarity": "positive"}]},
    {"ID": "2", "sentence": "No aspects here.", "aspects": []},
    # offsets off by two but the target is in the sentence: repaired to the nearest occurrence
    {"ID": "3", "sentence": "The fan, the fan!", "aspects": [{"from": 15, "to": 18, "target": "fan",
                                                              "polarity": "negative"}]},
    {"ID": "4", "sentence": "Nice keys.", "aspects": [
        {"from": 0, "to": 4, "target": "trackpad", "polarity": "positive"},  # not in the sentence
        {"from": 5, "to": 9, "target": "keys", "polarity": "splendid"},  # unknown polarity
        {"from": 5, "to": 9, "target": "keys", "polarity": "conflict"},
        {"from": None, "to": None, "target": None, "polarity": "positive"},  # implicit aspect
    ]},
    {"ID": "1", "sentence": "Bad battery.", "aspects": [
        {"from": 4, "to": 11, "target": "battery", "polarity": "neg"},
        {"from": 4, "to": 11, "target": "battery", "polarity": "negative"}]},  # duplicate id, duplicate span
    {"ID": "6", "aspects": []},
    {"ID": "7", "sentence": "Unlabelled."},
]


def _write(folder: Path, name: str, rows: list, jsonl: bool = False) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) if jsonl else json.dumps(rows))
    return path


@pytest.mark.parametrize("jsonl", [False, True])
def test_user_file_issues_are_counted_not_raised(tmp_path, jsonl):
    loaded = read_absa_file(_write(tmp_path, "mine.jsonl" if jsonl else "mine.json", ROWS, jsonl), TASK)
    by_id = {e.id: e for e in loaded.examples}
    assert list(by_id) == ["1", "2", "3", "4", "1#2"]
    assert by_id["1"].aspects == (Aspect(6, 12, "screen", "positive"),)
    assert by_id["2"].aspects == ()
    assert by_id["3"].aspects == (Aspect(13, 16, "fan", "negative"),)
    assert by_id["4"].aspects == ()
    assert by_id["1#2"].aspects == (Aspect(4, 11, "battery", "negative"),)
    assert dict(loaded.issues.counts) == {
        "offsets_repaired": 1, "offsets_mismatch": 1, "unknown_polarity": 1, "conflict_dropped": 1,
        "implicit_aspect": 1, "duplicate_id": 1, "duplicate_span": 1, "row_without_sentence": 1,
        "row_without_aspects": 1,
    }
    assert loaded.issues.summary()["offsets_mismatch"]["examples"] == ["4 'trackpad' at 0:4"]


def test_conflict_kept_when_configured(tmp_path):
    loaded = read_absa_file(_write(tmp_path, "x.json", ROWS[3:4]), AbsaTask(drop_conflict=False))
    assert loaded.examples[0].aspects == (Aspect(5, 9, "keys", "conflict"),)


def test_configuration_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="ABSA file not found"):
        read_absa_file(tmp_path / "missing.json", TASK)
    (tmp_path / "obj.json").write_text('{"ID": 1}')
    with pytest.raises(ValueError, match="expected a list"):
        read_absa_file(tmp_path / "obj.json", TASK)
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("PROTEGE_ABSA_DIR", str(missing))
    with pytest.raises(FileNotFoundError) as err:
        absa_folder()
    message = str(err.value)
    assert f"folder not found: {missing.resolve()}" in message and "PROTEGE_ABSA_DIR" in message
    with pytest.raises(ValueError, match="lap, res, res15"):
        load_semeval("laptops", "train", TASK, folder=tmp_path)
    with pytest.raises(ValueError, match="sample2"):
        load_semeval("lap", "validation", TASK, folder=tmp_path)
    with pytest.raises(ValueError, match="hard"):
        load_semeval("res15", "hard", TASK, folder=tmp_path)
    with pytest.raises(ValueError, match="lap_all2_instance"):
        load_ds2_synthetic("gpt4_outputs", TASK)


def test_folder_from_env_and_from_argument(tmp_path, monkeypatch):
    _write(tmp_path / "absa", "lap/dev.json", ROWS[:2])
    monkeypatch.setenv("PROTEGE_ABSA_DIR", str(tmp_path / "absa"))
    assert [e.id for e in load_semeval("lap", "dev", TASK).examples] == ["1", "2"]
    monkeypatch.setenv("PROTEGE_ABSA_DIR", str(tmp_path / "elsewhere"))
    assert len(load_semeval("lap", "dev", TASK, folder=tmp_path / "absa").examples) == 2


@pytest.mark.parametrize("rid, parents, method", [
    ("2871_paraphrase_one_3", ("2871",), "paraphrase_one"),
    ("2130_1043_paraphrase_comb_0", ("2130", "1043"), "paraphrase_comb"),
    ("1655504:0_1189674:4_paraphrase_comb_2", ("1655504:0", "1189674:4"), "paraphrase_comb"),
    ("2871_aspect_mask_2_1", ("2871",), "aspect_mask"),
    ("1227999:1_context_mask_0_3", ("1227999:1",), "context_mask"),
    ("2871_paraphrase_twice_1", (), "unknown"),
])
def test_parse_synthetic_id(rid, parents, method):
    assert parse_synthetic_id(rid) == (parents, method)


def test_synthetic_file_by_path(tmp_path):
    rows = [{"ID": "7_paraphrase_one_0", "sentence": "The fan is loud.", "label": [["Fan", "negative"]],
             "aspects": [{"from": 4, "to": 7, "target": "fan", "polarity": "negative"}]},
            {"ID": "odd", "sentence": "Fine.", "label": "oops", "aspects": []}]
    loaded = load_ds2_synthetic(str(_write(tmp_path, "syn.json", rows)), TASK)
    first, second = loaded.rows
    assert first.parents == ("7",) and first.method == "paraphrase_one"
    assert first.raw == (["Fan", "negative"],)
    assert first.example().aspects == (Aspect(4, 7, "fan", "negative"),)
    assert second.raw == () and second.method == "unknown" and loaded.issues.counts["unparsed_id"] == 1


ABSA = SHARED_DATA / "absa"


@pytest.mark.skipif(not (ABSA / "lap").is_dir(), reason="shared ABSA data absent")
def test_real_semeval_loads_with_expected_sizes(monkeypatch):
    monkeypatch.delenv("PROTEGE_ABSA_DIR", raising=False)
    lap = load_semeval("lap", "train", TASK, folder=ABSA)
    assert len(lap.examples) == 2436
    # 36 conflict aspects in laptops train; the published offsets all match their terms
    assert dict(lap.issues.counts) == {"conflict_dropped": 36}
    assert sum(len(e.aspects) for e in lap.examples) == 1922 - 36
    hard = load_semeval("lap", "hard", TASK, folder=ABSA)
    assert len(hard.examples) == 237 and hard.issues.counts["implicit_aspect"] == 90
    assert len(load_semeval("res15", "sample2", TASK, folder=ABSA).examples) == 21
