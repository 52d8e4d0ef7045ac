"""The candidate-set student (CanDist) on the one training loop: global normalisation, targets refined each epoch
and kept on their sets, exact resume, and that it learns through a noisy teacher's sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from protege.core.run import Run
from protege.tasks.classify.candidates import CandidateObjective, coverage, name_sets, start_targets
from protege.tasks.classify.student import ClassifierTrainConfig, Examples, ExampleSource, fit, predict_probs
from protege.train.loop import EarlyStopping, LoopConfig, train

from tiny_encoder import build_tiny_encoder, separable_texts


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


def _model(encoder):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    # No dropout: micro-batches of different shapes would draw different masks and hide what is compared.
    return AutoModelForSequenceClassification.from_pretrained(encoder, hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0)


def _examples(n: int, seed: int) -> Examples:
    """Three classes over the separable texts; sets of one, two and three labels; the teacher often wrong inside."""
    texts, labels = separable_texts(n, seed)
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=n)
    sets = [[y] if i % 3 == 0 else sorted({y, (y + 1 + i % 2) % 3}) if i % 3 == 1 else [0, 1, 2]
            for i, y in enumerate(labels)]
    return Examples.from_candidates(texts, probs, sets)


def _objective(examples: Examples, model_tokenizer, momentum=0.5) -> CandidateObjective:
    tokenizer = model_tokenizer
    return CandidateObjective(start_targets(examples.soft, examples.labels, examples.sets),
                              torch.from_numpy(examples.sets), momentum,
                              lambda m: predict_probs(m, tokenizer, examples.texts, max_length=16))


def _tokenizer(encoder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(encoder)


def _loop(**kw) -> LoopConfig:
    base = dict(steps=8, micro_batch_size=8, lr=1e-2, schedule="constant", tracker=None, log_every=1,
                max_grad_norm=None)
    return LoopConfig(**{**base, **kw})


def _three_class(encoder):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=3, hidden_dropout_prob=0.0,
                                                               attention_probs_dropout_prob=0.0,
                                                               ignore_mismatched_sizes=True)
    return model


def test_step_loss_is_the_mean_over_the_whole_step_however_it_is_split(encoder):
    examples, tokenizer = _examples(16, seed=1), _tokenizer(encoder)
    runs = {}
    for split in ((8, 1), (2, 4)):
        objective = _objective(examples, tokenizer)
        source = ExampleSource(examples, tokenizer, 16)
        result = train(_three_class(encoder), objective, source,
                       _loop(steps=1, micro_batch_size=split[0], grad_accum=split[1]))
        runs[split] = result
    # The loss the loop logs is the sum over the step's 8 examples divided by 8 (the global count), not an
    # average of per-micro-batch means; computed here from the start targets and the untrained model.
    from protege.train.schedule import IndexStream

    chosen = IndexStream(len(examples), 0).step(0, 8)
    start = _objective(examples, tokenizer)
    batch = ExampleSource(examples, tokenizer, 16).batch(chosen)
    with torch.no_grad():
        total, _ = start(_three_class(encoder), batch)
    for result in runs.values():
        assert result.history[0]["loss"] == pytest.approx(total.item() / 8, rel=1e-5)
        assert result.history[0]["units_per_step"] == 8
    for a, b in zip(runs[(8, 1)].model.parameters(), runs[(2, 4)].model.parameters()):
        assert torch.allclose(a, b, atol=2e-5)


def test_targets_are_refined_at_each_epoch_end_and_stay_on_their_sets(encoder):
    examples, tokenizer = _examples(24, seed=2), _tokenizer(encoder)
    objective = _objective(examples, tokenizer, momentum=0.5)
    start = objective.targets.clone()
    # 24 examples, 8 per step: epochs end after steps 3, 6 and 9; 10 steps refine three times.
    train(_three_class(encoder), objective, ExampleSource(examples, tokenizer, 16), _loop(steps=10))
    assert objective.refined == 3
    mask = torch.from_numpy(examples.sets)
    assert float(objective.targets[~mask].abs().max()) == 0.0
    assert torch.allclose(objective.targets.sum(-1), torch.ones(24, dtype=torch.float64))
    several = mask.sum(-1) > 1
    assert float((objective.targets - start)[several].abs().max()) > 1e-3  # the student did move them
    assert torch.equal(objective.targets[~several], start[~several])  # one-label sets stay one-hot


class _Killed(Exception):
    pass


def test_resume_after_a_kill_equals_the_uninterrupted_run(encoder, tmp_path):
    examples, tokenizer = _examples(16, seed=3), _tokenizer(encoder)
    cfg = _loop(steps=7, save_every=1, eval_every=1)
    whole = _objective(examples, tokenizer)
    full = train(_three_class(encoder), whole, ExampleSource(examples, tokenizer, 16), cfg).model

    calls = []

    def dies_at_step_5(model):
        calls.append(1)
        if len(calls) == 5:
            raise _Killed
        return {}

    run = Run(tmp_path / "run")
    with pytest.raises(_Killed):  # epochs end after steps 2 and 4: two refinements are in the step-4 checkpoint
        train(_three_class(encoder), _objective(examples, tokenizer), ExampleSource(examples, tokenizer, 16), cfg,
              run=run, evaluate=dies_at_step_5)
    fresh = _objective(examples, tokenizer)  # a new process starts again from the teacher's targets
    second = train(_three_class(encoder), fresh, ExampleSource(examples, tokenizer, 16), cfg, run=run)
    assert second.steps == 7 and fresh.refined == whole.refined == 3
    assert torch.equal(fresh.targets, whole.targets)
    for a, b in zip(full.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_fit_learns_through_noisy_candidate_sets(encoder, tmp_path):
    texts, labels = separable_texts(192, seed=4)
    # An unsure teacher: on two texts in three it names both labels and prefers the wrong one (0.6); on the rest
    # it is sure and right. Soft labels copy that preference; candidate targets let the student overrule it.
    probs, sets = [], []
    for i, y in enumerate(labels):
        if i % 3:
            probs.append([0.6, 0.4] if y else [0.4, 0.6])
            sets.append([0, 1])
        else:
            probs.append([0.05, 0.95] if y else [0.95, 0.05])
            sets.append([y])
    examples = Examples.from_candidates(texts, probs, sets)
    assert coverage(sets, labels)["coverage"] == 1.0
    dev_texts, dev_labels = separable_texts(48, seed=5)
    cfg = ClassifierTrainConfig(
        student=str(encoder), max_length=16, targets="candidates", candidate_momentum=0.0,
        loop=LoopConfig(epochs=10, lr=3e-3, micro_batch_size=16, schedule="constant", tracker=None,
                        eval_every=12, early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=10)))
    fitted = fit(cfg, examples, dev_texts, dev_labels, ["bad", "good"], run=Run(tmp_path / "run"), seed=0)
    test_texts, test_labels = separable_texts(64, seed=6)
    accuracy = (predict_probs(fitted.model, fitted.tokenizer, test_texts).argmax(1) == test_labels).mean()
    assert accuracy >= 0.9


def test_candidate_column_names_become_indices_and_bad_names_are_refused():
    assert name_sets([["pos"], ["neg", "pos"]], ["neg", "pos"]) == [[1], [0, 1]]
    with pytest.raises(ValueError, match="task.labels"):
        name_sets([["positive"]], ["neg", "pos"])
    stats = coverage([[0], [0, 1], [1]], [1, 1, -1])
    assert stats == {"n": 2, "coverage": 0.5, "mean_size": 1.5, "singletons": 0.5}
