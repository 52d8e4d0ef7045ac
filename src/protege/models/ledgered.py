"""A teacher wrapped by the ledger: every request is looked up first and every answer stored as it arrives.

Stages never hold a bare backend; they get a ``LedgeredTeacher`` from the run's teacher route
(:mod:`protege.models.route`), so caching, resumption, token accounting and cost come for free and the same way
for every backend. It passes nothing else through: a stage that needs the weights asks the route for them.

Guarantees (see :mod:`protege.core.ledger` for what the file itself keeps):

* Requests are sent ``batch_size`` at a time (scoring and top-k requests shortest first). Each answer is
  committed to the ledger in its own transaction the moment the backend hands it over: a backend with
  ``streams_answers = True`` (the OpenAI-compatible one) hands each answer over as its request completes, through
  the ``on_answer`` callback of its methods; any other backend hands over a batch when it returns it. So when a
  request fails, or the process is killed, every answer already received is kept, and a re-run pays only for
  requests that were in flight.
* Every request's tokens are counted: generations report their own; a scoring request counts the prompt and
  candidate tokens as the backend reads them (its own tokenizer where it has one, else
  :func:`~protege.models.base.estimate_tokens`); top-k requests count their sequence. Cost is
  ``Prices.cost`` of those counts, so it is right wherever prices are set.
* Time measurements go through the ledger too (:meth:`LedgeredTeacher.measure`): the timed requests are sent
  for real and recorded as paid ``timing`` rows, and the measurement is kept, so measuring again with the same
  teacher and inputs is answered by the ledger and costs nothing.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

from protege.core.ledger import CallRecord, Ledger, call_key
from protege.models.base import (BackendError, Generation, Prompt, SamplingParams, Teacher, TopK, estimate_tokens,
                                 is_token_ids, prompt_text)

Keep = Callable[[int, Any], None]  # (position in the batch, the backend's answer)


@dataclass
class Prices:
    """Teacher price in currency units per million tokens; zero for local models."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


def _size(item: Any) -> int:
    """A request's (prompt, continuation(s)) length in characters or token ids: the order requests are sent in."""
    prompt, rest = item
    size = len(prompt) if is_token_ids(prompt) else len(prompt_text(prompt))
    return size + (len(rest) if isinstance(rest, str) or is_token_ids(rest) else 0)  # a score's labels: 0


@dataclass
class SessionStats:
    """What this process asked: ``misses`` were paid (sent to the backend; ``timing`` of them only to time it),
    ``hits`` were answered by the ledger."""

    hits: int = 0
    misses: int = 0
    timing: int = 0


