"""Teacher preparation: LoRA on the gold seed set, on a tiny random llama with whole-word tokens."""

from __future__ import annotations

import pytest
import torch
from fakes import tiny_llama, word_tokenizer

from protege.core.ledger import Ledger
from protege.models.config import TeacherConfig
from protege.models.hf import HFTeacher
from protege.models.route import TeacherRoute
from protege.tasks.classify.prepare import (
    ADAPTER, PrepareTeacherConfig, prepared_model_id, prepared_teacher, train_adapter, verbalizer_heads,
)
from protege.tasks.classify.task import ClassificationTask, render

TASK = ClassificationTask(labels=["negative", "positive"], templates=["Text: {text}"])
TEXTS = ["the film was good", "the film was bad", "a great film", "a awful film", "good good", "bad bad"] * 3
GOLD = [1, 0, 1, 0, 1, 0] * 3


@pytest.fixture
def teacher():
    tok = word_tokenizer()
    return HFTeacher(tiny_llama(len(tok)), tok, model_id="tiny", batch_size=4)


def test_training_lowers_the_loss_saves_the_adapter_and_restores_the_base(tmp_path, teacher):
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    cfg = PrepareTeacherConfig(loop={"epochs": 8, "micro_batch_size": 6, "lr": 5e-3}, lora={"dropout": 0.0})
    summary = train_adapter(teacher, TASK, TEXTS, GOLD, cfg, tmp_path / ADAPTER, seed=0)
    losses = [h["loss"] for h in summary["history"]]
    assert losses[-1] < 0.7 * losses[0]
    assert summary["history"][-1]["train_accuracy"] == 1.0
    assert (tmp_path / ADAPTER / "adapter_model.safetensors").exists()
    after = teacher.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)


def test_annotation_uses_the_prepared_weights_under_a_new_model_id(tmp_path, teacher):
    from protege.core.run import Run

    run = Run(tmp_path / "run")
    cfg = PrepareTeacherConfig(loop={"epochs": 8, "micro_batch_size": 6, "lr": 5e-3}, lora={"dropout": 0.0})
    train_adapter(teacher, TASK, TEXTS, GOLD, cfg, run.artifact(ADAPTER), seed=0)
    prompts, words = [render(TASK, "the film was good")], [["positive", "negative"]]
    base_scores = teacher.score(prompts, words)[0]
    route = TeacherRoute(TeacherConfig(), Ledger(tmp_path / "ledger.sqlite"), make=teacher)
    assert route.ledgered().model_id == "tiny"
    route.adapt(lambda base: prepared_teacher(base, run))  # what the runner does once prepare_teacher is done
    prepared = route.ledgered()
    assert prepared.model_id == prepared_model_id("tiny", run.artifacts / ADAPTER) != "tiny"
    assert prepared.model_id.startswith("tiny+lora-")
    new_scores = prepared.score(prompts, words)[0]
    assert new_scores[0] - new_scores[1] > base_scores[0] - base_scores[1] + 0.5  # leans to the gold label now


def test_last_layers_limits_the_adapters(tmp_path, teacher):
    cfg = PrepareTeacherConfig(loop={"epochs": 1, "micro_batch_size": 6}, lora={"last_layers": 1})
    train_adapter(teacher, TASK, TEXTS, GOLD, cfg, tmp_path / ADAPTER, seed=0)
    from safetensors import safe_open

    with safe_open(str(tmp_path / ADAPTER / "adapter_model.safetensors"), "pt") as fh:
        layers = {name.split("layers.")[1].split(".")[0] for name in fh.keys()}
    assert layers == {"1"}  # the tiny llama has layers 0 and 1


def test_labels_sharing_a_first_token_are_refused(teacher):
    task = ClassificationTask(labels=["a", "b"], verbalizers={"a": ["good film"], "b": ["good"]})
    with pytest.raises(ValueError, match="same token"):
        verbalizer_heads(task, teacher)
