"""Cross-check against TRL 1.16's generalized JSD (test-only dependency) and pin its conventions.

Conventions verified against the installed source (trl/experimental/gkd/gkd_trainer.py):
* ``generalized_jsd_loss`` mixes m = β·p_teacher + (1−β)·q_student in probability space and returns
  β·KL(p‖m) + (1−β)·KL(q‖m): the same β orientation as ours (β=0 → forward KL, β=1 → reverse KL);
* it special-cases β = 0 and β = 1 as the plain KLs (our endpoints are the same values);
* ``GKDTrainer.compute_loss`` does not pass ``temperature``: the loss is at temperature 1 whatever
  ``GKDConfig.temperature`` says (that field only affects sampling);
* positions with label −100 (prompt, padding) are dropped and the sum is divided by the unmasked count of
  the micro-batch, or by ``num_items_in_batch`` when the trainer passes it.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from protege.losses import token_divergence

trl_gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer", reason="trl is a test-only dependency")
GKDTrainer = trl_gkd.GKDTrainer


def batch(seed: int):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(3, 7, 17, generator=g, dtype=torch.float64) * 2
    t = torch.randn(3, 7, 17, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, 17, (3, 7), generator=g)
    labels[:, :2] = -100  # prompt
    labels[1, 5:] = -100  # padding
    return s, t, labels


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_generalized_jsd_matches_trl_in_value_and_gradient(beta: float, temperature: float) -> None:
    s, t, labels = batch(0)
    ours_leaf, trl_leaf = s.clone().requires_grad_(), s.clone().requires_grad_()
    ours = token_divergence(ours_leaf, t, labels != -100, kind="jsd", beta=beta, temperature=temperature)
    theirs = GKDTrainer.generalized_jsd_loss(trl_leaf, t, labels=labels, beta=beta, temperature=temperature)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)
    ours.backward()
    theirs.backward()
    torch.testing.assert_close(ours_leaf.grad, trl_leaf.grad, rtol=1e-9, atol=1e-14)
    # Global normalisation: TRL's num_items_in_batch is our num_tokens.
    torch.testing.assert_close(
        token_divergence(s, t, labels != -100, kind="jsd", beta=beta, temperature=temperature, num_tokens=40),
        GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta, temperature=temperature,
                                        num_items_in_batch=40), rtol=1e-10, atol=1e-14)


def test_trl_trainer_loss_ignores_the_configured_temperature_and_shifts_labels() -> None:
    s, t, labels = batch(1)
    def teacher(**_):
        return SimpleNamespace(logits=t)

    teacher.eval = lambda: None  # type: ignore[attr-defined]
    stub = SimpleNamespace(teacher_model=teacher, beta=0.3, temperature=5.0,
                           generalized_jsd_loss=GKDTrainer.generalized_jsd_loss)

    def student(**_):
        return SimpleNamespace(logits=s)

    inputs = {"input_ids": labels.clamp_min(0), "attention_mask": torch.ones_like(labels), "labels": labels}
    theirs = GKDTrainer.compute_loss(stub, student, inputs)
    mask = labels[:, 1:] != -100
    at_t1 = token_divergence(s[:, :-1], t[:, :-1], mask, kind="jsd", beta=0.3)
    at_t5 = token_divergence(s[:, :-1], t[:, :-1], mask, kind="jsd", beta=0.3, temperature=5.0)
    torch.testing.assert_close(theirs, at_t1, rtol=1e-10, atol=1e-14)
    assert not torch.allclose(theirs, at_t5)
