"""Planning DS²-ABSA's two synthesis streams: which prompts to send, written from which seeds (pure, seeded).

**Instance stream** (:func:`plan_instance`): for every seed sentence with at least one aspect, ``per_seed``
requests per method among ``paraphrase_one`` (rewrite one seed), ``aspect_mask`` (the seed with its aspect
terms masked, refilled with new terms of the same polarity), ``context_mask`` (a window of words touching no
aspect masked, refilled); and ``combinations`` requests of ``paraphrase_comb`` (two seeds joined into one).

**Key-point stream**: a :class:`Brainstorm` (subjects, aspect terms, opinion words per polarity: asked of the
teacher, or read from a YAML file of lists by :func:`read_brainstorm`), then :func:`plan_keypoint` samples the
attributes of each sentence — a subject, one to ``max_aspects`` aspect terms, a sentiment pattern
(``consistent``: one polarity for all, ``mixed``: at least two different polarities, ``implicit``: no opinion
word offered) and opinion words matching each polarity — and writes the generation prompt.

Every :class:`Request` carries the pairs it *intends* (``planned``): the label a stream asks for, used when
the teacher's answer has no readable label.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import yaml

from protege.models.base import Message
from protege.tasks.absa import prompts as p
from protege.tasks.absa.task import AbsaExample

INSTANCE_METHODS = ("paraphrase_one", "paraphrase_comb", "aspect_mask", "context_mask")


@dataclass(frozen=True)
class Request:
    stream: str  # "instance" | "keypoint"
    method: str  # an instance method, or the key-point pattern
    parents: tuple[str, ...]
    prompt: list[Message]
    planned: tuple[tuple[str, str], ...] = ()


def plan_instance(
    seeds: Sequence[AbsaExample],
    methods: Sequence[str],
    per_seed: int,
    combinations: int,
    context_width: int,
    rng: random.Random,
) -> list[Request]:
    usable = [s for s in seeds if s.aspects]
    out: list[Request] = []
    for seed in usable:
        pairs = tuple((a.term, a.polarity) for a in seed.aspects)
        for _ in range(per_seed):
            if "paraphrase_one" in methods:
                out.append(
                    Request(
                        "instance",
                        "paraphrase_one",
                        (seed.id,),
                        p.instance_prompt("paraphrase_one", [seed]),
                        pairs,
                    )
                )
            if "aspect_mask" in methods:
                out.append(
                    Request(
                        "instance",
                        "aspect_mask",
                        (seed.id,),
                        p.instance_prompt("aspect_mask", [seed], p.mask_aspects(seed)),
                    )
                )
            windows = p.context_windows(seed, context_width) if "context_mask" in methods else []
            if windows:
                masked = p.mask_span(seed.sentence, rng.choice(windows))
                out.append(
                    Request(
                        "instance",
                        "context_mask",
                        (seed.id,),
                        p.instance_prompt("context_mask", [seed], masked),
                        pairs,
                    )
                )
    if "paraphrase_comb" in methods and len(usable) >= 2:
        for _ in range(combinations):
            a, b = rng.sample(usable, 2)
            pairs = tuple((x.term, x.polarity) for x in (*a.aspects, *b.aspects))
            out.append(
                Request(
                    "instance",
                    "paraphrase_comb",
                    (a.id, b.id),
                    p.instance_prompt("paraphrase_comb", [a, b]),
                    pairs,
                )
            )
    return out


@dataclass
class Brainstorm:
    """The key-point stream's attribute lists."""

    subjects: list[str]
    aspects: list[str]
    opinions: dict[str, list[str]] = field(default_factory=dict)  # polarity -> opinion words

    def problems(self, polarities: Sequence[str]) -> list[str]:
        out = [f"{k} is empty" for k in ("subjects", "aspects") if not getattr(self, k)]
        return out + [f"opinions.{q} is empty" for q in polarities if not self.opinions.get(q)]


