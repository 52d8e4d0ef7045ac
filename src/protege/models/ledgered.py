"""A teacher wrapped by the ledger: every request is looked up first and every answer stored as it arrives.

Stages never hold a bare backend; they get a ``LedgeredTeacher`` from the run's teacher route
(:mod:`protege.models.route`), so caching, resumption, token accounting and cost come for free and the same way
for every backend. It passes nothing else through: a stage that needs the weights asks the route for them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from protege.core.ledger import CallRecord, Ledger, call_key
from protege.models.base import Generation, Prompt, SamplingParams, Teacher, TopK


@dataclass
class Prices:
    """Teacher price in currency units per million tokens; zero for local models."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


@dataclass
class SessionStats:
    """What this process asked: ``misses`` went to the backend, ``hits`` were answered by the ledger."""

    hits: int = 0
    misses: int = 0


class LedgeredTeacher:
    """Implements :class:`~protege.models.base.Teacher` on top of another teacher and a :class:`Ledger`."""

    def __init__(
        self,
        teacher: Teacher,
        ledger: Ledger,
        *,
        prices: Prices | None = None,
        batch_size: int = 16,
        on_progress: Callable[[int], None] | None = None,
    ):
        self.inner = teacher
        self.ledger = ledger
        self.prices = prices or Prices()
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.stats = SessionStats()

    @property
    def backend(self) -> str:
        return self.inner.backend

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        answers = self._cached(
            "generate",
            list(prompts),
            params.to_dict(),
            lambda items: self.inner.generate(items, params),
            encode=lambda gens: [asdict(g) for g in gens],
            tokens=lambda gens: (
                max((g.prompt_tokens for g in gens), default=0),
                sum(g.completion_tokens for g in gens),
            ),
        )
        return [[Generation(**g) for g in gens] for gens in answers]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        items = [[p, list(c)] for p, c in zip(prompts, continuations, strict=True)]
        return self._cached(
            "score",
            items,
            {},
            lambda batch: self.inner.score([b[0] for b in batch], [b[1] for b in batch]),
            encode=list,
            tokens=lambda _: (0, 0),
        )

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        items = [[p, c] for p, c in zip(prompts, completions, strict=True)]
        answers = self._cached(
            "topk_logprobs",
            items,
            {"k": k},
            lambda batch: self.inner.topk_logprobs([b[0] for b in batch], [b[1] for b in batch], k),
            encode=asdict,
            tokens=lambda t: (len(t.token_ids), 0),
        )
        return [TopK(**a) for a in answers]

    def _cached(
        self,
        method: str,
        items: list,
        params: dict,
        call: Callable[[list], list],
        *,
        encode: Callable[[Any], Any],
        tokens: Callable[[Any], tuple[int, int]],
    ) -> list:
        keys = [call_key(self.backend, self.model_id, method, item, params) for item in items]
        found = self.ledger.get_many(keys)
        self.stats.hits += sum(k in found for k in keys)
        if self.on_progress and found:
            self.on_progress(sum(k in found for k in keys))
        todo = [i for i, k in enumerate(keys) if k not in found]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            began = time.perf_counter()
            results = call([items[i] for i in idx])
            per_item = (time.perf_counter() - began) / max(len(idx), 1)
            rows = []
            for i, result in zip(idx, results, strict=True):
                encoded = encode(result)
                found[keys[i]] = encoded
                p_tok, c_tok = tokens(result)
                rows.append(
                    CallRecord(
                        key=keys[i], backend=self.backend, model=self.model_id, method=method,
                        request={"item": items[i], "params": params}, response=encoded,
                        prompt_tokens=p_tok, completion_tokens=c_tok, latency_s=per_item,
                        cost=self.prices.cost(p_tok, c_tok),
                    )
                )
            self.ledger.put_many(rows)
            self.stats.misses += len(idx)
            if self.on_progress:
                self.on_progress(len(idx))
        return [found[k] for k in keys]
