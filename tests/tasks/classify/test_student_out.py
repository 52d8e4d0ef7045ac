"""The student out of a run: the Python API, `protege predict`, ONNX / int8 export checked against PyTorch,
`protege push` against a local stand-in of the hub's upload calls."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import protege
from protege.cli import app
from protege.core.errors import UserError
from protege.models.hub import push

from fake_teacher import CueTeacher
from tiny_encoder import build_tiny_encoder, separable_texts

runner = CliRunner()


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    root = tmp_path_factory.mktemp("student-out")
    encoder = build_tiny_encoder(root / "encoder")
    texts, labels = separable_texts(200, seed=3)
    (root / "reviews.jsonl").write_text("\n".join(json.dumps({"text": t, "label": ["negative", "positive"][y]})
                                                  for t, y in zip(texts, labels)))
    recipe = {
        "name": "out", "run_dir": str(root / "run"), "teacher": {"model": "cue-teacher"},
        "task": {"labels": ["negative", "positive"]},
        "data": {"source": str(root / "reviews.jsonl"), "seed_size": 16, "dev_size": 32, "test_size": 48},
        "annotate": {"calibration": "none"},
        "train": {"student": str(encoder), "max_length": 16, "learning_curve": [], "train_table": "annotated",
                  "loop": {"epochs": 3, "lr": 3e-3, "micro_batch_size": 16, "schedule": "constant", "tracker": None,
                           "eval_every": 10}},
        "evaluate": {"speed_examples": 8, "speed_batch_size": 4, "student_batch_size": 8},
    }
    return protege.run(recipe, teacher=CueTeacher(), evaluate__bins=5), root


def test_the_python_api_runs_a_dict_and_gives_metrics_student_and_records(done):
    run, _ = done
    assert run.metrics["headline"] and run.metrics["cost"]["teacher_calls"]["paid"] > 0
    lo, hi = run.metrics["models"]["student"]["accuracy_interval"]
    assert lo <= run.metrics["models"]["student"]["accuracy"] <= hi
    student = run.student()
    texts = run.records("test")["text"].tolist()[:6]
    probs = student.predict_proba(texts)
    assert probs.shape == (6, 2) and np.allclose(probs.sum(1), 1)
    assert student.predict(texts) == [student.labels[i] for i in probs.argmax(1)]
    assert student.temperature == pytest.approx(run.metrics["calibration"]["temperature"])
    annotated = run.records("annotated")
    assert annotated["id"].is_unique and len(annotated) == len(run.records.read("annotated"))
    assert len(run.records("test", as_dataset=True)) == 48
    with pytest.raises(UserError, match="no table 'nope'"):
        run.records("nope")
    assert protege.open_run(run.path).metrics == run.metrics
    card = (run.artifacts / "student" / "README.md").read_text()
    assert "cue-teacher" in card and "predict_proba" in card


def test_predict_writes_labels_and_probabilities(done, tmp_path):
    run, _ = done
    source = tmp_path / "new.csv"
    pd.DataFrame({"body": ["a lovely day", "awful service"]}).to_csv(source, index=False)
    result = runner.invoke(app, ["predict", str(run.path), "--input", str(source), "--text-column", "body"])
    assert result.exit_code == 0, result.output
    out = pd.read_csv(tmp_path / "new.predictions.csv")
    assert list(out.columns) == ["body", "label", "confidence", "p_negative", "p_positive"]
    assert np.allclose(out["p_negative"] + out["p_positive"], 1, atol=1e-3)
    wrong = runner.invoke(app, ["predict", str(run.path), "--input", str(source)])
    assert wrong.exit_code == 2 and "no column 'text'" in wrong.output


@pytest.mark.parametrize("fmt", ["onnx", "int8"])
def test_export_is_checked_against_pytorch(done, fmt):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    run, _ = done
    result = runner.invoke(app, ["--log-jsonl", "-", "export", str(run.path), "--format", fmt])
    assert result.exit_code == 0, result.output
    figures = json.loads((run.artifacts / "export" / fmt / "export.json").read_text())
    assert figures["texts"] == 48 and figures["same_label"] >= 0.99
    assert figures["exported"]["throughput"] > 0 and figures["pytorch"]["latency_ms"] > 0
    if fmt == "onnx":
        assert figures["max_probability_gap"] < 1e-4


class StandInHub:
    """The two HfApi calls push makes, recorded instead of sent."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return type("Commit", (), {"commit_url": f"https://hub.example/{kwargs['repo_id']}/commit/1"})()


def test_push_creates_the_repo_and_uploads_the_student_folder(done):
    run, _ = done
    hub = StandInHub()
    url = push(run.artifacts / "student", "me/tickets", private=True, api=hub)
    assert url.endswith("me/tickets/commit/1")
    (create, args), (upload, kwargs) = hub.calls
    assert create == "create_repo" and args["repo_id"] == "me/tickets" and args["private"] is True
    assert upload == "upload_folder" and kwargs["folder_path"] == str(run.artifacts / "student")
    with pytest.raises(UserError, match="owner/name"):
        push(run.artifacts / "student", "tickets", api=hub)
    with pytest.raises(UserError, match="HF_TOKEN_NOT_SET"):
        push(run.artifacts / "student", "me/tickets", token_env="HF_TOKEN_NOT_SET")
