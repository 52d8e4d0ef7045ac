"""Where an extra sampling budget goes, at exactly equal budget: B samples per problem on average, B·N in all.

Every problem was pre-sampled ``presamples`` (n_p) times to estimate its difficulty; those samples are reused
and count toward the budget, so every arm shares one pre-sample and their comparison is paired. The remaining
R = (B − n_p)·N samples are placed by an allocator:

* ``uniform``: B per problem.
* ``hs_star`` (HS-STaR): all of R to the *boundary* problems, evenly; the residue R mod M (M boundary
  problems) one each to boundary problems drawn with a seeded RNG. Easy and too-hard problems keep their
  pre-samples only. With no boundary problem it falls back to uniform.
* ``dast`` (DAST): R in proportion to a weight per DAST level (largest remainders, ties drawn with the seeded
  RNG); problems of ``better_levels`` are marked to receive their extra samples as *better responses* of the
  configured kind: ``teacher`` (the teacher answers), ``hint`` (the gold answer given as a hint and the
  response re-derived, STaR's rationalisation) or ``few_shot`` (longer demonstrations in the prompt). The
  allocation only records the kind; producing the responses is the caller's. With all weights of the present
  levels zero it falls back to uniform.

Each allocation reports the samples it spends per HS-STaR label and per DAST level, whatever its own labeling,
and the extra samples of each better-response kind (``teacher`` = teacher calls).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Literal, Optional, Sequence

from pydantic import Field, model_validator

from protege.core.section import Section
from protege.tasks.reasoning.difficulty import DAST_LEVELS, HS_LABELS, DastLevel, ProblemStats

Better = Literal["teacher", "hint", "few_shot"]


class AllocationConfig(Section):
    """How B samples per problem (on average) are spread over the problems."""

    kind: Literal["uniform", "hs_star", "dast"] = Field("hs_star", description="Allocator: uniform, hs_star "
                                                         "(boundary problems only) or dast (weights per level).")
    budget: int = Field(8, ge=1, description="B: samples per problem on average, pre-samples included; the "
                        "allocation spends exactly B·N.")
    presamples: int = Field(3, ge=0, description="n_p: samples per problem already drawn to estimate difficulty; "
                            "reused, and counted toward the budget.")
    seed: int = Field(0, description="Seed of the draw that places the residue.")
    dast_weights: dict[DastLevel, float] = Field(
        {"easy": 0.5, "medium": 1.0, "hard": 2.0, "unsolved": 2.0},
        description="dast: relative share of the extra samples per problem of each level.")
    better: Optional[Better] = Field(None, description="dast: the hard levels' extra samples are better "
                                     "responses of this kind (teacher, hint, few_shot); null: own samples.")
    better_levels: list[DastLevel] = Field(["hard", "unsolved"], description="dast: levels given better "
                                           "responses when better is set.")

    @model_validator(mode="after")
    def _consistent(self) -> "AllocationConfig":
        if self.budget < self.presamples:
            raise ValueError(f"budget={self.budget} is smaller than presamples={self.presamples}: the pre-samples "
                             f"count toward the budget; raise budget to at least {self.presamples} or lower "
                             f"presamples")
        if any(w < 0 for w in self.dast_weights.values()):
            raise ValueError(f"dast_weights={self.dast_weights}: weights must be >= 0")
        if self.better is not None and self.kind != "dast":
            raise ValueError(f"better={self.better!r} applies to kind: dast only; remove it or set kind: dast")
        return self


@dataclass(frozen=True)
class Allocation:
    kind: str
    counts: list[int]  # samples per problem, pre-samples included; sums to budget · N
    better: list[Optional[str]]  # per problem: kind of better response its extra samples are, None = its own
    presamples: int
    fallback: bool  # the allocator had nothing to prefer and spent the budget uniformly
    spent: dict[str, dict[str, int]]  # {"hs_star": {label: samples}, "dast": {level: samples}}
    better_samples: dict[str, int]  # extra samples per better-response kind; "teacher" = teacher calls

    @property
    def extra(self) -> list[int]:
        """Samples still to draw per problem."""
        return [c - self.presamples for c in self.counts]


Plan = tuple[list[int], list[Optional[str]], bool]  # counts, better kinds, fell back


def uniform(stats: Sequence[ProblemStats], config: AllocationConfig, rng: random.Random) -> Plan:
    return [config.budget] * len(stats), [None] * len(stats), False


def hs_star(stats: Sequence[ProblemStats], config: AllocationConfig, rng: random.Random) -> Plan:
    boundary = [i for i, s in enumerate(stats) if s.hs_label == "boundary"]
    if not boundary:
        return uniform(stats, config, rng)[:2] + (True,)
    rest = (config.budget - config.presamples) * len(stats)
    share, residue = divmod(rest, len(boundary))
    counts = [config.presamples] * len(stats)
    for i in boundary:
        counts[i] += share
    for i in rng.sample(boundary, residue):
        counts[i] += 1
    return counts, [None] * len(stats), False


def dast(stats: Sequence[ProblemStats], config: AllocationConfig, rng: random.Random) -> Plan:
    weights = [Fraction(config.dast_weights.get(s.dast_level, 0.0)) for s in stats]
    total = sum(weights)
    if total == 0:
        return uniform(stats, config, rng)[:2] + (True,)
    rest = (config.budget - config.presamples) * len(stats)
    shares = [rest * w / total for w in weights]
    counts = [config.presamples + int(s) for s in shares]  # floors: shares are >= 0
    residue = config.budget * len(stats) - sum(counts)
    tiebreak = [rng.random() for _ in stats]
    order = sorted(range(len(stats)), key=lambda i: (-(shares[i] - int(shares[i])), tiebreak[i]))
    for i in order[:residue]:
        counts[i] += 1
    better = [config.better if config.better and s.dast_level in config.better_levels else None for s in stats]
    return counts, better, False


ALLOCATORS: dict[str, Callable[[Sequence[ProblemStats], AllocationConfig, random.Random], Plan]] = {
    "uniform": uniform, "hs_star": hs_star, "dast": dast}


def allocate(stats: Sequence[ProblemStats], config: AllocationConfig) -> Allocation:
    """Samples per problem (pre-samples included) for the problems' statistics, by ``config.kind``."""
    if not stats:
        raise ValueError("no problems to allocate a budget to: estimate difficulty on at least one problem first")
    off = [s for s in stats if s.k != config.presamples]
    if off:
        raise ValueError(f"presamples={config.presamples} but problem {off[0].problem_id} has {off[0].k} samples "
                         f"({len(off)} problems differ): set presamples to the k the difficulty was estimated with")
    counts, better, fallback = ALLOCATORS[config.kind](stats, config, random.Random(config.seed))
    assert sum(counts) == config.budget * len(stats), "an allocator broke the equal-budget contract"
    spent = {"hs_star": dict.fromkeys(HS_LABELS, 0), "dast": dict.fromkeys(DAST_LEVELS, 0)}
    better_samples: dict[str, int] = {}
    for s, n, kind in zip(stats, counts, better):
        spent["hs_star"][s.hs_label] += n
        spent["dast"][s.dast_level] += n
        if kind is not None:
            better_samples[kind] = better_samples.get(kind, 0) + n - config.presamples
    return Allocation(config.kind, counts, better, config.presamples, fallback, spent, better_samples)
