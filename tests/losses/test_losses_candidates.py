"""Candidate-label distillation targets and loss (CanDist): the target stays on its set, a one-label set is
cross-entropy."""

from __future__ import annotations

import pytest
import torch

from protege.losses.candidates import candidate_loss, refine, restrict


def _mask(rows: list[list[int]], classes: int) -> torch.Tensor:
    mask = torch.zeros(len(rows), classes, dtype=torch.bool)
    for i, members in enumerate(rows):
        mask[i, members] = True
    return mask


def test_restrict_renormalises_on_the_set():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]], dtype=torch.float64)
    out = restrict(probs, _mask([[0, 1], [0, 1]], 3))
    assert torch.allclose(out, torch.tensor([[0.625, 0.375, 0.0], [0.5, 0.5, 0.0]], dtype=torch.float64))


def test_restrict_is_uniform_when_the_set_has_no_mass():
    out = restrict(torch.tensor([[0.0, 0.0, 1.0]]), _mask([[0, 1]], 3))
    assert out.tolist() == [[0.5, 0.5, 0.0]]


def test_target_never_leaves_the_set_however_the_student_moves():
    gen = torch.Generator().manual_seed(0)
    classes, rows = 5, 64
    sets = [torch.randperm(classes, generator=gen)[: 1 + i % classes].tolist() for i in range(rows)]
    mask = _mask(sets, classes)
    targets = restrict(torch.rand(rows, classes, generator=gen, dtype=torch.float64), mask)
    for momentum in (0.0, 0.3, 0.9):
        t = targets
        for _ in range(5):  # students that put most of their mass outside the sets
            student = torch.softmax(5 * torch.randn(rows, classes, generator=gen, dtype=torch.float64), -1)
            t = refine(t, student, mask, momentum)
            assert float(t[~mask].abs().max()) == 0.0
            assert torch.allclose(t.sum(-1), torch.ones(rows, dtype=torch.float64))
            assert float(t.min()) >= 0.0


def test_refine_moves_by_the_momentum():
    mask = _mask([[0, 1]], 3)
    teacher = torch.tensor([[0.8, 0.2, 0.0]], dtype=torch.float64)
    student = torch.tensor([[0.1, 0.3, 0.6]], dtype=torch.float64)  # on the set: 0.25 / 0.75
    assert torch.allclose(refine(teacher, student, mask, 0.5), torch.tensor([[0.525, 0.475, 0.0]], dtype=torch.float64))
    assert torch.equal(refine(teacher, student, mask, 1.0), teacher)
    with pytest.raises(ValueError, match="momentum"):
        refine(teacher, student, mask, 1.5)


def test_a_one_label_set_is_cross_entropy():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.0]], requires_grad=True)
    labels = torch.tensor([2, 0, 1])
    mask = torch.nn.functional.one_hot(labels, 3).bool()
    # Whatever the teacher said and however the student moves, a one-label set's target stays one-hot.
    target = refine(restrict(torch.rand(3, 3, dtype=torch.float64), mask), torch.rand(3, 3, dtype=torch.float64),
                    mask, 0.3)
    ours = candidate_loss(logits, target)
    reference = torch.nn.functional.cross_entropy(logits, labels, reduction="sum")
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(reference, logits)
    assert torch.allclose(g1, g2, atol=1e-6)


def test_loss_ignores_labels_outside_the_set_even_at_minus_infinity():
    logits = torch.tensor([[0.0, 0.0, -float("inf")]])
    loss = candidate_loss(logits, torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_bad_shapes_and_empty_sets_are_refused():
    with pytest.raises(ValueError, match="empty candidate set"):
        restrict(torch.ones(2, 3) / 3, _mask([[0], []], 3))
    with pytest.raises(ValueError, match="differ"):
        candidate_loss(torch.zeros(2, 3), torch.zeros(2, 2))
