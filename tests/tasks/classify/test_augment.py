"""The augmentation round loop with scripted writing, labelling and retraining."""

import numpy as np

from protege.tasks.classify.augment import AugmentConfig, augment_rounds, clean, student_errors


def scripted(accuracies):
    """write_and_label makes two rows per error; retrain returns the next scripted dev agreement."""
    calls = {"saved": [], "trained_on": []}
    queue = list(accuracies)

    def write_and_label(errors, round_no):
        return [{"id": f"r{round_no}-{e.id}-{k}", "parent_id": e.id, "round": round_no, "text": e.text + " again"}
                for e in errors for k in range(2)]

    def retrain(rows):
        calls["trained_on"].append(len(rows))
        accuracy = queue.pop(0)
        probs = np.tile([0.9, 0.1], (4, 1))  # still wrong on dev texts 2 and 3
        return accuracy, probs, lambda: calls["saved"].append(accuracy)

    return write_and_label, retrain, calls


def run_rounds(accuracies, max_rounds=5, min_improvement=0.0):
    write, retrain, calls = scripted(accuracies)
    outcome = augment_rounds(
        config=AugmentConfig(max_rounds=max_rounds, max_errors=10, min_improvement=min_improvement),
        dev_ids=["d0", "d1", "d2", "d3"], dev_texts=["a", "b", "c", "d"], dev_labels=np.array([0, 0, 1, 1]),
        start_accuracy=0.5, start_probs=np.tile([0.8, 0.2], (4, 1)), write_and_label=write, retrain=retrain)
    return outcome, calls


def test_rounds_stop_when_dev_stops_improving():
    outcome, calls = run_rounds([0.6, 0.75, 0.7, 0.9])
    assert [h.get("kept") for h in outcome["history"]] == [True, True, True, False]
    assert calls["saved"] == [0.6, 0.75]  # the worse third student is never saved
    assert outcome["best_dev_agreement"] == 0.75
    # Round 2 retrains on round 1's kept rows plus its own: the kept set grows.
    assert calls["trained_on"] == [4, 8, 12]
    assert {r["parent_id"] for r in outcome["kept_rows"]} == {"d2", "d3"}


def test_min_improvement_and_max_rounds():
    outcome, calls = run_rounds([0.52], min_improvement=0.05)
    assert calls["saved"] == [] and outcome["best_dev_agreement"] == 0.5
    outcome, calls = run_rounds([0.6, 0.7, 0.8], max_rounds=2)
    assert len(calls["trained_on"]) == 2


def test_errors_are_most_confidently_wrong_first():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05]])
    errors = student_errors(["a", "b", "c", "d"], ["i0", "i1", "i2", "i3"], np.array([1, 1, 1, 0]), probs, limit=5)
    assert [e.id for e in errors] == ["i0", "i1"] and errors[0].label == 1
    assert clean(' "Text: a fine film" ') == "a fine film"