def read_brainstorm(path: str | Path, polarities: Sequence[str]) -> Brainstorm:
    """A YAML file ``{subjects: [...], aspects: [...], opinions: {positive: [...], ...}}``; errors name it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"synthesize.keypoint.brainstorm_file: no such file {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"synthesize.keypoint.brainstorm_file {path}: expected a mapping of lists")
    opinions = data.get("opinions") or {}
    brainstorm = Brainstorm(
        [str(x) for x in data.get("subjects") or []],
        [str(x) for x in data.get("aspects") or []],
        {str(k): [str(x) for x in v or []] for k, v in opinions.items()},
    )
    problems = brainstorm.problems(polarities)
    if problems:
        raise ValueError(f"synthesize.keypoint.brainstorm_file {path}: {'; '.join(problems)}")
    return brainstorm


def brainstorm_prompts(domain: str, polarities: Sequence[str], n: int) -> dict[str, list[Message]]:
    """One prompt per list: ``subjects``, ``aspects`` and ``opinions:<polarity>``."""
    out = {
        "subjects": p.brainstorm_prompt(domain, "kinds of products or places a review could be about", n),
        "aspects": p.brainstorm_prompt(
            domain,
            "aspect terms (parts, features or properties reviewers comment on, one to three words each)",
            n,
        ),
    }
    for q in polarities:
        out[f"opinions:{q}"] = p.brainstorm_prompt(
            domain, f"opinion words or short phrases expressing a {q} sentiment about an aspect", n
        )
    return out


def read_list(text: str) -> list[str]:
    """Items of a brainstormed list: one per line, bullets and numbering removed, duplicates dropped."""
    seen: dict[str, None] = {}
    for line in (text or "").splitlines():
        item = line.strip().lstrip("-*•").strip()
        item = item.split(". ", 1)[1] if item[:1].isdigit() and ". " in item[:4] else item
        item = item.strip().strip("\"'").strip()
        if item and len(item) <= 60 and item.lower() not in {k.lower() for k in seen}:
            seen[item] = None
    return list(seen)


def _polarities(pattern: str, k: int, polarities: Sequence[str], rng: random.Random) -> list[str]:
    if pattern == "consistent":
        return [rng.choice(polarities)] * k
    if pattern == "mixed":
        first = rng.sample(list(polarities), 2)
        return first + [rng.choice(polarities) for _ in range(k - 2)]
    return [rng.choice(polarities) for _ in range(k)]


def plan_keypoint(
    brainstorm: Brainstorm,
    domain: str,
    n: int,
    patterns: dict[str, float],
    max_aspects: int,
    polarities: Sequence[str],
    rng: random.Random,
) -> list[Request]:
    names, weights = list(patterns), list(patterns.values())
    out: list[Request] = []
    for _ in range(n):
        pattern = rng.choices(names, weights)[0]
        low = 2 if pattern == "mixed" else 1
        k = rng.randint(low, max(low, max_aspects))
        terms = rng.sample(brainstorm.aspects, min(k, len(brainstorm.aspects)))
        if pattern == "mixed" and len(terms) < 2:
            pattern = "consistent"
        pols = _polarities(pattern, len(terms), polarities, rng)
        opinions = [rng.choice(brainstorm.opinions[q]) for q in pols if brainstorm.opinions.get(q)]
        pairs = tuple(zip(terms, pols))
        subject = rng.choice(brainstorm.subjects)
        out.append(
            Request(
                "keypoint", pattern, (), p.keypoint_prompt(domain, subject, pairs, opinions, pattern), pairs
            )
        )
    return out


def brainstorm_from_answers(answers: dict[str, str], polarities: Sequence[str]) -> Optional[Brainstorm]:
    """The teacher's brainstorm, or None when a list is empty (the key-point stream is then skipped)."""
    b = Brainstorm(
        read_list(answers.get("subjects", "")),
        read_list(answers.get("aspects", "")),
        {q: read_list(answers.get(f"opinions:{q}", "")) for q in polarities},
    )
    return None if b.problems(polarities) else b
