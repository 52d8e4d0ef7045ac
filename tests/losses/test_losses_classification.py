"""Soft-label classification KD: tempered KL scaled by T², mixed with hard-label cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch

from protege.losses import classification_kd


def data(seed: int, n: int = 6, classes: int = 4):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(n, classes, generator=g, dtype=torch.float64)
    teacher_probs = torch.softmax(torch.randn(n, classes, generator=g, dtype=torch.float64) * 2, -1)
    labels = torch.randint(0, classes, (n,), generator=g)
    return student, teacher_probs, labels


def test_hand_computed_two_class_case() -> None:
    # Teacher (0.8, 0.2), student (0.5, 0.5), T = 1: KL = 0.8 ln 1.6 + 0.2 ln 0.4.
    student = torch.zeros(1, 2, dtype=torch.float64)
    teacher = torch.tensor([[0.8, 0.2]], dtype=torch.float64)
    expected = 0.8 * math.log(1.6) + 0.2 * math.log(0.4)
    assert classification_kd(student, teacher).item() == pytest.approx(expected, rel=1e-12)
    # At T = 2 the teacher becomes softmax(log p / 2) = (2/3, 1/3); the KL is multiplied by 4.
    soft = 4 * ((2 / 3) * math.log(4 / 3) + (1 / 3) * math.log(2 / 3))
    assert classification_kd(student, teacher, temperature=2.0).item() == pytest.approx(soft, rel=1e-12)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_gradient_is_t_times_q_minus_p(temperature: float) -> None:
    student, teacher, _ = data(0)
    leaf = student.clone().requires_grad_()
    (grad,) = torch.autograd.grad(classification_kd(leaf, teacher, temperature=temperature), leaf)
    p_t = torch.softmax(teacher.log() / temperature, -1)
    q_t = torch.softmax(student / temperature, -1)
    torch.testing.assert_close(grad, temperature * (q_t - p_t) / len(student), rtol=1e-10, atol=1e-14)


def test_hard_weight_mixes_linearly_with_cross_entropy_and_ignores_unlabelled() -> None:
    student, teacher, labels = data(1)
    labels[2] = -100
    soft = classification_kd(student, teacher, temperature=3.0)
    ce = torch.nn.functional.cross_entropy(student, labels, ignore_index=-100)
    hard_only = classification_kd(student, teacher, labels, temperature=3.0, hard_weight=1.0)
    assert hard_only.item() == pytest.approx(ce.item(), rel=1e-12)
    mixed = classification_kd(student, teacher, labels, temperature=3.0, hard_weight=0.3)
    assert mixed.item() == pytest.approx((0.7 * soft + 0.3 * ce).item(), rel=1e-12)


def test_one_hot_teacher_at_t1_equals_cross_entropy() -> None:
    student, _, labels = data(2)
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert classification_kd(student, one_hot).item() == pytest.approx(ce.item(), rel=1e-12)


def test_arguments_explain_mistakes() -> None:
    student, teacher, labels = data(3)
    with pytest.raises(ValueError, match="probabilities|summing to 1"):
        classification_kd(student, teacher.log())
    with pytest.raises(ValueError, match="labels"):
        classification_kd(student, teacher, hard_weight=0.5)
    with pytest.raises(ValueError, match="temperature"):
        classification_kd(student, teacher, temperature=0)
    with pytest.raises(ValueError, match="\\(N, C\\)"):
        classification_kd(student[:, :3], teacher)
