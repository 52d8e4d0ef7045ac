"""Completion log-probabilities through the chunked, checkpointed head equal the full-logits computation."""

from __future__ import annotations

import pytest
import torch

from protege.train.lm_objectives import completion_logprobs, sequence_logprobs

from tiny_lm import random_examples, tiny_llama


def _full(model, batch):
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    logp = logits.log_softmax(-1).gather(-1, batch["input_ids"].roll(-1, 1).unsqueeze(-1)).squeeze(-1)
    return (logp * batch["loss_mask"]).sum(1)


@pytest.mark.parametrize("tie", [True, False])
def test_sequence_logprobs_and_gradients_match_full_logits(tie):
    a, b = tiny_llama(tie=tie), tiny_llama(tie=tie)
    batch = random_examples(5).batch([0, 1, 2, 3, 4])
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.5])
    got = sequence_logprobs(a, batch, chunk_size=3)
    want = _full(b, batch)
    assert torch.allclose(got.double(), want, rtol=1e-5, atol=1e-5)
    (got * weights).sum().backward()
    (want * weights.double()).sum().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-5, rtol=1e-4), name
    assert completion_logprobs(a, batch).shape == (int(batch["loss_mask"].sum()),)
