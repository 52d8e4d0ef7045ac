"""Fail before spending: whatever would fail after the teacher was paid is found first — models that do not exist
(in under a second, offline), stages without their inputs or their teacher, templates that do not render, labels
a report cannot draw — and prompts longer than the teacher's context are cut to fit and counted, or refused."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from loopback import recipe, texts
from protege.cli import app
from protege.core.run import Run
from protege.models.hf import HFTeacher
from protege.pipeline.recipe import load_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.classify import compare
from protege.tasks.classify.report import write_report
from tiny import build_llama, build_tokenizer


@pytest.fixture
def offline(monkeypatch):
    """No hub: HF_HUB_OFFLINE set, and any cached reachability answer forgotten."""
    from protege.models import resolve

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    getattr(getattr(resolve, "hub_reachable", None), "cache_clear", lambda: None)()
    yield
    getattr(getattr(resolve, "hub_reachable", None), "cache_clear", lambda: None)()


def refused(path, *args: str):
    """Run the CLI; the recipe must be refused with exit 2 before its run directory exists."""
    began = time.perf_counter()
    result = CliRunner().invoke(app, ["run", str(path), *args])
    elapsed = time.perf_counter() - began
    assert result.exit_code == 2, result.output
    assert not (path.parent / "run").exists(), "nothing may be created before the recipe is known to be runnable"
    return result.output, elapsed


def test_a_misspelt_teacher_fails_in_under_a_second_offline(serve, tmp_path, offline):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1", teacher={"backend": "hf", "model": "smollm2-135m-instrct"})
    output, elapsed = refused(path)
    assert "no model named 'smollm2-135m-instrct': not an embedded name, not a local folder, and the hub is " \
           "unreachable" in " ".join(output.split())
    assert "smollm2-135m-instruct" in output.replace("instrct", "") and elapsed < 1.0


def test_an_unreachable_hub_is_found_without_waiting(tmp_path, monkeypatch):
    from protege.models import resolve

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    getattr(getattr(resolve, "hub_reachable", None), "cache_clear", lambda: None)()
    path = recipe(tmp_path, "http://127.0.0.1:9/v1", teacher={"backend": "hf", "model": "someone/no-such-model"})
    output, elapsed = refused(path)
    getattr(getattr(resolve, "hub_reachable", None), "cache_clear", lambda: None)()
    assert "hub is unreachable" in " ".join(output.split()) and elapsed < 1.0


def test_a_wrong_student_is_found_before_any_teacher_call(serve, tmp_path, offline):
    server = serve()
    path = recipe(tmp_path, server.url, extra="select: {budget: 5}\ntrain: {student: minilm-l7}\n")
    output, _ = refused(path)
    assert "train.student" in output and "minilm-l7" in output and "minilm-l6" in output
    assert server.count == 0


def test_a_teacher_stage_without_a_teacher_section_fails_before_the_data_stage(tmp_path):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("teacher:")))
    output, _ = refused(path)
    assert "teacher:" in output and "annotate" in output


def test_a_stage_whose_input_nobody_writes_is_refused_before_anything(tmp_path):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    path.write_text(path.read_text().replace("annotate: {chunk_size: 8, calibration: none}", "select: {budget: 5}"))
    output, _ = refused(path)
    assert "select" in output and "annotate" in output


@pytest.mark.parametrize("key,section", [
    ("task.instruction", "task: {labels: [negative, positive], chat: false, instruction: 'Reply in JSON: "
                         "{\"label\": one of {labels}}'}"),
    ("task.templates", "task: {labels: [negative, positive], chat: false, templates: ['{text} -> {label}']}"),
    ("augment.prompt.instruction", "augment: {prompt: {kind: one_error, instruction: 'Write a text like {text} "
                                   "with {labels}'}}"),
])
def test_a_template_that_does_not_render_is_refused_at_load(tmp_path, key, section):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    lines = path.read_text().splitlines()
    if section.startswith("task:"):
        lines = [section if line.startswith("task:") else line for line in lines]
    else:
        lines.append(section)
    path.write_text("\n".join(lines) + "\n")
    output, _ = refused(path)
    assert key in output and "{{" in output


def test_labels_any_report_can_draw_and_escapes(tmp_path):
    labels = ["a$^$b", "*bold*|<b>", "_x_ [link](http://e)"]
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 60)
    probs = {name: rng.dirichlet([1, 1, 1], 60) for name in ("teacher", "student")}
    result = compare.compare(gold, probs, labels)
    result.update(name="escaping", flags=[], headline="student | <script>alert(1)</script> *done*")
    run = Run(tmp_path / "run")
    run.write_json("metrics.json", result)
    page = write_report(run).read_text()
    markdown = (run.artifacts / "report.md").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<script>" not in markdown and "\\<script\\>" in markdown and "\\*done\\*" in markdown
    assert "\\*bold\\*\\|\\<b\\>" in markdown


def tiny_teacher(max_positions: int) -> HFTeacher:
    tokenizer = build_tokenizer()
    return HFTeacher(build_llama(len(tokenizer), layers=1, max_positions=max_positions), tokenizer,
                     model_id=f"tiny-{max_positions}")


CONTEXT = 160  # positions of the tiny teacher; an ordinary prompt here takes about 95 tokens


def long_texts_recipe(tmp_path, too_long: str = "truncate"):
    """24 texts, every third far longer than the teacher's context; single-token verbalizers keep scoring fast."""
    rows = texts(24)
    for i in range(0, 24, 3):
        rows[i]["text"] = " ".join(["the movie was great and the acting was wonderful"] * 12) + rows[i]["text"]
    (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    path = recipe(tmp_path, "http://127.0.0.1:9/v1", teacher={"backend": "hf", "model": "smollm2-135m-instruct"})
    path.write_text(path.read_text().replace(
        "task: {labels: [negative, positive], chat: false}",
        "task: {labels: [negative, positive], chat: false, verbalizers: {negative: [a], positive: [the]}}").replace(
        "annotate: {chunk_size: 8, calibration: none}",
        f"annotate: {{chunk_size: 8, calibration: none, too_long: {too_long}}}"))
    return path


def test_texts_longer_than_the_teacher_context_are_cut_and_counted(tmp_path):
    teacher = tiny_teacher(CONTEXT)
    run = run_recipe(load_recipe(long_texts_recipe(tmp_path)), teacher=teacher)
    cut = run.read_json("annotate.json")["timing"]["truncated"]
    assert cut["texts"] == 8 and cut["context"] == CONTEXT and cut["longest_prompt_tokens"] > CONTEXT
    assert run.ledger.spend()["truncated_texts"] == 8
    prompts = [row[0] for row in run.ledger._conn().execute("SELECT request FROM calls")]
    from protege.core.ledger import _unpack

    sent = [len(teacher.encode_prompt(_unpack(blob)["item"][0])) + 1 for blob in prompts]
    assert max(sent) <= CONTEXT and max(sent) > CONTEXT - 12  # cut to fit, not far below


def test_texts_longer_than_the_context_can_be_refused_before_any_request(tmp_path):
    with pytest.raises(ValueError, match=f"more than the teacher's context of {CONTEXT}"):
        run_recipe(load_recipe(long_texts_recipe(tmp_path, "refuse")), teacher=tiny_teacher(CONTEXT))
    assert Run(tmp_path / "run").ledger.totals().calls == 0


def test_dry_run_runs_the_same_checks(tmp_path, offline):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1", teacher={"backend": "hf", "model": "no-such-model"})
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 2 and "no model named 'no-such-model'" in " ".join(result.output.split())


def test_a_hub_model_in_the_local_cache_passes_offline(tmp_path, offline, monkeypatch):
    cache = tmp_path / "hub"
    (cache / "models--someone--cached" / "snapshots" / "abc").mkdir(parents=True)
    (cache / "models--someone--cached" / "snapshots" / "abc" / "config.json").write_text("{}")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    path = recipe(tmp_path, "http://127.0.0.1:9/v1", teacher={"backend": "hf", "model": "someone/cached"})
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
