"""The report: rendered from a synthetic evaluate result, then opened in headless Chromium."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from protege.evaluate import speed
from protege.tasks.classify import compare
from protege.tasks.classify.report import PLOTS, write_report
from protege.core.run import Run

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def synthetic_result(one_class_student: bool = False) -> dict:
    rng = np.random.default_rng(0)
    labels = ["business", "sport", "tech"]
    gold = rng.integers(0, 3, 120)
    teacher = rng.dirichlet([1, 1, 1], 120)
    teacher[np.arange(60), gold[:60]] += 1.5  # right on half the texts
    student = np.tile([0.1, 0.8, 0.1], (120, 1)) if one_class_student else rng.dirichlet([1, 1, 1], 120)
    if not one_class_student:
        student[np.arange(100), gold[:100]] += 2
    probs = {"teacher": teacher / teacher.sum(1, keepdims=True), "student": student / student.sum(1, keepdims=True)}
    result = compare.compare(gold, probs, labels)
    result["name"] = "synthetic"
    result["speed"] = speed.compare(speed.Speed(16, 800.0, 1.5), speed.Speed(16, 9.0, 120.0))
    result["learning_curve"] = [{"examples": n, "accuracy": a, "macro_f1": a} for n, a in ((50, 0.5), (100, 0.7))]
    result["flags"] = compare.flags(result, compare.Thresholds())
    result["headline"] = compare.headline(result)
    return result


def test_flags_name_a_one_class_student_and_a_weak_teacher():
    codes = {f["code"] for f in synthetic_result(one_class_student=True)["flags"]}
    assert {"student_one_class", "student_not_above_majority"} <= codes
    assert "student_one_class" not in {f["code"] for f in synthetic_result()["flags"]}


def test_report_shows_flags_before_numbers(tmp_path):
    run = Run(tmp_path / "run")
    run.write_json("metrics.json", synthetic_result(one_class_student=True))
    page = write_report(run).read_text()
    assert page.index("student_one_class") < page.index("Quality on gold test data")
    markdown = (run.artifacts / "report.md").read_text()
    assert "student_one_class" in markdown and "| student |" in markdown


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(tmp_path):
    run = Run(tmp_path / "run")
    run.write_json("metrics.json", synthetic_result())
    page = write_report(run)
    profile = tmp_path / "profile"
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    images = dict(re.findall(r"<img id=\"plot-(\w+)\"[^>]*src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\"", dom))
    assert set(images) == set(PLOTS)
    assert all(len(data) > 2000 for data in images.values())

    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()], capture_output=True,
                   timeout=120)
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] >= 1000 and pixels[..., :3].std() > 0.05  # not a blank page


def test_cli_report_renders_a_missing_report_and_prints_its_path(tmp_path):
    from typer.testing import CliRunner

    from protege.cli import app

    run = Run(tmp_path / "run")
    run.write_json("metrics.json", synthetic_result())
    (run.path / "recipe.yaml").write_text(f"name: synthetic\nrun_dir: {run.path}\nfamily: classification\n")
    result = CliRunner().invoke(app, ["report", str(run.path), "--no-open"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("report.html") and (run.artifacts / "report.html").exists()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert missing.exit_code == 2


def test_the_teacher_baselines_stand_beside_the_student_with_tokens_and_seconds_per_text(tmp_path):
    result = synthetic_result()
    result["models"]["student"]["macro_f1_interval"] = [0.61, 0.78]
    scores = {"n": 120, "accuracy": 0.5, "accuracy_interval": [0.41, 0.59], "macro_f1": 0.48,
              "macro_f1_interval": [0.39, 0.57]}
    result["teacher_baselines"] = {
        "zero_shot": {**scores, "prompt_tokens_per_text": 41.0, "seconds_per_text": 0.05, "fills": 0},
        "feedback": {**scores, "accuracy": 0.62, "prompt_tokens_per_text": 388.4, "seconds_per_text": 0.4, "fills": 7}}
    run = Run(tmp_path / "run")
    run.write_json("metrics.json", result)
    write_report(run)
    markdown = (run.artifacts / "report.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in markdown.splitlines() if line.startswith("| teacher ") or line.startswith("| student |")}
    assert rows["teacher zero-shot"] == ["50.0 %", "41.0 – 59.0 %", "0.480", "0.390 – 0.570", "41", "50.0 ms"]
    assert rows["teacher feedback ICL (7 fills)"][0] == "62.0 %" and rows["teacher feedback ICL (7 fills)"][4] == "388"
    student = [r for name, r in rows.items() if name == "student" and len(r) == 6]
    # The student spends no teacher tokens; its latency (one text alone, measured by evaluate) sits beside them.
    assert student and student[0][4] == "0" and student[0][5] == f"{result['speed']['student']['latency_ms']:.1f} ms"
    assert student[0][3] == "0.610 – 0.780"
    result["teacher_baselines"] = {"mismatch": "icl zero_shot scored 10 test texts, not the 120 gold test texts"}
    run.write_json("metrics.json", result)
    write_report(run)
    markdown = (run.artifacts / "report.md").read_text()
    assert "Teacher baselines not shown" in markdown and "not the 120 gold test texts" in markdown
    assert "| teacher zero-shot |" not in markdown
