"""prompts → respond → train_lm → evaluate_lm on tiny models: the LM recipe's stages end to end, in seconds."""

from __future__ import annotations

from markupsafe import escape
import json

import pytest

from protege.tasks.lm.report import write_report
from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import RecipeError, parse_recipe

from tiny import save_tiny_causal_lm

PROMPTS = [f"what is {a} plus {b}? the answer is" for a in range(4) for b in range(5)]


def _recipe(tmp_path, teacher_dir, **train_lm):
    return parse_recipe({
        "name": "tiny-lm", "run_dir": str(tmp_path / "run"), "seed": 0,
        "teacher": {"backend": "hf", "model": str(teacher_dir)},
        "prompts": {"texts": PROMPTS, "dev_fraction": 0.25},
        "respond": {"max_new_tokens": 6, "splits": ["train", "dev"], "drop_truncated": False},
        "train_lm": {"student": {"prune_teacher": "every_other"}, "objective": "logit_kd", "compare_sft": True,
                     "loop": {"steps": 3, "micro_batch_size": 4, "lr": 1e-3, "tracker": None}, **train_lm},
        "evaluate_lm": {"split": "dev", "max_new_tokens": 5, "generate_examples": 4},
        "report": {},
    })


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("teacher") / "model", layers=4)


def test_lm_stages_train_both_students_and_report(tmp_path, teacher_dir):
    run = run_recipe(_recipe(tmp_path, teacher_dir))
    index = json.loads((run.artifacts / "train_lm.json").read_text())["students"]
    assert set(index) == {"logit_kd", "sft"} and all(v["steps"] == 3 for v in index.values())
    saved = json.loads((run.artifacts / "students" / "logit_kd" / "config.json").read_text())
    assert saved["num_hidden_layers"] == 2  # pruned from the 4-layer teacher
    metrics = json.loads((run.artifacts / "lm_metrics.json").read_text())
    models = metrics["models"]
    assert set(models) == {"teacher", "initial", "logit_kd", "sft"}
    for name in ("initial", "logit_kd", "sft"):
        m = models[name]
        assert m["kl"] >= 0 and 0 <= m["top1_agreement"] <= 1 and m["nll"] > 0
        assert m["tokens_per_answer"] <= 5 and m["tokens_per_second"] > 0
    assert models["logit_kd"]["kl"] < models["initial"]["kl"]  # three KD steps already move towards the teacher
    report = (run.artifacts / "report.md").read_text()
    assert "logit_kd" in report and metrics["headline"] in report
    (run.artifacts / "report.html").unlink()
    page = write_report(run).read_text()  # what `protege report --rerender` does
    assert str(escape(metrics["headline"])) in page and page.count("<tr>") == 18  # 4 tables


@pytest.mark.parametrize("variant", ["cached_kd", "on_policy_kd"])
def test_cached_and_on_policy_students(tmp_path, teacher_dir, variant):
    recipe = _recipe(tmp_path, teacher_dir, compare_sft=False,
                     loop={"steps": 2, "micro_batch_size": 4, "lr": 1e-3, "tracker": None, "eval_every": 1,
                           "log_every": 1},
                     **({"objective": "cached_kd"} if variant == "cached_kd" else
                        {"on_policy": {"fraction": 1.0, "max_new_tokens": 4}}))
    recipe.evaluate_lm = recipe.report = None
    if variant == "cached_kd":
        recipe.cache_logits = parse_recipe({"name": "x", "run_dir": ".", "cache_logits": {"k": 8}}).cache_logits
    run = run_recipe(recipe)
    index = json.loads((run.artifacts / "train_lm.json").read_text())["students"]
    assert list(index) == [variant]
    evaluations = index[variant]["evaluations"]
    assert [e["step"] for e in evaluations] == [1, 2] and all(e["kl"] > 0 for e in evaluations)
    lines = (run.artifacts / "metrics" / f"{variant}.jsonl").read_text().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["kd"] > 0 for x in lines)


def test_on_policy_needs_logit_kd(tmp_path, teacher_dir):
    with pytest.raises(RecipeError, match="on-policy KD needs objective: logit_kd"):
        _recipe(tmp_path, teacher_dir, objective="sft", on_policy={"fraction": 0.5})
