"""Every teacher request goes through the ledger and is counted: the evaluation's timing requests are paid spend
(and not paid again when the evaluation is repeated), scoring requests carry their tokens, so cost is right
wherever prices are set, and ``protege inspect`` and the report say what was paid and what the ledger answered."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

import protege

from loopback import recipe
from protege.cli import app
from protege.core import console
from protege.core.ledger import Ledger
from protege.core.run import Run
from protege.models.config import TeacherConfig
from protege.models.hf import HFTeacher
from protege.models.ledgered import LedgeredTeacher, Prices
from protege.models.openai_compat import OpenAICompatTeacher
from protege.models.route import TeacherRoute
from protege.pipeline.recipe import load_recipe
from protege.pipeline.runner import run_recipe
from protege.stage import StageContext
from protege.tasks.classify.task import ClassificationTask
from tiny import build_llama, build_tokenizer

SRC = Path(protege.__file__).resolve().parent


class Counting:
    """Wraps a backend and counts the prompts it is asked to score."""

    def __init__(self, inner):
        self.inner, self.scored = inner, 0
        self.backend, self.model_id = inner.backend, inner.model_id

    def score(self, prompts, continuations):
        self.scored += len(prompts)
        return self.inner.score(prompts, continuations)


def tiny_hf() -> HFTeacher:
    tokenizer = build_tokenizer()
    return HFTeacher(build_llama(len(tokenizer), layers=1), tokenizer, model_id="tiny")


def test_the_evaluation_times_the_teacher_through_the_ledger_and_once(tmp_path):
    from protege.tasks.classify import evaluate

    run = Run(tmp_path / "run")
    task = ClassificationTask(labels=["negative", "positive"], chat=False,
                              verbalizers={"negative": ["a"], "positive": ["the"]})
    texts = [f"the movie number {i} was a great film" for i in range(6)]
    speeds, counts = [], []
    for _ in range(2):  # the second pass is `protege run --force evaluate`: a new route, the same ledger
        backend = Counting(tiny_hf())
        route = TeacherRoute(TeacherConfig(), run.ledger, make=backend)
        ctx = StageContext(name="evaluate", config=evaluate.EvaluateConfig(), run=run, seed=0, task=task, route=route)
        speeds.append(evaluate.teacher_speed(ctx, texts, batch_size=3))
        counts.append(backend.scored)
    assert counts[0] > 0 and counts[1] == 0, "a repeated evaluation must not time (and pay for) the teacher again"
    assert speeds[0] == speeds[1]
    timed = run.ledger.totals_by_method()["score (timing)"]
    assert timed.calls == counts[0] and timed.prompt_tokens > 0
    assert run.ledger.spend()["timing"] == counts[0]


def test_no_stage_asks_the_bare_backend():
    """The route's bare backend is for the weights (teacher preparation fine-tunes them) and facts about the model
    (its tokenizer, its size), never for requests: those go through ``ctx.teacher``, the ledger."""
    users = {p.relative_to(SRC).as_posix() for p in (SRC / "tasks").rglob("*.py")
             if re.search(r"route\.backend\(\)", p.read_text())}
    weights_or_facts = {"tasks/classify/prepare.py", "tasks/reasoning/prepare.py",
                        "tasks/classify/annotate.py",  # which verbalizers are several tokens (its tokenizer)
                        "tasks/classify/evaluate.py"}  # the teacher's parameter count for the report
    assert users <= weights_or_facts, users


def test_scoring_counts_tokens_with_the_teachers_tokenizer_and_prices_them(tmp_path):
    backend = tiny_hf()
    prices = Prices(input_per_million=3.0, output_per_million=15.0)
    teacher = LedgeredTeacher(backend, Ledger(tmp_path / "l.sqlite"), prices=prices)
    prompts = ["the movie was great", "a terrible film, boring"]
    words = [" positive", " negative"]
    teacher.score(prompts, [words, words])
    rows = teacher.ledger._conn().execute("SELECT prompt_tokens, completion_tokens, cost FROM calls").fetchall()
    expected = sorted(len(backend.encode_prompt(p)) + sum(len(backend.encode_continuation(w)) for w in words)
                      for p in prompts)
    assert sorted(r[0] for r in rows) == expected and all(r[1] == 0 for r in rows)
    assert sum(r[2] for r in rows) == pytest.approx(sum(expected) * 3.0 / 1e6, rel=1e-12)


@pytest.mark.parametrize("with_tokenizer", [False, True])
def test_server_scoring_is_billed_per_candidate_request(serve, tmp_path, with_tokenizer):
    server = serve()
    tokenizer = build_tokenizer() if with_tokenizer else None
    backend = OpenAICompatTeacher(server.url, "served", tokenizer=tokenizer)
    teacher = LedgeredTeacher(backend, Ledger(tmp_path / "l.sqlite"), prices=Prices(1.0, 2.0))
    prompt, words = "Text: the movie was great\nAnswer:", [" negative", " positive"]
    teacher.score([prompt], [words])
    (p_tok, c_tok, cost), = teacher.ledger._conn().execute(
        "SELECT prompt_tokens, completion_tokens, cost FROM calls").fetchall()
    count = (lambda t: len(tokenizer(t, add_special_tokens=False)["input_ids"])) if tokenizer else \
        (lambda t: math.ceil(len(t.encode()) / 4))
    assert p_tok == sum(count(prompt + w) for w in words) and c_tok == 2 == server.paid()
    assert cost == pytest.approx((p_tok * 1.0 + 2 * 2.0) / 1e6, rel=1e-12)


def inspect(run_dir: Path) -> dict:
    result = CliRunner().invoke(app, ["--quiet", "--log-jsonl", "-", "inspect", str(run_dir)])
    console.configure()  # the runner's stdout, which the log went to, is closed now
    assert result.exit_code == 0, result.output
    (summary,) = [json.loads(line) for line in result.output.splitlines() if '"inspect"' in line]
    return summary


def test_inspect_and_the_report_say_what_was_paid_and_what_the_ledger_answered(serve, tmp_path):
    server = serve()
    path = recipe(tmp_path, server.url, n=20, teacher={"price_input_per_million": 2.0,
                                                       "price_output_per_million": 8.0})
    first = run_recipe(load_recipe(path))
    paid = first.ledger.totals().calls
    run_recipe(load_recipe(path), force=("annotate",), only=("annotate",))
    summary = inspect(first.path)
    assert summary["teacher_requests"]["paid"] == paid == server.paid() // 2
    assert summary["teacher_requests"]["from_ledger"] == paid
    totals = first.ledger.totals()
    assert summary["teacher_cost"] == pytest.approx(
        (totals.prompt_tokens * 2.0 + totals.completion_tokens * 8.0) / 1e6, rel=1e-6) and summary["teacher_cost"] > 0

    from protege.evaluate.report import Report, report_stage

    stage = report_stage(lambda run: Report("spend", "what it cost"), reads=(), writes=())
    stage.run(StageContext(name="report", config=stage.config(), run=first, seed=0))
    markdown = (first.artifacts / "report.md").read_text()
    assert f"| requests paid | {paid} |" in markdown
    assert f"| requests answered from the ledger | {paid} |" in markdown


def test_inspect_prints_paid_and_answered_for_people(serve, tmp_path):
    server = serve()
    path = recipe(tmp_path, server.url, n=20)
    run = run_recipe(load_recipe(path))
    run_recipe(load_recipe(path), force=("annotate",))
    result = CliRunner().invoke(app, ["inspect", str(run.path)], env={"COLUMNS": "200"})
    line = next(line for line in result.output.splitlines() if "answered from the ledger" in line)
    paid = run.ledger.totals().calls
    assert line.split("│")[-2].strip() == f"{paid} / {paid}"


def test_a_stored_answer_is_never_overwritten(tmp_path):
    from protege.core.ledger import CallRecord

    ledger = Ledger(tmp_path / "l.sqlite")
    first = CallRecord(key="k", backend="b", model="m", method="score", request={}, response=[1.0], prompt_tokens=3)
    ledger.put_many([first])
    ledger.put_many([CallRecord(key="k", backend="b", model="m", method="score", request={}, response=[2.0])])
    assert ledger.get_many(["k"]) == {"k": [1.0]} and ledger.totals().prompt_tokens == 3
