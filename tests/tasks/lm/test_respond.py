"""The prompts and respond stages: n answers per prompt, provenance, chunked saves, a re-run paying nothing."""

from __future__ import annotations

import json

import pytest

from protege.models.base import Generation, SamplingParams
from protege.pipeline.recipe import Recipe, RecipeError, parse_recipe
from protege.pipeline.runner import run_recipe


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


def _recipe(tmp_path, **respond) -> Recipe:
    texts = ["what is 2 + 3?", "name a colour", "long story please", "what is 2 + 3?", "say hi"]
    return parse_recipe({"name": "t", "run_dir": str(tmp_path), "seed": 3, "teacher": {"batch_size": 100},
                         "prompts": {"texts": texts},
                         "respond": {"n": 2, "temperature": 0.7, "chunk_size": 2, **respond}})


def _summary(run, stage: str) -> dict:
    return next(s["summary"] for s in run.ledger.stages() if s["name"] == stage)


def test_respond_writes_n_answers_per_prompt_with_provenance(tmp_path):
    teacher = FakeTeacher()
    run = run_recipe(_recipe(tmp_path), teacher=teacher)
    assert {k: v for k, v in _summary(run, "prompts").items() if k != "seconds"} == {"prompts": 4, "train": 4}
    summary = _summary(run, "respond")
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
    lines = [json.loads(line) for line in (run.artifacts / "responses.messages.jsonl").read_text().splitlines()]
    assert len(lines) == 6 and {"messages": [{"role": "user", "content": "name a colour"},
                                             {"role": "assistant", "content": "ruoloc a eman #1"}],
                                "split": "train"} in lines


def test_an_interrupted_respond_resumes_and_a_rerun_hits_the_ledger(tmp_path):
    recipe = _recipe(tmp_path, chunk_size=1, drop_truncated=False)
    with pytest.raises(RuntimeError):
        run_recipe(recipe, teacher=FakeTeacher(fail_after=2))
    run = run_recipe(recipe, only=("prompts",))  # done: nothing to do
    assert run.records.read("responses")["parent_id"].nunique() == 2  # two chunks saved before the failure
    resumed = FakeTeacher()
    run = run_recipe(recipe, teacher=resumed)
    summary = _summary(run, "respond")
    assert resumed.calls == [1, 1] and summary["answered_now"] == 2
    assert len(run.records.read("responses")) == 8
    # Forced from scratch (table cleared), every answer comes from the ledger: no teacher call at all.
    again = FakeTeacher()
    run = run_recipe(recipe, teacher=again, force=("respond",))
    summary = _summary(run, "respond")
    assert again.calls == [] and summary["ledger_hits"] == 4 and summary["teacher_calls"] == 0
    assert summary["teacher_requests"] == {"sent": 0, "from_ledger": 4}
    assert len(run.records.read("responses")) == 8


def test_sampling_settings_are_validated():
    with pytest.raises(RecipeError, match="temperature > 0"):
        parse_recipe({"name": "t", "run_dir": "x", "respond": {"n": 4}})
    with pytest.raises(RecipeError, match="exactly one prompt source"):
        parse_recipe({"name": "t", "run_dir": "x", "prompts": {}})