@dataclass(frozen=True)
class _Method:
    """How one teacher method goes through the ledger: its parameters, how its answers are stored and counted."""

    name: str
    params: dict
    send: Callable[[list, Optional[Keep]], list]  # (items, on_answer or None) -> answers
    encode: Callable[[Any], Any]
    tokens: Callable[[Any, Any], tuple[int, int]]  # (item, answer) -> (prompt tokens, completion tokens)
    # Requests whose answers do not depend on what they are batched with are sent shortest first, so a batch
    # holds similar lengths and pads little (the sentiment sets in their own order pad batches of 8 by 5-25 %).
    # Generation keeps the caller's order: a seeded sample depends on its batch.
    length: Optional[Callable[[Any], int]] = None


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

    @property
    def context_length(self) -> Optional[int]:
        """Tokens the teacher can read at once, when the backend knows (None for a server that does not say)."""
        return getattr(self.inner, "context_length", None)

    # -- token counts --------------------------------------------------------------------------------------
    def prompt_tokens(self, prompt: Prompt) -> int:
        """Tokens of ``prompt`` as the teacher reads it: the backend's tokenizer where it has one, else estimated."""
        for name in ("encode_prompt", "count_prompt_tokens"):
            counter = getattr(self.inner, name, None)
            if counter is not None:
                value = counter(prompt)
                return len(value) if isinstance(value, list) else int(value)
        return estimate_tokens(prompt_text(prompt))

    def text_tokens(self, text: str) -> int:
        """Tokens of ``text`` read as a continuation (no special tokens)."""
        encode = getattr(self.inner, "encode_continuation", None)
        return len(encode(text)) if encode is not None else estimate_tokens(text)

    def _score_tokens(self, item: Any, _answer: Any) -> tuple[int, int]:
        prompt, candidates = item
        counter = getattr(self.inner, "score_tokens", None)
        if counter is not None:  # a backend that bills scoring its own way (one request per candidate)
            return counter(prompt, candidates)
        return self.prompt_tokens(prompt) + sum(self.text_tokens(c) for c in candidates), 0

    # -- the Teacher methods -------------------------------------------------------------------------------
    def _methods(self, teacher: Teacher) -> dict[str, Callable[..., _Method]]:
        streams = bool(getattr(teacher, "streams_answers", False))

        def ask(fn: Callable[..., list], *args: Any, on_answer: Optional[Keep]) -> list:
            return fn(*args, on_answer=on_answer) if streams and on_answer is not None else fn(*args)

        return {
            "generate": lambda params: _Method(
                "generate", params.to_dict(),
                lambda items, keep: ask(teacher.generate, items, params, on_answer=keep),
                lambda gens: [asdict(g) for g in gens],
                lambda _item, gens: (max((g.prompt_tokens for g in gens), default=0),
                                     sum(g.completion_tokens for g in gens))),
            "score": lambda: _Method(
                "score", {},
                lambda items, keep: ask(teacher.score, [i[0] for i in items], [i[1] for i in items], on_answer=keep),
                list, self._score_tokens, _size),
            "topk_logprobs": lambda k: _Method(
                "topk_logprobs", {"k": k},
                lambda items, keep: ask(teacher.topk_logprobs, [i[0] for i in items], [i[1] for i in items], k,
                                        on_answer=keep),
                asdict, lambda _item, t: (len(t.token_ids), 0), _size),
        }

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        answers = self._cached(self._methods(self.inner)["generate"](params), list(prompts))
        return [[Generation(**g) for g in gens] for gens in answers]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        items = [[p, list(c)] for p, c in zip(prompts, continuations, strict=True)]
        return self._cached(self._methods(self.inner)["score"](), items)

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        items = [[p, c] for p, c in zip(prompts, completions, strict=True)]
        return [TopK(**a) for a in self._cached(self._methods(self.inner)["topk_logprobs"](k), items)]

    def score_seconds(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> float:
        """Seconds the backend took for these ``score`` requests when they were sent (whichever run sent them):
        the teacher's latency stays known when a re-run is answered by the ledger."""
        method = self._methods(self.inner)["score"]()
        keys = [call_key(self.backend, self.model_id, method.name, [p, list(c)], method.params)
                for p, c in zip(prompts, continuations, strict=True)]
        return self.ledger.latency(keys)

    # -- the ledger ----------------------------------------------------------------------------------------
    def _commit(self, method: _Method, handed: list[tuple[int, Any]], items: list, keys: list[str],
                seconds: float, purpose: str, out: list) -> None:
        """Store the answers just handed over (position, answer) in one transaction; ``seconds`` is their share
        of the wall time."""
        rows = []
        for i, answer in handed:
            out[i] = method.encode(answer)
            p_tok, c_tok = method.tokens(items[i], answer)
            rows.append(CallRecord(
                key=keys[i], backend=self.backend, model=self.model_id, method=method.name,
                request={"item": items[i], "params": method.params}, response=out[i], prompt_tokens=p_tok,
                completion_tokens=c_tok, latency_s=seconds / len(handed), cost=self.prices.cost(p_tok, c_tok),
                purpose=purpose,
            ))
        self.ledger.put_many(rows)
        self.stats.misses += len(rows)
        self.stats.timing += len(rows) if purpose == "timing" else 0
        if self.on_progress:
            self.on_progress(len(rows))

    def _send(self, method: _Method, items: list, keys: list[str], purpose: str) -> list:
        """Send ``items`` in batches, committing answers as they are handed over; returns the encoded answers.

        A streaming backend hands over (and the ledger commits) one answer at a time; any other backend hands over
        a batch at once, committed in one transaction. The latencies of a batch add up to its wall time.
        """
        out: list = [None] * len(items)
        for start in range(0, len(items), self.batch_size):
            self._send_batch(method, list(range(start, min(start + self.batch_size, len(items)))), items, keys,
                             purpose, out)
        return out

    def _send_batch(self, method: _Method, positions: list[int], items: list, keys: list[str], purpose: str,
                    out: list) -> None:
        got: set[int] = set()
        last = time.perf_counter()

        def keep(j: int, answer: Any) -> None:
            nonlocal last
            now = time.perf_counter()
            self._commit(method, [(positions[j], answer)], items, keys, now - last, purpose, out)
            last = now
            got.add(j)

        answers = method.send([items[i] for i in positions], keep)
        if len(answers) != len(positions):
            raise BackendError(f"{self.backend}:{self.model_id} returned {len(answers)} answers to "
                               f"{len(positions)} {method.name} requests")
        rest = [(positions[j], a) for j, a in enumerate(answers) if j not in got]
        if rest:
            self._commit(method, rest, items, keys, time.perf_counter() - last, purpose, out)

    def _cached(self, method: _Method, items: list) -> list:
        keys = [call_key(self.backend, self.model_id, method.name, item, method.params) for item in items]
        found = self.ledger.get_many(keys)
        known = sum(k in found for k in keys)
        self.stats.hits += known
        if self.on_progress and known:
            self.on_progress(known)
        # The same request twice in one call is sent once (the ledger key is the request).
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in found:
                first.setdefault(key, i)
        todo = list(first.values())
        if method.length is not None:
            todo.sort(key=lambda i: method.length(items[i]))
        answers = self._send(method, [items[i] for i in todo], [keys[i] for i in todo], "answer")
        found.update({keys[i]: a for i, a in zip(todo, answers)})
        return [found[k] for k in keys]

    # -- measurements of the teacher itself ----------------------------------------------------------------
    def measure(self, name: str, item: Any, run: Callable[[Teacher], Any]) -> Any:
        """A measurement of the teacher itself (its speed): ``run(timed)`` gets a teacher whose every request is
        sent (never answered from the ledger, so times are real) and recorded as a paid ``timing`` row. The
        JSON result is kept under ``name`` and ``item``; a later call with both the same is answered by the
        ledger and sends nothing."""
        key = call_key(self.backend, self.model_id, f"measure:{name}", item, {})
        found = self.ledger.get_many([key])
        if key in found:
            self.stats.hits += 1
            return found[key]
        result = run(_Timed(self))
        self.ledger.put_many([CallRecord(key=key, backend=self.backend, model=self.model_id, method=f"measure:{name}",
                                         request=item, response=result, purpose="measurement")])
        return result


class _Timed:
    """The teacher as :meth:`LedgeredTeacher.measure` lends it: every request sent, each one recorded as spend."""

    def __init__(self, owner: LedgeredTeacher):
        self._owner = owner
        self._methods = owner._methods(owner.inner)
        self.backend, self.model_id = owner.backend, owner.model_id

    def _timed(self, method: _Method, items: list) -> list:
        # A fresh nonce per request: timing rows are never looked up, and repeats of one text must all be kept.
        keys = [call_key(self.backend, self.model_id, method.name, item, {**method.params, "timing": uuid.uuid4().hex})
                for item in items]
        return self._owner._send(method, items, keys, "timing")

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        answers = self._timed(self._methods["generate"](params), list(prompts))
        return [[Generation(**g) for g in gens] for gens in answers]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        return self._timed(self._methods["score"](), [[p, list(c)] for p, c in zip(prompts, continuations, strict=True)])

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        items = [[p, c] for p, c in zip(prompts, completions, strict=True)]
        return [TopK(**a) for a in self._timed(self._methods["topk_logprobs"](k), items)]
