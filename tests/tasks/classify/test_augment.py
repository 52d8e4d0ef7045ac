"""The augmentation round loop and its planning, with a scripted teacher (ask) and scripted retraining."""

import numpy as np
import pytest
from pydantic import ValidationError

from protege.core.errors import UserError
from protege.tasks.classify.augment import Asked, Scores, augment_rounds, clean, resolve_strategy
from protege.tasks.classify.augment_config import AugmentConfig, RatioThresholds
from protege.tasks.classify.augment_plan import (Split, affordable, budget_ratio, choose_strategy, class_report,
                                                 plan_requests, student_errors, weak_class_shares)

LABELS = ["negative", "positive"]
DEV = Split(["d0", "d1", "d2", "d3"], ["a", "b", "c", "d"], np.array([0, 0, 1, 1]))
SEED = Split(["s0", "s1", "s2"], ["x", "y", "z"], np.array([1, 0, 1]))
# The student says "negative" everywhere: wrong on d2, d3 (dev) and s0, s2 (seed); surest on d3 and s2.
DEV_PROBS = np.array([[0.8, 0.2], [0.8, 0.2], [0.7, 0.3], [0.9, 0.1]])
SEED_PROBS = np.array([[0.6, 0.4], [0.8, 0.2], [0.95, 0.05]])


class Script:
    """``ask`` writes two rows per request (each labelled by one scored prompt when relabelled); ``retrain``
    returns the next scripted dev accuracy (the student still wrong on d2, d3, s0, s2)."""

    def __init__(self, accuracies, label_cost=1):
        self.queue, self.label_cost = list(accuracies), label_cost
        self.requests, self.trained_on, self.saved = [], [], []

    def ask(self, requests, round_no):
        self.requests.append(requests)
        rows = [{"id": f"r{round_no}-{i}-{k}", "round": round_no, "parent_id": r.parent.id if r.parent else None,
                 "text": f"new {i} {k}"} for i, r in enumerate(requests) for k in range(r.n if r.kind == "generate" else 1)]
        generated = sum(r.n for r in requests if r.kind == "generate")
        scored = sum(r.n if r.kind == "generate" and r.relabel else r.kind == "answer" for r in requests)
        return Asked(rows, generated, scored * self.label_cost)

    def retrain(self, rows):
        self.trained_on.append(len(rows))
        accuracy = self.queue.pop(0)
        right = int(round(accuracy * 4))  # the first `right` dev texts answered correctly
        dev = DEV_PROBS.copy()
        dev[:right] = [[0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.1, 0.9]][:right]
        return Scores(dev, SEED_PROBS, lambda: self.saved.append(accuracy))


def rounds(accuracies, strategy="new", **config):
    script = Script(accuracies)
    cfg = AugmentConfig(**{"max_rounds": 5, "max_errors": 10, **config})
    outcome = augment_rounds(config=cfg, strategy=strategy, labels=LABELS, dev=DEV, seed=SEED,
                             start=Scores(DEV_PROBS, SEED_PROBS), label_cost=1, ask=script.ask, retrain=script.retrain)
    return outcome, script


def test_rounds_stop_when_dev_stops_improving():
    outcome, script = rounds([0.75, 0.75, 1.0])
    assert [h.get("kept") for h in outcome["history"]] == [True, True, False, None]
    assert "did not improve for 1 round" in outcome["history"][-1]["stopped"]
    assert script.saved == [0.75]  # the second student is never saved
    assert outcome["best_dev_metric"] == 0.75 and script.trained_on == [2, 3]
    assert {r["parent_id"] for r in outcome["kept_rows"]} == {"d2", "d3"}  # dev errors, the surest (d3) first
    assert [r.parent.id for r in script.requests[0]] == ["d3", "d2"]


def test_patience_keeps_going_and_keeps_the_waiting_rows_when_a_later_round_improves():
    outcome, script = rounds([0.5, 0.75, 0.75, 0.5], early_stop={"patience": 2})
    assert [h.get("kept") for h in outcome["history"][1:]] == [False, True, False, False, None]
    assert script.saved == [0.75]
    # Round 2 trains on round 1's waiting rows plus its own, and keeps both when it improves.
    assert script.trained_on == [2, 4, 5, 6] and len(outcome["kept_rows"]) == 4
    assert "did not improve for 2 round(s)" in outcome["history"][-1]["stopped"]


def test_min_improvement_and_max_rounds():
    outcome, script = rounds([0.75], early_stop={"min_improvement": 0.3})
    assert script.saved == [] and outcome["best_dev_metric"] == 0.5
    outcome, script = rounds([0.75, 1.0, 1.0], max_rounds=2)
    assert len(script.trained_on) == 2 and script.saved == [0.75, 1.0]


def test_seed_mining_picks_the_seed_errors_most_confident_first():
    _, script = rounds([0.5], mine="seed")
    assert [r.parent.id for r in script.requests[0]] == ["s2", "s0"]
    assert [r.label for r in script.requests[0]] == [1, 1]  # the gold label the student missed
    assert "z" in script.requests[0][0].messages[0]["content"]


