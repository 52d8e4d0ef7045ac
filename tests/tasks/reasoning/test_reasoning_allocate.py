"""Allocation at exactly equal budget: Σ = B·N with residue, boundary-only extras for HS-STaR, fallbacks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from protege.tasks.reasoning.allocate import ALLOCATORS, AllocationConfig, allocate
from protege.tasks.reasoning.difficulty import DAST_LEVELS, HS_LABELS, ProblemStats


def stats(labels, levels=None, k=3):
    levels = levels or ["medium"] * len(labels)
    return [ProblemStats(f"p{i}", k, 0, 0.0, 0.0, 1.0, None, 10.0, hs, lv)
            for i, (hs, lv) in enumerate(zip(labels, levels))]


def test_uniform_gives_everyone_b():
    a = allocate(stats(["easy", "boundary", "too_hard"]), AllocationConfig(kind="uniform", budget=8))
    assert a.counts == [8, 8, 8] and a.extra == [5, 5, 5] and not a.fallback
    assert a.spent["hs_star"] == {"easy": 8, "boundary": 8, "too_hard": 8}


def test_hs_star_spends_the_rest_on_boundary_problems_with_a_seeded_residue():
    labels = ["easy", "boundary", "too_hard", "boundary", "boundary", "easy", "boundary"]
    cfg = AllocationConfig(kind="hs_star", budget=8, presamples=3, seed=1)
    a = allocate(stats(labels), cfg)
    # R = 5 · 7 = 35 over 4 boundary problems: 8 each, residue 3
    assert sum(a.counts) == 8 * 7
    assert [c for c, l in zip(a.counts, labels) if l != "boundary"] == [3, 3, 3]
    boundary = sorted(c for c, l in zip(a.counts, labels) if l == "boundary")
    assert boundary == [11, 12, 12, 12]
    assert a.spent["hs_star"] == {"easy": 6, "boundary": 47, "too_hard": 3}
    assert allocate(stats(labels), cfg).counts == a.counts  # seeded
    placements = {tuple(allocate(stats(labels), cfg.model_copy(update={"seed": s})).counts) for s in range(20)}
    assert len(placements) > 1  # the residue really is drawn


def test_hs_star_falls_back_to_uniform_without_boundary_problems():
    a = allocate(stats(["easy", "too_hard", "easy"], k=2), AllocationConfig(kind="hs_star", budget=5, presamples=2))
    assert a.counts == [5, 5, 5] and a.fallback


def test_dast_weights_levels_and_marks_better_responses():
    levels = ["easy", "medium", "hard", "unsolved"]
    cfg = AllocationConfig(kind="dast", budget=6, presamples=2, better="hint",
                           dast_weights={"easy": 0, "medium": 1, "hard": 2, "unsolved": 1})
    a = allocate(stats(["boundary"] * 4, levels, k=2), cfg)
    # R = 16 in proportion 0 : 1 : 2 : 1 -> 0, 4, 8, 4
    assert a.counts == [2, 6, 10, 6] and a.better == [None, None, "hint", "hint"]
    assert a.better_samples == {"hint": 12}
    assert a.spent["dast"] == {"easy": 2, "medium": 6, "hard": 10, "unsolved": 6}


def test_dast_teacher_samples_are_the_teacher_calls_and_zero_weights_fall_back():
    cfg = AllocationConfig(kind="dast", budget=4, presamples=1, better="teacher", better_levels=["unsolved"],
                           dast_weights={"easy": 0, "medium": 0, "hard": 0, "unsolved": 1})
    a = allocate(stats(["too_hard"] * 3, ["unsolved", "easy", "unsolved"], k=1), cfg)
    assert a.counts == [5, 1, 6] or a.counts == [6, 1, 5]  # 9 extra over 2 problems: the residue is drawn
    assert a.better_samples == {"teacher": 9}
    b = allocate(stats(["easy"] * 2, ["easy", "medium"], k=1), cfg)
    assert b.counts == [4, 4] and b.fallback


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(ALLOCATORS)), n=st.integers(1, 40), presamples=st.integers(0, 5),
       spare=st.integers(0, 9), seed=st.integers(0, 10**6), data=st.data())
def test_every_allocator_spends_exactly_b_times_n(kind, n, presamples, spare, seed, data):
    labels = data.draw(st.lists(st.sampled_from(HS_LABELS), min_size=n, max_size=n))
    levels = data.draw(st.lists(st.sampled_from(DAST_LEVELS), min_size=n, max_size=n))
    weights = data.draw(st.fixed_dictionaries({lv: st.floats(0, 5) for lv in DAST_LEVELS}))
    budget = max(1, presamples + spare)
    cfg = AllocationConfig(kind=kind, budget=budget, presamples=presamples, seed=seed, dast_weights=weights)
    a = allocate(stats(labels, levels, k=presamples), cfg)
    assert sum(a.counts) == budget * n
    assert all(c >= presamples for c in a.counts)  # pre-samples are never taken back
    assert sum(a.spent["hs_star"].values()) == sum(a.spent["dast"].values()) == budget * n
    if kind == "hs_star" and "boundary" in labels:
        assert all(c == presamples for c, l in zip(a.counts, labels) if l != "boundary")
        extras = [c - presamples for c, l in zip(a.counts, labels) if l == "boundary"]
        assert max(extras) - min(extras) <= 1  # evenly, up to the residue


def test_a_budget_smaller_than_the_presample_is_an_error_naming_both():
    with pytest.raises(ValidationError, match=r"budget=2 is smaller than presamples=3.*raise budget to at least 3"):
        AllocationConfig(budget=2, presamples=3)


def test_other_bad_configs():
    with pytest.raises(ValidationError, match="better='teacher' applies to kind: dast only"):
        AllocationConfig(kind="hs_star", better="teacher")
    with pytest.raises(ValidationError, match="kind"):
        AllocationConfig(kind="greedy")
    with pytest.raises(ValidationError, match="weights must be >= 0"):
        AllocationConfig(kind="dast", dast_weights={"easy": -1})
    with pytest.raises(ValueError, match="presamples=3 but problem p0 has 2 samples"):
        allocate(stats(["easy"], k=2), AllocationConfig(presamples=3))
    with pytest.raises(ValueError, match="no problems"):
        allocate([], AllocationConfig())
