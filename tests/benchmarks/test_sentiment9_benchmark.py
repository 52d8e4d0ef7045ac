"""The sentiment benchmark's whole code path (recipe stages, every arm, the table) on hand-written fixture sets, a
scripted teacher and a tiny encoder: seconds, no shared data needed, so the script cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tasks" / "classify"))  # the tiny encoder's home
from fakes import saved_tiny_teacher  # noqa: E402
from tiny_encoder import WORDS, build_tiny_encoder  # noqa: E402

pytest.importorskip("bm25s")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sentiment9.py"
CUES = {"negative": "bad", "positive": "good", "neutral": "fine"}
FILLER = [w for w in WORDS if w not in CUES.values()]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("sentiment9", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CueTeacher:
    """Scores a label 0 when its cue word is in the text being classified (after the last 'Text:'), else -3."""

    backend = "fake"
    model_id = "cue"

    def score(self, prompts, continuations):
        out = []
        for prompt, words in zip(prompts, continuations):
            body = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            query = body.rsplit("Text:", 1)[-1].split()
            out.append([0.0 if CUES[w.strip()] in query else -3.0 for w in words])
        return out

    def generate(self, prompts, params):  # pragma: no cover - the benchmark only scores
        raise NotImplementedError

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover
        raise NotImplementedError


def texts(n: int, labels: list[str], seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = labels[i % len(labels)]
        words = rng.sample(FILLER, 6) + [CUES[label]]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_fixtures(root: Path) -> tuple[Path, Path]:
    sst2 = root / "sst2"
    sst2.mkdir()
    for name, n, seed in (("train.tsv", 110, 0), ("dev.tsv", 20, 1)):
        rows = [(t, int(label == "positive")) for t, label in texts(n, ["negative", "positive"], seed)]
        pd.DataFrame(rows, columns=["sentence", "label"]).to_csv(sst2 / name, sep="\t", index=False)
    fin = root / "sentiment" / "SC" / "fin"
    fin.mkdir(parents=True)
    labels = ["negative", "neutral", "positive"]
    for name, n, seed in (("train.csv", 120, 2), ("test.csv", 18, 3)):
        rows = [(t, labels.index(label), label) for t, label in texts(n, labels, seed)]
        pd.DataFrame(rows, columns=["sentence", "label_id", "label"]).to_csv(fin / name, index=False)
    return sst2, root / "sentiment"


def headless_encoder(folder: Path) -> Path:
    """The tiny encoder without a classification head (as MiniLM ships): each set's head is made to its labels."""
    from transformers import AutoConfig, BertModel

    build_tiny_encoder(folder)
    BertModel(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def test_every_arm_runs_on_two_sets_and_a_missing_set_is_skipped(tmp_path):
    bench = load_benchmark()
    sst2, collection = write_fixtures(tmp_path)
    encoder = headless_encoder(tmp_path / "encoder")
    out = tmp_path / "results"
    argv = ["--sets", "sst2,fin,poem", "--seed", "12", "--dev", "12", "--pool", "30", "--test", "16", "--epochs", "1",
            "--student", str(encoder), "--sst2-dir", str(sst2), "--sentiment-dir", str(collection),
            "--runs", str(tmp_path / "runs"), "--out", str(out), "--threads", "1"]
    results = bench.main(argv, teacher=CueTeacher())
    assert [r["set"] for r in results] == ["sst2", "fin"]  # poem has no folder in the fixture: skipped
    expected = {"majority", *bench.METHODS.values(), "teacher (annotate)", "student soft", "student hard",
                "student candidates", "gold seed only", "all gold (ceiling)"}
    for r in results:
        assert set(r["arms"]) == expected
        assert r["sizes"]["seed"] == 12 and r["sizes"]["pool"] == 30
        n = r["sizes"]["test"]
        assert n == 16
        for arm in r["arms"].values():
            assert 0 <= arm["macro_f1_interval"][0] <= arm["macro_f1"] <= arm["macro_f1_interval"][1] <= 1
            assert arm["accuracy_interval"][0] <= arm["accuracy"] <= arm["accuracy_interval"][1]
            assert len(arm["correct"]) == n and np.mean(arm["correct"]) == pytest.approx(arm["accuracy"], abs=1e-4)
        # The cue teacher is always right; demonstrations cost tokens; students spend no teacher tokens per text.
        a = r["arms"]
        assert a["teacher zero-shot"]["accuracy"] == 1.0 and a["teacher (annotate)"]["accuracy"] == 1.0
        tokens = [a[m]["teacher_tokens_per_text"] for m in bench.METHODS.values()]
        assert 0 < tokens[0] < tokens[1] < tokens[2]
        assert a["teacher feedback ICL (2 wrong first)"]["fills"] == 2 * n  # never wrong: every wrong slot filled
        assert a["student soft"]["teacher_tokens_per_text"] == 0 and a["student soft"]["student_seconds_per_text"] > 0
        assert a["all gold (ceiling)"]["gold_labels"] == 42
        assert r["candidates"]["test"]["coverage"] == 1.0
        assert set(r["differences"]) == {f"{x} - {y}" for x, y in bench.PAIRS}
        assert (out / f"{r['set']}.json").exists()
        report = (out / f"{r['set']}-report.md").read_text()
        assert "teacher feedback ICL" in report and "teacher prompt tokens per text" in report
    table = (out / "table.md").read_text()
    assert "| student candidates |" in table and "| fin |" in table and "| sst2 |" in table
    assert "feedback ICL per 1,000 texts" in table and "all sets' texts pooled" in table
    assert table.startswith("| set (test texts) |") and "| **mean** |" in table
    # A finished set is read back, not rerun.
    again = bench.main(argv[:1] + ["sst2"] + argv[2:], teacher=None)
    assert again[0]["wall_seconds"] == results[0]["wall_seconds"]
    # Past the deadline no set starts (a rerun adds them later); the finished results stay.
    assert bench.main(argv + ["--redo", "--deadline", "00:00"], teacher=CueTeacher()) == []
    assert (out / "fin.json").exists()


def test_sets_run_in_parallel_processes_and_a_result_at_another_budget_is_redone(tmp_path):
    """--jobs 2 runs each set in its own process (a real hf teacher: a tiny random Llama saved to a folder);
    a result measured at another budget is neither shown by --summarise nor read back: it is redone."""
    bench = load_benchmark()
    sst2, collection = write_fixtures(tmp_path)
    encoder = headless_encoder(tmp_path / "encoder")
    teacher = saved_tiny_teacher(tmp_path / "teacher")
    out, runs = tmp_path / "results", tmp_path / "runs"
    argv = ["--sets", "sst2,fin", "--seed", "12", "--dev", "12", "--pool", "30", "--test", "16", "--epochs", "1",
            "--student", str(encoder), "--teacher", str(teacher), "--sst2-dir", str(sst2),
            "--sentiment-dir", str(collection), "--runs", str(runs), "--out", str(out), "--jobs", "2"]
    results = bench.main(argv)
    assert [r["set"] for r in results] == ["sst2", "fin"]
    for r in results:
        assert r["settings"]["jobs"] == 1 and r["sizes"]["pool"] == 30  # measured by a child process
        assert (runs / f"{r['set']}.log").exists()
    assert "| sst2 |" in (out / "table.md").read_text()
    other = [a if a != "30" else "20" for a in argv]  # --pool 20
    assert bench.main(other + ["--summarise"]) == []
    redone = bench.main(other[:1] + ["sst2"] + other[2:-2] + ["--jobs", "1"], teacher=CueTeacher())
    assert [r["sizes"]["pool"] for r in redone] == [20]
