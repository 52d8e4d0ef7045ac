import numpy as np
import pytest
import torch

from protege.losses import classification_kd
from protege.core.run import Run
from protege.tasks.classify.student import (
    ClassifierObjective,
    ClassifierTrainConfig,
    Examples,
    ExampleSource,
    fit,
    load_student,
    predict_probs,
    save_student,
)
from protege.train.loop import EarlyStopping, LoopConfig

from tiny_encoder import build_tiny_encoder, separable_texts


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


def soft_targets(labels, sharp=0.85):
    return [[1 - sharp, sharp] if y else [sharp, 1 - sharp] for y in labels]


def config(encoder, **loop):
    settings = dict(epochs=8, lr=3e-3, micro_batch_size=16, schedule="constant", eval_every=10, tracker=None,
                    early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=4))
    settings.update(loop)
    return ClassifierTrainConfig(student=str(encoder), max_length=16, loop=LoopConfig(**settings))


def test_objective_sums_kd_and_ce_terms():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.0]], requires_grad=True)

    class Head(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": logits})

    batch = {"input_ids": torch.zeros(3, 2, dtype=torch.long), "attention_mask": torch.ones(3, 2),
             "soft": torch.tensor([[0.7, 0.3], [0.2, 0.8], [float("nan")] * 2]),
             "labels": torch.tensor([-100, -100, 1])}
    objective = ClassifierObjective(temperature=2.0)
    loss, metrics = objective(Head(), batch)
    soft = classification_kd(logits[:2], batch["soft"][:2], temperature=2.0) * 2
    ce = torch.nn.functional.cross_entropy(logits[2:], torch.tensor([1]), reduction="sum")
    assert objective.units(batch) == 3
    assert loss.item() == pytest.approx((soft + ce).item(), rel=1e-6)
    assert metrics["target_accuracy"] == 2.0  # rows 0 and 2 agree with their targets, row 1 does not


def test_examples_need_exactly_one_target():
    with pytest.raises(ValueError, match="exactly one"):
        Examples(["a"], np.array([[0.5, 0.5]]), np.array([1]))
    mixed = Examples.from_soft(["a"], [[0.2, 0.8]]) + Examples.from_labels(["b"], [0], 2)
    assert mixed.labels.tolist() == [-100, 0] and len(mixed) == 2


def test_fit_learns_a_separable_task_from_soft_labels(encoder, tmp_path):
    texts, labels = separable_texts(192, seed=1)
    dev_texts, dev_labels = separable_texts(64, seed=2)
    fitted = fit(config(encoder), Examples.from_soft(texts, soft_targets(labels)), dev_texts, dev_labels,
                 ["bad", "good"], run=Run(tmp_path / "run"), seed=0)
    test_texts, test_labels = separable_texts(64, seed=3)
    accuracy = (predict_probs(fitted.model, fitted.tokenizer, test_texts).argmax(1) == test_labels).mean()
    assert accuracy >= 0.9
    assert fitted.result.best == max(e["dev_accuracy"] for e in fitted.result.evaluations)

    save_student(fitted.model, fitted.tokenizer, tmp_path / "student", labels=["bad", "good"], info={"n": 192})
    model, tokenizer, card = load_student(tmp_path / "student")
    again = predict_probs(model, tokenizer, test_texts)
    np.testing.assert_allclose(again, predict_probs(fitted.model, fitted.tokenizer, test_texts), atol=1e-5)
    assert card["labels"] == ["bad", "good"]


def test_early_stopping_stops_when_dev_does_not_improve(encoder):
    texts, labels = separable_texts(64, seed=4)
    # Dev labels are coin flips unrelated to the texts: dev accuracy cannot keep improving.
    dev_texts, _ = separable_texts(32, seed=5)
    noise = np.random.default_rng(0).integers(0, 2, 32)
    cfg = config(encoder, epochs=50, eval_every=2,
                 early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=2))
    fitted = fit(cfg, Examples.from_labels(texts, labels, 2), dev_texts, noise, ["bad", "good"])
    assert fitted.result.stopped_early
    assert fitted.result.steps < 50 * 64 // 16


def test_source_pads_per_batch(encoder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(encoder)
    source = ExampleSource(Examples.from_labels(["good", "the movie was very good"], [1, 1], 2), tokenizer, 16)
    assert source.batch([0])["input_ids"].shape == (1, 3)
    assert source.batch([0, 1])["input_ids"].shape == (2, 7)


def test_gold_seed_baseline_gets_as_many_steps_as_the_student():
    from protege.tasks.classify.train import same_steps
    from protege.train.schedule import total_steps

    cfg = ClassifierTrainConfig(loop=LoopConfig(epochs=3, micro_batch_size=32))
    baseline = same_steps(cfg, examples=2000, seed_examples=100)
    assert total_steps(baseline.loop, 100, world=1) == total_steps(cfg.loop, 2000, world=1) == 188
    assert total_steps(cfg.loop, 100, world=1) == 10  # what the student's epochs would have given it
    fixed = ClassifierTrainConfig(loop=LoopConfig(steps=50))
    assert same_steps(fixed, 2000, 100).loop.steps == 50


def test_early_stopping_aims_at_gold_dev_labels_when_every_dev_text_has_one(tmp_path):
    """A near-chance teacher that says 'a' to every dev text would make agreement reward a constant student."""
    from protege.core.errors import UserError
    from protege.tasks.classify.inputs import dev_targets

    run = Run(tmp_path / "run")
    rows = [{"id": f"d{i}", "split": "dev", "text": f"text {i}", "gold_index": i % 2, "teacher_index": 0,
             "teacher_probs": [0.9, 0.1]} for i in range(4)]
    run.records.replace("annotated", rows, stage="annotate")
    texts, labels, whose = dev_targets(run, "auto")
    assert whose == "gold" and labels.tolist() == [0, 1, 0, 1] and texts[1] == "text 1"
    assert dev_targets(run, "teacher")[1].tolist() == [0, 0, 0, 0]
    rows[2]["gold_index"] = None  # one dev text without gold: auto falls back, gold is refused with the fix
    run.records.replace("annotated", rows, stage="annotate")
    assert dev_targets(run, "auto")[2] == "teacher"
    with pytest.raises(UserError, match="1 of 4 dev texts have no gold label.*dev_target: auto"):
        dev_targets(run, "gold")
