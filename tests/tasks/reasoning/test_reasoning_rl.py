"""The reasoning family's rl stage: GRPO / on-policy KD / KDRL arms end to end, their logs, and the refusals."""

from __future__ import annotations

import json

import pytest
from scripted_reasoner import ScriptedReasoner
from tiny import CHATML, build_llama, build_tokenizer

from protege.core import console
from protege.pipeline.recipe import RecipeError, parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.reasoning import answers
from protege.tasks.reasoning.rl import check_rewards, check_tokenizers
from protege.tasks.reasoning.task import ReasoningTask
from protege.train import grpo
from protege.train.preflight import TokenizerMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")

LOOP = {"steps": 2, "micro_batch_size": 2, "lr": 1e-3, "tracker": None, "log_every": 1}
ARMS = [{"name": "grpo", "objective": "grpo"},
        {"name": "kd", "objective": "onpolicy_kd"},
        {"name": "kdrl", "objective": "kdrl", "kd": {"estimator": "k2", "beta": 0.1, "gate": "response"}},
        {"name": "late", "objective": "kdrl", "kd": {"schedule": "switch", "switch_step": 0}}]


@pytest.fixture
def teacher():
    tokenizer = build_tokenizer(("Compute 12 + 34 - 5. <answer>41</answer> 12 + 34 = 46",))
    return ScriptedReasoner(build_llama(len(tokenizer), layers=4, seed=3), tokenizer, model_id="tiny-reasoner")


def recipe(tmp_path, **over):
    data = {
        "name": "tiny-rl", "family": "reasoning", "run_dir": str(tmp_path / "run"), "seed": 0,
        "teacher": {"backend": "hf", "model": "tiny-reasoner"},
        "task": {"source": "chain_sum", "knobs": {"terms": 2, "digits": 1}},
        "problems": {"train": 8, "dev": 3, "test": 4},
        "prepare_teacher": {"loop": {**LOOP, "steps": 1}, "max_length": 256},
        "student": {"loop": {**LOOP, "steps": 1}, "max_length": 256},
        "rl": {"arms": ARMS, "rollouts": {"group_size": 2, "max_new_tokens": 5, "generation_dtype": None},
               "loop": {**LOOP, "eval_every": 1}, "heldout": 3},
        "evaluate": {"max_new_tokens": 5, "teacher": False},
        "report": {},
    }
    for key, value in over.items():
        data[key] = value
    return parse_recipe(data)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rl_arms_train_log_every_step_and_are_evaluated(tmp_path, teacher, monkeypatch):
    events = []
    monkeypatch.setattr(console, "warn", lambda message, code, **f: events.append(("warn", code, message)))
    rollout = grpo.GRPOSource._rollout
    monkeypatch.setattr(grpo.GRPOSource, "_rollout",
                        lambda self, indices: events.append(("rollout",)) or rollout(self, indices))
    run = run_recipe(recipe(tmp_path), teacher=teacher)
    a = run.artifacts
    # The gate that can never open is named before the first rollout of the first arm.
    first = events.index(("rollout",))
    warned = [e for e in events[:first] if e[0] == "warn" and e[1] == "kd_never_applies"]
    assert len(warned) == 1 and "'late'" in warned[0][2]

    summary = json.loads((a / "rl.json").read_text())
    assert list(summary) == ["grpo", "kd", "kdrl", "late"]
    for name, s in summary.items():
        assert s["steps"] == 2 and s["rollouts"] == 2 * 2 * 2  # steps × prompts × G
        steps = _lines(a / "metrics" / f"rl-{name}.jsonl")
        assert [r["step"] for r in steps] == [1, 2]
        for r in steps:
            assert {"pg_loss", "reward", "response_length", "zero_variance"} <= set(r)
            assert 1 <= r["response_length"] <= 5
        tokens = sum(r["response_length"] * 4 for r in steps)
        assert s["generated_tokens"] == pytest.approx(tokens)
        evals = _lines(a / "metrics" / f"rl-{name}-eval.jsonl")
        assert [e["step"] for e in evals] == [1, 2] and all(e["heldout_kl"] > 0 for e in evals)
        assert s["heldout_kl"] == evals[-1]["heldout_kl"]
        assert (a / "rl" / name / "config.json").exists()
    assert summary["grpo"]["teacher_tokens"] == 0 and summary["grpo"]["kd"] is None
    kd_steps = _lines(a / "metrics" / "rl-kd.jsonl")
    # On-policy KD: the teacher scores every response token, β = 1, the reward trains nothing.
    assert summary["kd"]["kd"]["schedule"] == "kd_only" and summary["kd"]["kd"]["estimator"] == "exact"
    assert summary["kd"]["teacher_tokens"] == summary["kd"]["generated_tokens"]
    assert all(r["beta"] == 1.0 and r["gate_open"] == 1.0 and r["kd"] > 0 and r["pg_loss"] == 0 for r in kd_steps)
    kdrl_steps = _lines(a / "metrics" / "rl-kdrl.jsonl")
    assert all(r["beta"] == pytest.approx(0.1) and r["gate_open"] == pytest.approx(1 - r["reward"])
               for r in kdrl_steps)
    assert summary["late"]["teacher_tokens"] == 0

    metrics = json.loads((a / "reasoning_metrics.json").read_text())
    assert {"student", "rl-grpo", "rl-kd", "rl-kdrl", "rl-late"} == set(metrics["models"])
    pairs = {(c["a"], c["b"]) for c in metrics["comparisons"]}
    assert {("rl-kdrl", "student"), ("rl-kd", "rl-grpo"), ("rl-kdrl", "rl-grpo")} <= pairs
    report = (a / "report.md").read_text()
    assert "RL arms at equal steps" in report and "kd_only" in report

    events.clear()
    run_recipe(recipe(tmp_path), teacher=teacher)  # every arm is saved: nothing rolls out again
    assert ("rollout",) not in events