def test_budget_cuts_requests_at_their_worst_cost_and_counts_what_was_asked_exactly():
    # Each request: 2 completions x (2 units + 1 label) = 6 units; 15 units afford 2 requests, then 0.
    outcome, script = rounds([0.75, 1.0], per_error=2, budget={"units": 15, "generation_cost": 2.0})
    assert [len(r) for r in script.requests] == [2]
    spend = outcome["spend"]
    assert spend == {"generated": 4, "scored": 4, "units": 12.0}
    assert outcome["history"][-1]["stopped"] == "the budget is spent"


def test_answer_augmentation_answers_each_seed_text_once_errors_first():
    outcome, script = rounds([0.75, 1.0, 1.0], strategy="answer_aug", max_errors=2)
    assert [[r.parent.id for r in reqs] for reqs in script.requests] == [["s2", "s0"], ["s1"]]
    assert all(r.kind == "answer" for reqs in script.requests for r in reqs)
    assert outcome["history"][-1]["stopped"] == "every seed text has the teacher's answer"
    assert outcome["spend"] == {"generated": 0, "scored": 3, "units": 3.0}


def test_rephrase_keeps_the_label_and_asks_to_rewrite():
    _, script = rounds([0.5], strategy="rephrase")
    request = script.requests[0][0]
    assert not request.relabel and request.parent.id == "d3" and "Rewrite this text" in request.messages[0]["content"]


def test_report_prompt_shows_per_class_metrics_and_hard_negatives_and_asks_for_the_weak_class():
    labels = ["business", "sport", "tech"]
    dev = Split([f"d{i}" for i in range(6)], ["b1", "b2", "s1", "s2", "t1", "t2"], np.array([0, 0, 1, 1, 2, 2]))
    # Business and sport right; both tech texts called sport, t2 with 97 % confidence.
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1],
                      [0.1, 0.6, 0.3], [0.01, 0.97, 0.02]])
    rows = class_report(dev.labels, probs, 3)
    assert [round(r["f1"], 2) for r in rows] == [1.0, 0.67, 0.0]
    errors = student_errors(dev, probs)
    cfg = AugmentConfig(prompt={"kind": "report", "hard_negatives": 2}, max_errors=3)
    requests = plan_requests(cfg, "new", errors, rows, labels, [])
    # Two errors -> two requests, shared by 1 - F1: tech (1.0) and sport (0.33) -> 1.5 and 0.5, the remainder to
    # the weaker class: both ask for tech, and as both would show the same two texts, they are one request
    # sampled twice.
    assert [(r.label, r.n, r.shown) for r in requests] == [(2, 2, ("d5", "d4"))]
    text = next(r for r in requests if r.label == 2).messages[0]["content"]
    assert "business: precision 100%, recall 100%, F1 1.00 (2 texts)" in text
    assert "sport: precision 50%, recall 100%, F1 0.67 (2 texts)" in text
    assert "tech: precision 0%, recall 0%, F1 0.00 (2 texts)" in text
    assert "\"t2\" is 'tech'; it said 'sport' (97% sure)" in text and "\"t1\" is 'tech'" in text
    assert "clearly 'tech'" in text
    assert AugmentConfig(prompt="report").prompt.kind == "report"  # the kind alone


def test_weak_class_shares():
    rows = [{"label": 0, "f1": 1.0}, {"label": 1, "f1": 0.5}, {"label": 2, "f1": 0.0}]
    assert weak_class_shares(rows, 6, None) == {2: 4, 1: 2}
    assert weak_class_shares(rows, 6, 1) == {2: 6}
    assert sum(weak_class_shares(rows, 7, None).values()) == 7


def test_budget_ratio_refuses_below_one_and_auto_picks_by_thresholds():
    with pytest.raises(UserError, match=r"R = 40 units / 50 seed texts = 0.80 is below 1.*at least 50"):
        budget_ratio(40, 50)
    with pytest.raises(ValueError, match="needs a gold seed"):
        budget_ratio(40, 0)
    t = RatioThresholds(rephrase_from=3, new_from=10)
    assert [choose_strategy(r, t) for r in (1, 2.9, 3, 9.9, 10, 30)] == \
        ["answer_aug", "answer_aug", "rephrase", "rephrase", "new", "new"]
    plan = resolve_strategy(AugmentConfig(strategy="auto", budget={"units": 300}), seed_size=50)
    assert plan["strategy"] == "rephrase" and plan["ratio"] == 6.0 and "call units" in plan["unit"]
    with pytest.raises(ValidationError, match="strategy auto picks the strategy by R"):
        AugmentConfig(strategy="auto")
    with pytest.raises(ValidationError, match="new_from"):
        RatioThresholds(rephrase_from=10, new_from=3)


def test_affordable_and_cleaning():
    cfg = AugmentConfig(per_error=3)
    requests = plan_requests(cfg, "new", student_errors(DEV, DEV_PROBS), [], LABELS, [])
    assert len(affordable(requests, 7.9, 1.0, 2)) == 0 and len(affordable(requests, 18, 1.0, 2)) == 2
    assert clean(' "Text: a fine film" ') == "a fine film"
