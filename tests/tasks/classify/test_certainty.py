"""Certainty in the classification report: a tie with the gold-seed student is flagged (the AG News case), a
small test set is said to be too small, calibration is flagged and fixed on dev, advice knows what was done."""

from __future__ import annotations

import numpy as np

from protege.evaluate.costs import run_costs
from protege.core.run import Run
from protege.tasks.classify import certainty, compare, model_card
from protege.tasks.classify.certainty import CertaintyConfig
from protege.tasks.classify.report import build

LABELS = ["world", "sports", "business", "sci/tech"]


def one_hot_right(gold: np.ndarray, accuracy: float, rng: np.random.Generator, sharp: float = 4.0) -> np.ndarray:
    pred = np.where(rng.random(gold.size) < accuracy, gold, (gold + 1) % len(LABELS))
    logits = rng.normal(0, 0.3, (gold.size, len(LABELS)))
    logits[np.arange(gold.size), pred] += sharp
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def result_for(n: int, acc: dict[str, float], did: dict | None = None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    gold = rng.integers(0, len(LABELS), n)
    probs = {name: one_hot_right(gold, a, rng) for name, a in acc.items()}
    result = compare.compare(gold, probs, LABELS)
    preds = {k: v.argmax(1) for k, v in probs.items()}
    preds["majority"] = np.full(n, LABELS.index(result["majority"]["label"]))
    cfg = CertaintyConfig()
    for name in result["models"]:
        result["models"][name]["accuracy_interval"] = certainty.accuracy_interval(preds[name] == gold, 0.95)
    result["differences"] = certainty.differences(gold, preds, cfg)
    result["calibration"] = certainty.calibration(probs["student"][: n // 2], gold[: n // 2], probs["student"],
                                                  gold, 10)
    result["flags"] = compare.flags(result, compare.Thresholds()) + certainty.certainty_flags(result, did or {}, cfg)
    result["advice"] = certainty.advice(result, did or {})
    result["error_examples"] = certainty.error_examples([f"text {i}" for i in range(n)], gold, preds,
                                                        probs["student"], LABELS, 3)
    result["name"], result["headline"] = "synthetic", compare.headline(result)
    return result


def codes(result: dict) -> set[str]:
    return {f["code"] for f in result["flags"]}


def test_the_ag_news_case_a_student_tied_with_the_gold_seed_student_is_flagged_with_what_would_help():
    result = result_for(1000, {"student": 0.843, "gold_seed_student": 0.844, "teacher": 0.842},
                        did={"prepared_teacher": True, "seed": 500, "use_gold": True})
    assert "student_not_beyond_gold_seed" in codes(result)
    message = next(f["message"] for f in result["flags"] if f["code"] == "student_not_beyond_gold_seed")
    assert "stronger teacher" in message and "more gold labels" in message and "already prepared" in message
    assert any("already prepared" in a for a in result["advice"])
    assert not any("add a prepare_teacher" in a for a in result["advice"])  # the recipe did that already
    assert not any("use_gold" in a for a in result["advice"])


def test_a_clear_win_is_not_flagged_and_nine_test_texts_are_too_few():
    clear = result_for(1000, {"student": 0.92, "gold_seed_student": 0.80, "teacher": 0.78})
    assert not {"student_not_beyond_gold_seed", "test_too_small"} & codes(clear)
    assert clear["differences"]["gold_seed_student"]["separated"]
    lo, hi = clear["models"]["student"]["accuracy_interval"]
    assert lo < clear["models"]["student"]["accuracy"] < hi and hi - lo < 0.05
    tiny = result_for(9, {"student": 0.9, "gold_seed_student": 0.7, "teacher": 0.5}, seed=2)
    assert "test_too_small" in codes(tiny)
    lo, hi = tiny["models"]["student"]["accuracy_interval"]
    assert hi - lo > 0.25  # nine texts, all right: the interval still reaches down to 70 %


def test_an_under_confident_student_is_flagged_and_temperature_scaling_fixes_it():
    rng = np.random.default_rng(5)
    gold = rng.integers(0, 4, 400)
    timid = one_hot_right(gold, 0.9, rng, sharp=0.6)
    calib = certainty.calibration(timid[:200], gold[:200], timid[200:], gold[200:], 10)
    assert calib["temperature"] < 1 and calib["ece_after"] < calib["ece_before"] / 2
    flags = certainty.certainty_flags({"test_examples": 200, "calibration": calib}, {}, CertaintyConfig())
    assert [f["code"] for f in flags] == ["student_miscalibrated"] and "under-confident" in flags[0]["message"]


def test_error_examples_are_the_most_confident_mistakes_with_the_teachers_label():
    result = result_for(200, {"student": 0.7, "teacher": 0.6})
    errors = result["error_examples"]
    assert len(errors) == 3 and all(e["gold"] != e["student"] for e in errors)
    assert [e["student_confidence"] for e in errors] == sorted((e["student_confidence"] for e in errors), reverse=True)
    assert all(e["teacher"] in LABELS for e in errors)


def test_costs_come_from_the_ledger_and_the_report_and_card_show_them(tmp_path):
    from protege.core.ledger import CallRecord

    run = Run(tmp_path / "run")
    run.ledger.put_many([CallRecord(key=str(i), backend="openai", model="m", method="score", request={},
                                    response=[0.0], prompt_tokens=100, completion_tokens=2, latency_s=0.25,
                                    cost=0.001) for i in range(8)])
    run.ledger.mark_stage("annotate", "running")
    run.ledger.mark_stage("annotate", "done", {"seconds": 12.0, "teacher_requests": {"sent": 8, "from_ledger": 4}})
    costs = run_costs(run, running="evaluate", running_seconds=3.0)
    assert costs["teacher_calls"] == {"paid": 8, "from_ledger": 4}
    assert costs["teacher_tokens"] == {"prompt": 800, "completion": 16} and costs["money"] == 0.008
    assert costs["total_seconds"] == 15.0 and costs["teacher_seconds"] == 2.0
    result = result_for(300, {"student": 0.9, "gold_seed_student": 0.85, "teacher": 0.8})
    result["cost"] = {**costs, "training_seconds": 40.0, "teacher": {"name": "openai:m", "parameters": None},
                      "student": {"name": "minilm-l6", "parameters": 22_700_000}}
    result["data"] = {"pool": 5000, "seed": 50, "dev": 40, "test": 300}
    run.write_json("metrics.json", result)
    report = build(run)
    headings = [getattr(b, "heading", None) for b in report.blocks]
    assert "What it cost" in headings and "How sure: the student against each baseline" in headings
    (run.artifacts / "student").mkdir()
    model_card.write(run, result)
    card = (run.artifacts / "student" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers") and "openai:m" in card and "22.7 M" in card
    assert "pool: 5000 texts" in card and "95 % intervals" in card
