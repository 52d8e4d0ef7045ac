"""The reasoning family's stages end to end on tiny models, through run_recipe with an injected teacher."""

from __future__ import annotations

import json

import pytest
from scripted_reasoner import ScriptedReasoner, fate
from tiny import build_llama, build_tokenizer

from protege.pipeline.recipe import RecipeError, parse_recipe
from protege.pipeline.runner import run_recipe

LOOP = {"steps": 2, "micro_batch_size": 4, "lr": 1e-3, "tracker": None, "log_every": 1}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def teacher():
    tokenizer = build_tokenizer(("Compute 12 + 34 - 5. <answer>41</answer> 12 + 34 = 46",))
    return ScriptedReasoner(build_llama(len(tokenizer), layers=4, seed=3), tokenizer, model_id="tiny-reasoner")


def recipe(tmp_path, **over):
    data = {
        "name": "tiny-reasoning", "family": "reasoning", "run_dir": str(tmp_path / "run"), "seed": 0,
        "teacher": {"backend": "hf", "model": "tiny-reasoner"},
        "task": {"source": "chain_sum", "knobs": {"terms": 2, "digits": 1}},
        "problems": {"train": 12, "test": 6},
        "prepare_teacher": {"loop": LOOP, "max_length": 256},
        "student": {"loop": LOOP, "max_length": 256},
        "estimate": {"policy": "teacher", "k": 3, "sampling": {"max_new_tokens": 8}},
        "allocate": {"budget": 5, "arms": [{"name": "uniform", "kind": "uniform"},
                                           {"name": "hs_star", "kind": "hs_star"},
                                           {"name": "dast", "kind": "dast", "better": "teacher"}]},
        "selftrain": {"methods": ["star", "dpo"], "loop": {**LOOP, "steps": 1}, "max_length": 256},
        "evaluate": {"max_new_tokens": 6, "samples": 2},
        "report": {},
    }
    for key, value in over.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return parse_recipe(data)


def test_every_stage_runs_and_a_rerun_pays_nothing(tmp_path, teacher):
    run = run_recipe(recipe(tmp_path), teacher=teacher)
    a = run.artifacts
    prepared = json.loads((a / "prepare_teacher.json").read_text())
    assert prepared["model_id"].startswith("tiny-reasoner+sft-") and prepared["steps"] == 2
    student = json.loads((a / "student.json").read_text())
    assert student["layers"] == [0, 2] and json.loads((a / "student" / "config.json").read_text())[
        "num_hidden_layers"] == 2
    samples = run.records.read("samples")
    assert len(samples) == 12 * 3 and set(samples["policy"]) == {prepared["model_id"]}
    assert {"problem_id", "round", "response", "tokens", "correct", "formatted", "truncated", "process_score",
            "seed"} <= set(samples.columns)
    stats = run.records.read("difficulty").set_index("problem_id")
    problems = run.records.read("problems").set_index("id")
    for pid, row in stats.iterrows():  # the scripted fates come back as labels
        want = {0: "easy", 1: "too_hard", 2: "boundary"}[fate(f"Compute {problems.loc[pid, 'question'][8:-1]}.")]
        assert row["hs_label"] == want
    alloc = json.loads((a / "allocate.json").read_text())
    for name, b in alloc["arms"].items():
        assert b["samples"] == 5 * 12, name  # exactly B·N for every arm
    assert alloc["arms"]["uniform"]["extra_on_solved"] == 2 * (stats["hs_label"] == "easy").sum()
    assert alloc["arms"]["hs_star"]["extra_on_solved"] == 0
    assert alloc["arms"]["hs_star"]["boundary_share"] > alloc["arms"]["uniform"]["boundary_share"]
    hard = stats["dast_level"].isin(["hard", "unsolved"])
    assert alloc["arms"]["dast"]["teacher_calls"] > 0 and hard.any()
    arms = run.records.read("arms")
    from protege.tasks.reasoning.budget import arm_samples

    for name in ("uniform", "hs_star", "dast"):  # an arm trains on exactly the samples it was allocated
        mine = arm_samples(run, name)
        assert len(mine) == 5 * 12
        per_problem = arms[arms["arm"] == name].set_index("problem_id")["count"]
        counts = {pid: sum(r["problem_id"] == pid for r in mine) for pid in per_problem.index}
        assert counts == per_problem.to_dict()
    pool = run.records.read("allocated_samples")  # the pool is the hungriest arm per problem, not the sum
    assert len(pool) == sum(arms.groupby(["problem_id", "better"])["count"].max() - 3)
    assert set(arms[(arms["arm"] == "dast") & (arms["better"] == "teacher")]["problem_id"]) <= set(stats.index[hard])
    trained = json.loads((a / "selftrain.json").read_text())
    assert set(trained) == {f"{arm}-{m}" for arm in ("uniform", "hs_star", "dast") for m in ("star", "dpo")}
    assert trained["hs_star-dpo"]["examples"] >= 1 and trained["uniform-star"]["examples"] >= 1
    metrics = json.loads((a / "reasoning_metrics.json").read_text())
    assert set(metrics["models"]) == {"teacher", "student", *trained}
    teacher_acc = metrics["models"]["teacher"]["accuracy"]
    tests = problems[problems["split"] == "test"]
    # greedy asks one sample with seed 0: a mixed problem's first sample is right
    assert teacher_acc == pytest.approx(sum(fate(f"Compute {q[8:-1]}.") != 1 for q in tests["question"]) / 6)
    assert {"pass@1", "pass@2", "maj@n"} <= set(metrics["models"]["student"])
    pairs = {(c["a"], c["b"]) for c in metrics["comparisons"]}
    assert ("hs_star-star", "uniform-star") in pairs and ("dast-dpo", "uniform-dpo") in pairs
    assert all(c["low"] <= c["difference"] <= c["high"] for c in metrics["comparisons"])
    assert metrics["headline"] in (a / "report.md").read_text()

    calls = ScriptedReasoner.calls
    again = run_recipe(recipe(tmp_path), teacher=teacher)
    assert ScriptedReasoner.calls == calls  # nothing asked twice
    assert json.loads((again.artifacts / "reasoning_metrics.json").read_text())["headline"] == metrics["headline"]


