"""The ABSA benchmark's parallel path on fixture data, a tiny tagger and a tiny random teacher: units in child
processes two at a time, one shared results file, the polarity scoring done once per setting and re-paid never."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sqlite3
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "tasks" / "classify"))
from fakes import saved_tiny_teacher  # noqa: E402
from tiny_tagger import build_tiny_tagger_base  # noqa: E402

SCRIPT = TESTS.parent / "benchmarks" / "absa.py"
SENTENCES = [
    ("the screen is great", [("screen", "positive")]),
    ("the battery life was bad", [("battery life", "negative")]),
    ("the keyboard is fine but the fan is noisy", [("keyboard", "neutral"), ("fan", "negative")]),
    ("the price was good", [("price", "positive")]),
    ("the trackpad is slow", [("trackpad", "negative")]),
    ("it was great", []),
]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("absa_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(rid: str, sentence: str, pairs) -> dict:
    aspects = []
    for term, polarity in pairs:
        start = sentence.index(term)
        aspects.append({"from": start, "to": start + len(term), "target": term, "polarity": polarity})
    return {"ID": rid, "sentence": sentence, "aspects": aspects}


def write_data(root: Path) -> tuple[Path, Path]:
    lap = root / "absa" / "lap"
    lap.mkdir(parents=True)
    for split, n in (("sample2", 4), ("dev", 6), ("test", 6), ("train", 6)):
        rows = [row(f"{split}{i}", *SENTENCES[(i + n) % len(SENTENCES)]) for i in range(n)]
        if split != "sample2":  # dev/test sentences must differ from the synthetic ones, which are dropped
            rows = [r | {"sentence": r["sentence"] + " ."} for r in rows]
            rows = [row(r["ID"], r["sentence"], [(a["target"], a["polarity"]) for a in r["aspects"]])
                    for r in rows]
        (lap / f"{split}.json").write_text(json.dumps(rows))
    ds2 = root / "ds2"
    ds2.mkdir()
    synthetic = []
    for i, (sentence, pairs) in enumerate(SENTENCES * 2):
        text = sentence + (" !" if i >= len(SENTENCES) else "")
        published = row(f"sample2{i % 4}_paraphrase_one_{i}", text, pairs)
        synthetic.append(published | {"label": [list(p) for p in pairs]})
    (ds2 / "lap_all2_instance.json").write_text(json.dumps(synthetic))
    return root / "absa", ds2


def ledger_rows(folder: Path) -> int:
    with sqlite3.connect(folder / "ledger.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def test_units_run_in_parallel_processes_and_polarity_is_scored_once(tmp_path, monkeypatch):
    absa_dir, ds2_dir = write_data(tmp_path)
    monkeypatch.setenv("PROTEGE_ABSA_DIR", str(absa_dir))
    monkeypatch.setenv("PROTEGE_DS2_DIR", str(ds2_dir))
    student = build_tiny_tagger_base(tmp_path / "student")
    teacher = saved_tiny_teacher(tmp_path / "teacher")
    out, logs = tmp_path / "results", tmp_path / "logs"
    argv = ["--settings", "lap:2", "--seeds", "0,1", "--variants", "seed,subset,polarity", "--steps", "3",
            "--dev-size", "4", "--student", str(student), "--teacher", str(teacher), "--out", str(out),
            "--logs", str(logs), "--polarity-rows", "8", "--jobs", "2", "--threads", "1"]
    bench = load_benchmark()
    summary = bench.main(argv)

    lines = (out / "absa-runs.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # two children appended: every line is one whole record
    cells = [f"lap:2:{v}:{s}" for v in ("seed", "subset", "polarity") for s in (0, 1)]
    assert sorted(r["key"] for r in records) == sorted(cells)
    units = [*cells, "lap:2:polarity-scores"]
    assert sorted(p.stem for p in logs.glob("*.log")) == sorted(units)
    # Scored once, in its own unit, for the 8-row subset only (one aspect a row); the polarity cells read the cache.
    assert "scored 8/8 aspects" in (logs / "lap:2:polarity-scores.log").read_text()
    for s in (0, 1):
        assert "scored" not in (logs / f"lap:2:polarity:{s}.log").read_text()
    polarity = [r for r in records if r["variant"] == "polarity"]
    assert all(r["train_rows"] == 4 + 8 and 0 <= r["agreement_with_gpt35"] <= 1 for r in polarity)
    # The control trains on the very rows the teacher scored, with the published polarities.
    setting = bench.Setting("lap", "2", argparse.Namespace(dev_size=4))
    scored = json.loads(bench.scores_path("lap", "2", argparse.Namespace(
        out=out, teacher=str(teacher), polarity_rows=8)).read_text())["ids"]
    assert scored == [e.id for e in setting.subset(8)] and len(set(scored)) == 8
    assert {r["train_rows"] for r in records if r["variant"] == "subset"} == {4 + 8}
    rows = {r["variant"]: r for r in summary["rows"]}
    assert set(rows) == {"seed", "subset", "polarity"} and sorted(rows["seed"]["seeds"]) == [0, 1]
    for r in rows.values():
        lo, point, hi = r["pair_f1"][1], r["pair_f1"][0], r["pair_f1"][2]
        assert 0 <= lo <= point <= hi <= 1
    assert json.loads((out / "absa.json").read_text())["rows"] == json.loads(json.dumps(summary["rows"]))
    table = (out / "absa-table.md").read_text().splitlines()
    assert table[2].startswith("| lap 2 % | seed alone | 4 | 2 |") and "| 0: " in table[2]
    assert table[3].startswith("| lap 2 % | + a random subset of the normalised rows")
    assert table[4].startswith("| lap 2 % | + the same subset, polarities scored")

    # A rerun skips every finished cell; scoring again (the cache removed) is answered by the ledger alone.
    bench.main(argv)
    assert (out / "absa-runs.jsonl").read_text().splitlines() == lines
    ledger = out / "absa-ledger" / "lap-2"
    paid = ledger_rows(ledger)
    cache = bench.scores_path("lap", "2", argparse.Namespace(out=out, teacher=str(teacher), polarity_rows=8))
    before = json.loads(cache.read_text())
    cache.unlink()
    bench.main(argv[:-4] + ["--only", "lap:2:polarity-scores", "--jobs", "1", "--threads", "1"])
    assert ledger_rows(ledger) == paid
    assert json.loads(cache.read_text())["distributions"] == before["distributions"]
    # Past the deadline no unit starts.
    bench.main([a if a != "0,1" else "2" for a in argv] + ["--deadline", "00:00"])
    assert (out / "absa-runs.jsonl").read_text().splitlines() == lines


def test_an_unknown_variant_is_an_error_naming_the_choices(capsys):
    with pytest.raises(SystemExit):
        load_benchmark().main(["--variants", "seed,nonsense", "--summarise-only"])
    assert "choose from seed" in capsys.readouterr().err