@pytest.mark.parametrize("rl_change, message", [
    ({"arms": [{"name": "a", "objective": "kdrl", "kd": {"estimator": "k1"}}]}, "k1.*expectation"),
    ({"rollouts": {"group_size": 1}}, "group_size"),
    ({"arms": [{"name": "a", "objective": "grpo", "kd": {"beta": 0.1}}]}, "grpo has no teacher term"),
    ({"arms": [{"name": "a", "objective": "grpo"}, {"name": "a", "objective": "kdrl"}]}, "used twice"),
    ({"arms": [{"name": "a", "objective": "onpolicy_kd", "kd": {"schedule": "switch", "switch_step": 2}}]},
     "nothing to switch to"),
    ({"prompts": "boundary"}, "estimate"),
    ({"policy": {"kd": {"beta": 0.1}}}, "chosen per arm"),
])
def test_bad_rl_sections_fail_when_read(tmp_path, rl_change, message):
    rl = {"arms": ARMS[:1], "loop": LOOP, **rl_change}
    with pytest.raises(RecipeError, match=message):
        recipe(tmp_path, rl=rl)


def test_held_out_kl_needs_dev_problems(tmp_path):
    with pytest.raises(RecipeError, match="problems.dev"):
        recipe(tmp_path, problems={"train": 8, "test": 4})


def _problems(*answers_):
    return [{"id": f"p{i}", "answer": a} for i, a in enumerate(answers_)]


def test_rewards_must_be_binary_and_accept_the_gold_answer(monkeypatch):
    task = ReasoningTask(source="chain_sum")
    check_rewards(task, _problems("12", "-3"))
    with pytest.raises(ValueError, match=r"problem p1 its own gold answer the reward 0.0.*'twelve'"):
        check_rewards(task, _problems("12", "twelve"))
    monkeypatch.setitem(answers.VERIFIERS, "numeric", lambda predicted, gold: 0.5)
    with pytest.raises(ValueError, match="binary verdict"):
        check_rewards(task, _problems("12"))


def test_a_different_tokenizer_is_refused_with_what_would_work():
    mine = build_tokenizer()
    check_tokenizers(mine, build_tokenizer())
    with pytest.raises(TokenizerMismatchError, match="sequence level"):
        check_tokenizers(build_tokenizer(vocab_size=200), mine)
    other_template = build_tokenizer()
    other_template.chat_template = CHATML.replace("assistant", "bot")
    with pytest.raises(TokenizerMismatchError, match="k2, k1_reward or k3"):
        check_tokenizers(other_template, mine)
    check_tokenizers(other_template, mine, served=True)  # what it suggests: a served teacher reads the student's ids
    with pytest.raises(TokenizerMismatchError, match="sequence level"):
        check_tokenizers(build_tokenizer(vocab_size=200), mine, served=True)


SERVED = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "tiny-reasoner"}


def test_a_served_teacher_scores_the_sampled_tokens_and_exact_is_refused_before_any_rollout(tmp_path, teacher,
                                                                                           monkeypatch):
    arms = [{"name": "kdrl", "objective": "kdrl", "kd": {"estimator": "k2", "beta": 0.1}}]
    rl = {"arms": arms, "rollouts": {"group_size": 2, "max_new_tokens": 5, "generation_dtype": None},
          "loop": LOOP, "heldout": 3}
    run = run_recipe(recipe(tmp_path, teacher=SERVED, rl=rl, evaluate={"max_new_tokens": 5, "teacher": False}),
                     teacher=teacher)
    s = json.loads((run.artifacts / "rl.json").read_text())["kdrl"]
    assert s["teacher_tokens"] == s["generated_tokens"] > 0 and s["teacher_unscored"] == 0
    assert s["evaluations"] == []  # the held-out exact KL needs the weights: skipped
    rollouts = []
    monkeypatch.setattr(grpo.GRPOSource, "_rollout", lambda self, indices: rollouts.append(indices))
    exact = [{"name": "exact", "objective": "kdrl", "kd": {"estimator": "exact"}}]
    with pytest.raises(ValueError, match="'exact' needs the teacher's whole distribution"):
        run_recipe(recipe(tmp_path, teacher=SERVED, rl={**rl, "arms": exact}), teacher=teacher)
    assert rollouts == []