def test_lora_preparation_and_student_policy(tmp_path, teacher):
    run = run_recipe(recipe(tmp_path, prepare_teacher={"loop": {**LOOP, "lora": {"r": 2}}, "max_length": 256},
                            estimate={"k": 2, "teacher_k": 2, "sampling": {"max_new_tokens": 4}},
                            allocate={"budget": 3}, selftrain=None, evaluate={"max_new_tokens": 4, "teacher": False}),
                     teacher=teacher)
    assert json.loads((run.artifacts / "prepare_teacher.json").read_text())["lora"] is True
    samples = run.records.read("samples")
    student_id = json.loads((run.artifacts / "student.json").read_text())["model_id"]
    assert len(samples) == 24 and set(samples["policy"]) == {student_id}
    assert (samples["tokens"] <= 4).all() and samples["truncated"].any()
    stats = run.records.read("difficulty")  # the scripted teacher solves fate-0 problems; the random student none
    problems = run.records.read("problems").set_index("id")
    fates = [fate(f"Compute {problems.loc[p, 'question'][8:-1]}.") for p in stats["problem_id"]]
    assert [bool(t) for t in stats["teacher_only"]] == [f != 1 and c == 0 for f, c in zip(fates, stats["correct"])]
    assert json.loads((run.artifacts / "allocate.json").read_text())["arms"]["uniform"]["samples"] == 36
    assert set(json.loads((run.artifacts / "reasoning_metrics.json").read_text())["models"]) == {"student"}


@pytest.mark.parametrize("change, message", [
    ({"task": {"verifier": "fuzzy"}}, "task.verifier='fuzzy' is unknown"),
    ({"task": {"knobs": {"terms": 40}}}, "task.knobs.terms=40 is out of range"),
    ({"task": {"source": "nowhere.jsonl"}}, "nowhere.jsonl does not exist"),
    ({"allocate": {"budget": 2}}, "allocate.budget=2 is smaller than estimate.k=3"),
    ({"selftrain": {"arms": ["greedy"], "loop": LOOP}}, "selftrain.arms names \\['greedy'\\]"),
    ({"allocate": {"arms": [{"name": "u", "kind": "uniform", "better": "hint"}]}}, "applies to kind: dast only"),
])
def test_bad_recipes_fail_when_read(tmp_path, change, message):
    with pytest.raises(RecipeError, match=message):
        recipe(tmp_path, **change)


def test_source_without_answer_fails_before_sampling(tmp_path, teacher):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "What is 2 + 2?"}) + "\n")
    with pytest.raises(ValueError, match="row 1 has no 'answer' column"):
        run_recipe(recipe(tmp_path, task={"source": str(bad)}), teacher=teacher)
    assert not (tmp_path / "run" / "records" / "samples").exists()


def test_dpo_without_pairs_fails_before_training(tmp_path, teacher):
    # 2 × 1 problems the scripted teacher always solves or always misses: no problem gives a pair.
    run = recipe(tmp_path, selftrain={"methods": ["dpo"], "loop": LOOP}, evaluate=None, report=None,
                 estimate={"policy": "teacher", "k": 2, "sampling": {"max_new_tokens": 8}}, allocate={"budget": 2})
    with pytest.raises(ValueError, match="selftrain.methods has dpo but arm 'uniform' gives no DPO pairs"):
        run_recipe(run, teacher=_never_mixed(teacher))
    assert not (tmp_path / "run" / "artifacts" / "selftrained").exists()


def _never_mixed(teacher):
    class Fixed(ScriptedReasoner):
        def generate(self, prompts, params):
            params = type(params)(**{**params.to_dict(), "n": params.n})
            gens = super().generate(prompts, params)
            return [[g[0]] * len(g) for g in gens]  # every sample of a problem like its first: all right or all wrong
    return Fixed(teacher.model, teacher.tokenizer, model_id=teacher.model_id)


def test_ready_student_is_fine_tuned_without_the_teachers_weights(tmp_path, teacher):
    from tiny import save_tiny_causal_lm

    folder = save_tiny_causal_lm(tmp_path / "ready", layers=2)
    run = run_recipe(recipe(tmp_path, prepare_teacher=None, student={"model": str(folder), "loop": LOOP},
                            estimate={"k": 2, "sampling": {"max_new_tokens": 4}}, allocate=None, selftrain=None,
                            evaluate={"max_new_tokens": 4, "teacher": False}), teacher=teacher)
    summary = json.loads((run.artifacts / "student.json").read_text())
    assert summary["objective"] == "SFT" and summary["layers"] == [0, 1] and summary["steps"] == 2
    assert not (run.artifacts / "teacher").exists()
