"""LM objectives on tiny llamas: SFT is HF's completion cross-entropy, KD is zero at the teacher and goes down."""

from __future__ import annotations

import pytest
import torch

from protege.losses import token_divergence
from protege.train.lm_objectives import SFT, CachedKD, DistillConfig, LogitKD
from protege.train.loop import LoopConfig, train
from protege.losses import topk_from_logits

from tiny_lm import random_examples, tiny_llama


def _hf_completion_ce_sum(model, batch) -> torch.Tensor:
    labels = batch["input_ids"].masked_fill(~batch["loss_mask"].roll(1, dims=1), -100)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    return out.loss * batch["loss_mask"].sum()


def _kl_sum(student, teacher, batch) -> float:
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(token_divergence(s, t, batch["loss_mask"], kind="forward_kl", num_tokens=1))


@pytest.mark.parametrize("tie", [True, False])
def test_sft_is_hf_cross_entropy_on_completion_tokens(tie):
    model = tiny_llama(tie=tie)
    batch = random_examples(4).batch([0, 1, 2, 3])
    loss, metrics = SFT(chunk_size=7)(model, batch)
    assert float(loss) == pytest.approx(float(_hf_completion_ce_sum(model, batch)), rel=1e-5)
    assert metrics["ce"] == pytest.approx(float(loss))
    assert SFT().units(batch) == int(batch["loss_mask"].sum()) > 0


def test_sft_gradient_matches_hf():
    a, b = tiny_llama(), tiny_llama()
    batch = random_examples(4).batch([0, 1, 2, 3])
    SFT(chunk_size=5)(a, batch)[0].backward()
    _hf_completion_ce_sum(b, batch).backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd", "tvd"])
def test_logit_kd_is_zero_when_the_student_is_the_teacher(kind):
    model = tiny_llama()
    batch = random_examples(4).batch([0, 1, 2, 3])
    loss, metrics = LogitKD(tiny_llama(), DistillConfig(kind=kind))(model, batch)
    assert abs(float(loss)) < 1e-5
    other, _ = LogitKD(tiny_llama(seed=1), DistillConfig(kind=kind))(model, batch)
    assert float(other) > 1e-3


def test_logit_kd_equals_the_divergence_of_full_logits():
    student, teacher = tiny_llama(), tiny_llama(seed=1, layers=3)
    batch = random_examples(4).batch([0, 1, 2, 3])
    loss, _ = LogitKD(teacher, DistillConfig(chunk_size=5))(student, batch)
    assert float(loss) == pytest.approx(_kl_sum(student, teacher, batch), rel=1e-5)


def test_logit_kd_training_lowers_held_out_kl():
    teacher = tiny_llama(seed=1, layers=3)
    train_data, held_out = random_examples(32, seed=0), random_examples(8, seed=1).batch(list(range(8)))
    start = tiny_llama()
    before = _kl_sum(start, teacher, held_out)
    cfg = LoopConfig(steps=15, micro_batch_size=8, lr=3e-3, tracker=None, schedule="constant")
    trained = train(tiny_llama(), LogitKD(teacher, DistillConfig()), train_data, cfg).model
    assert _kl_sum(trained, teacher, held_out) < 0.8 * before


def test_ce_weight_mixes_in_cross_entropy():
    model, teacher = tiny_llama(), tiny_llama(seed=1)
    batch = random_examples(4).batch([0, 1, 2, 3])
    kd, m1 = LogitKD(teacher, DistillConfig())(model, batch)
    mixed, m2 = LogitKD(teacher, DistillConfig(kd_weight=0.5, ce_weight=2.0))(model, batch)
    ce, _ = SFT()(model, batch)
    assert float(mixed) == pytest.approx(0.5 * float(kd) + 2.0 * float(ce), rel=1e-5)
    assert set(m2) == {"kd", "ce"}


def test_cached_kd_reads_teacher_topk_from_the_batch():
    model, teacher = tiny_llama(), tiny_llama(seed=1)
    batch = random_examples(4).batch([0, 1, 2, 3])
    with torch.no_grad():
        logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    top = topk_from_logits(logits, 96)  # all but one token: nearly the full distribution
    batch.update(teacher_topk_ids=top.ids, teacher_topk_logprobs=top.logprobs, teacher_tail_logprob=top.tail_logprob)
    cached, _ = CachedKD(DistillConfig())(model, batch)
    online, _ = LogitKD(teacher, DistillConfig())(model, batch)
    assert float(cached) == pytest.approx(float(online), rel=1e-4)
