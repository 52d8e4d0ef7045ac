"""The prompts and respond stages: n answers per prompt, provenance, chunked saves, a re-run paying nothing."""

from __future__ import annotations

import pytest

from protege.models.base import Generation, SamplingParams
from protege.models.ledgered import LedgeredTeacher
from protege.pipeline import StageContext
from protege.recipe import Recipe, RecipeError, parse_recipe
from protege.run import Run
from protege.synth import prompts as prompts_stage
from protege.synth import respond as respond_stage
from protege.synth.prompts import PromptsConfig
from protege.synth.respond import RespondConfig


class FakeTeacher:
    """Answers with the prompt reversed plus the sample index; can be told to fail after some calls."""

    backend = "fake"
    model_id = "fake-teacher"

    def __init__(self, fail_after: int | None = None):
        self.calls: list[int] = []  # prompts per call
        self.fail_after = fail_after

    def generate(self, prompts, params: SamplingParams):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("teacher went away")
        self.calls.append(len(prompts))
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            out.append([
                Generation(text=f"{text[::-1]} #{j}", prompt_tokens=len(text), completion_tokens=3 + j,
                           finish_reason="length" if text.startswith("long") else "stop")
                for j in range(params.n)
            ])
        return out


def _context(run: Run, recipe: Recipe, name: str, teacher: FakeTeacher) -> StageContext:
    ctx = StageContext(recipe=recipe, run=run, name=name)
    ctx.__dict__["teacher"] = LedgeredTeacher(teacher, run.ledger, batch_size=100)  # in place of make_teacher
    return ctx


def _recipe(tmp_path, **respond) -> Recipe:
    texts = ["what is 2 + 3?", "name a colour", "long story please", "what is 2 + 3?", "say hi"]
    return Recipe(name="t", run_dir=tmp_path, seed=3, prompts=PromptsConfig(texts=texts),
                  respond=RespondConfig(**{"n": 2, "temperature": 0.7, "chunk_size": 2, **respond}))


def test_respond_writes_n_answers_per_prompt_with_provenance(tmp_path):
    recipe = _recipe(tmp_path)
    run = Run(tmp_path)
    teacher = FakeTeacher()
    assert prompts_stage.run(_context(run, recipe, "prompts", teacher)) == {"prompts": 4, "train": 4}
    summary = respond_stage.run(_context(run, recipe, "respond", teacher))
    prompts = run.records.read("prompts")
    responses = run.records.read("responses")
    # The truncated answers of "long story please" are dropped by default; the duplicate prompt was merged.
    assert len(responses) == 2 * 3 and summary["dropped_truncated"] == 2
    assert teacher.calls == [2, 2]  # chunk_size prompts per request
    by_prompt = responses.groupby("parent_id")
    assert set(by_prompt.size()) == {2}
    row = responses[responses["prompt"] == "name a colour"].sort_values("sample").iloc[1]
    assert row["response"] == "ruoloc a eman #1" and row["sample"] == 1
    assert row["parent_id"] == prompts[prompts["prompt"] == "name a colour"]["id"].item()
    assert row["teacher"] == "fake:fake-teacher" and row["split"] == "train" and row["stage"] == "respond"
    assert row["completion_tokens"] == 4 and row["finish_reason"] == "stop"


def test_an_interrupted_respond_resumes_and_a_rerun_hits_the_ledger(tmp_path):
    recipe = _recipe(tmp_path, chunk_size=1, drop_truncated=False)
    run = Run(tmp_path)
    prompts_stage.run(_context(run, recipe, "prompts", FakeTeacher()))
    with pytest.raises(RuntimeError):
        respond_stage.run(_context(run, recipe, "respond", FakeTeacher(fail_after=2)))
    assert run.records.read("responses")["parent_id"].nunique() == 2  # two chunks saved before the failure
    resumed = FakeTeacher()
    summary = respond_stage.run(_context(run, recipe, "respond", resumed))
    assert resumed.calls == [1, 1] and summary["answered_now"] == 2
    assert len(run.records.read("responses")) == 8
    # Forced from scratch (table gone), every answer comes from the ledger: no teacher call at all.
    run.records.replace("responses", [])
    again = FakeTeacher()
    summary = respond_stage.run(_context(run, recipe, "respond", again))
    assert again.calls == [] and summary["ledger_hits"] == 4 and summary["teacher_calls"] == 0
    assert len(run.records.read("responses")) == 8


def test_sampling_settings_are_validated():
    with pytest.raises(RecipeError, match="temperature > 0"):
        parse_recipe({"name": "t", "run_dir": "x", "respond": {"n": 4}})
    with pytest.raises(RecipeError, match="exactly one prompt source"):
        parse_recipe({"name": "t", "run_dir": "x", "prompts": {}})
