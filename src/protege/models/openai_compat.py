"""The ``openai`` teacher backend: any OpenAI-compatible HTTP server (vLLM, SGLang, llama.cpp server, Ollama,
hosted APIs), spoken to with plain httpx.

Raw-text prompts go to ``/completions``, chat prompts to ``/chat/completions``. Requests run concurrently up to
a bound and are retried with exponential backoff and jitter on rate limits, server errors, timeouts and broken
connections; other 4xx answers, and requests the client itself refuses to send (an illegal header value), fail
at once with the server's own message. Each retry is logged and recorded as a ``warning`` event with code
``teacher_retry``.

The API key is read from an environment variable (:func:`read_api_key`: surrounding whitespace, such as the
newline a key file or secret mount ends with, is stripped with a warning) and lives only in the HTTP client's
headers; it is registered with :mod:`protege.core.secrets`, so no error, log record, event or file shows it in
any form.

Answers stream: each method's ``on_answer(i, answer)`` callback hands prompt ``i``'s answer over as soon as it
is complete (through :func:`protege.models.remote.map_concurrently`), so the ledger commits it before the next
arrives; a failure or Ctrl-C stops as that function says.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence, TypeVar

import httpx
import torch

from protege.core import console, secrets
from protege.models.base import (BackendError, Generation, Prompt, SamplingParams, TopK, estimate_tokens,
                                 is_token_ids, prompt_text)
from protege.models.hf import render_prompt, tail_logprob
from protege.models.remote import map_concurrently, read_api_key, server_message

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
# Raised before anything is sent: the request itself is wrong, and sending it again changes nothing.
_HOPELESS = (httpx.LocalProtocolError, httpx.UnsupportedProtocol)
_MESSAGE_LIMIT = 500  # characters of a server's error body quoted in our errors


class OpenAICompatTeacher:
    """A model served over the OpenAI HTTP API, behind the :class:`~protege.models.base.Teacher` interface."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 4,
        max_retries: int = 5,
        timeout_s: float = 120.0,
        tokenizer: Any = None,
        extra_body: dict[str, Any] | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self._model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.tokenizer = tokenizer  # local tokenizer: renders chats for echo scoring, maps pieces to ids
        self.extra_body = dict(extra_body or {})
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self._piece_ids: dict[str, int] | None = None
        key = read_api_key(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatTeacher(base_url={self.base_url!r}, model={self._model!r}, "
            f"api_key_env={self.api_key_env!r}, max_concurrency={self.max_concurrency})"
        )

    streams_answers = True  # each method takes on_answer(i, answer); see the module docstring
    context_length: Optional[int] = None  # the server does not say; prompts are sent as they are

    @property
    def backend(self) -> str:
        return "openai"

    @property
    def model_id(self) -> str:
        return self._model

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------------------------------ HTTP

    @staticmethod
    def _scrub(text: str) -> str:
        # A server may quote the key back in an error message, in any of the forms secrets.scrub knows.
        return secrets.scrub(text)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(float(retry_after), self.backoff_max_s)
            except ValueError:
                pass  # an HTTP date: fall back to our own schedule
        # Full jitter: spreads out clients that failed together so they do not retry in lockstep.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_base_s * 2**attempt))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON with retries; returns the decoded answer or raises :class:`BackendError`."""
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            try:
                response = self._client.post(path, json={**body, **self.extra_body})
            except _HOPELESS as exc:
                raise BackendError(f"{url}: the request cannot be sent ({type(exc).__name__}: "
                                   f"{self._scrub(str(exc))}); retrying would not help. Check base_url and the "
                                   f"API key in {self.api_key_env}.", code="teacher_request_invalid") from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last = f"{type(exc).__name__}: {self._scrub(str(exc)) or 'no detail'}"
            else:
                if response.status_code < 400:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise BackendError(f"{url} answered {response.status_code} with non-JSON: "
                                           f"{self._scrub(response.text[:_MESSAGE_LIMIT])!r}") from exc
                message = self._scrub(server_message(response, _MESSAGE_LIMIT))
                if response.status_code not in RETRYABLE_STATUS:
                    hint, code = "", "teacher_refused"
                    if response.status_code in (401, 403):
                        hint = f" (is the API key in the environment variable {self.api_key_env}?)"
                        code = "teacher_auth"
                    elif response.status_code == 404:
                        hint = f" (is base_url {self.base_url!r} right, with its /v1, and is {self._model!r} served?)"
                    raise BackendError(f"{url} answered {response.status_code}{hint}: {message}", code=code)
                last = f"HTTP {response.status_code}: {message}"
                retry_after = response.headers.get("retry-after")
            if attempt < self.max_retries:
                delay = self._backoff(attempt, retry_after)
                log.warning("%s failed (%s); retry %d/%d in %.1fs", url, last, attempt + 1, self.max_retries,
                            delay)
                console.event("warning", code="teacher_retry", message=f"{url} failed ({last})",
                              attempt=attempt + 1, max_retries=self.max_retries, delay_s=round(delay, 2))
                time.sleep(delay)
        raise BackendError(f"{url} failed after {self.max_retries + 1} attempts; last error: {last}")

    def _map(self, func: Callable[[T], R], items: Sequence[T],
             on_done: Optional[Callable[[int, R], None]] = None) -> list[R]:
        return map_concurrently(func, items, self.max_concurrency, on_done)

    # ------------------------------------------------------------------------------------------ generate

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 on_answer: Optional[Callable[[int, list[Generation]], None]] = None) -> list[list[Generation]]:
        """``params.n`` answers per prompt, prompts in parallel.

        Servers that ignore ``n`` (llama.cpp's) are asked again for the missing samples; with a seed, each
        follow-up request uses ``seed + samples so far`` so the samples differ yet reproduce.
        """
        return self._map(lambda prompt: self._generate_one(prompt, params), list(prompts), on_answer)

    def _generate_one(self, prompt: Prompt, params: SamplingParams) -> list[Generation]:
        chat = not isinstance(prompt, str)
        if params.temperature == 0 and params.n > 1:
            # Greedy decoding has one answer: pay for it once, not n times.
            return self._generate_one(prompt, replace(params, n=1)) * params.n
        gens: list[Generation] = []
        while len(gens) < params.n:
            body = self._sampling_body(prompt, params, params.n - len(gens), chat)
            if params.seed is not None:
                body["seed"] = params.seed + len(gens)
            answer = self.post("/chat/completions" if chat else "/completions", body)
            choices = answer.get("choices") or []
            if not choices:
                raise BackendError(f"{self.base_url} returned no choices for {self._model!r}: {answer!r:.300}")
            usage = answer.get("usage") or {}
            gens.extend(_parse_choice(c, chat, usage, len(choices)) for c in choices)
        return gens[: params.n]

    def _sampling_body(self, prompt: Prompt, params: SamplingParams, n: int, chat: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "n": n,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if chat:
            body["messages"] = list(prompt)
            if params.top_logprobs:
                body.update(logprobs=True, top_logprobs=params.top_logprobs)
        else:
            body["prompt"] = prompt
            if params.top_logprobs:
                body["logprobs"] = params.top_logprobs
        return body

    # ------------------------------------------------------------------------------------------ echo logprobs

    def _prompt_text(self, prompt: Prompt) -> str:
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer is None:
            raise BackendError(
                "scoring a chat prompt through an OpenAI-compatible server needs the chat rendered as text for "
                "/completions: set the teacher's `tokenizer` (e.g. the served model's hub id or a local path)"
            )
        return render_prompt(self.tokenizer, prompt, self._model)

    def _echo(self, text: str, k: int) -> dict[str, Any]:
        """Prompt logprobs of ``text``: tokens, token_logprobs, top_logprobs and text_offset, checked."""
        answer = self.post(
            "/completions",
            {"model": self._model, "prompt": text, "max_tokens": 1, "temperature": 0.0, "echo": True,
             "logprobs": k},
        )
        logprobs = (answer.get("choices") or [{}])[0].get("logprobs") or {}
        self._check_echo(text, logprobs)
        return logprobs

    def _check_echo(self, text: str, logprobs: dict[str, Any]) -> None:
        unsupported = (
            f"{self.base_url} (model {self._model!r}) does not return usable prompt log-probabilities "
            "(/completions with echo=True and logprobs); score and topk_logprobs are unsupported with this "
            "server. Use the hf or llamacpp backend for them, or a server that supports echo (vLLM with "
            "prefix caching off). Problem: "
        )
        tokens = logprobs.get("tokens") or []
        token_lps = logprobs.get("token_logprobs") or []
        tops = logprobs.get("top_logprobs") or []
        offsets = logprobs.get("text_offset") or []
        if not tokens or not (len(tokens) == len(token_lps) == len(tops) == len(offsets)):
            raise BackendError(unsupported + "no per-token prompt logprobs in the answer")
        # Standard layout: the text's tokens, then one row for the generated (greedy) token, which must be the
        # top choice of its row. Either the pieces spell the text or the last offset sits at its end.
        spelled = "".join(tokens[:-1]) == text or offsets[-1] == len(text)
        last_top = tops[-1] or {}
        greedy = bool(last_top) and token_lps[-1] is not None and token_lps[-1] >= max(last_top.values()) - 1e-3
        if not (spelled and greedy):
            raise BackendError(unsupported + "the rows are not in the standard layout (token i given tokens < i)")

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]],
              on_answer: Optional[Callable[[int, list[float]], None]] = None) -> list[list[float]]:
        """Summed log-probability of each candidate, one echo request per (prompt, candidate), in parallel.

        The server tokenises prompt and candidate together; tokens overlapping the candidate's text count. A
        prompt's answer is handed to ``on_answer`` when all its candidates are scored.
        """
        if len(prompts) != len(continuations):
            raise ValueError(f"score: {len(prompts)} prompts but {len(continuations)} candidate lists")
        slots = [(i, j) for i, cands in enumerate(continuations) for j in range(len(cands))]
        pairs = [(self._prompt_text(prompts[i]), continuations[i][j]) for i, j in slots]
        out: list[list[float]] = [[0.0] * len(cands) for cands in continuations]
        left = [len(cands) for cands in continuations]

        def done(k: int, value: float) -> None:
            i, j = slots[k]
            out[i][j] = value
            left[i] -= 1
            if left[i] == 0 and on_answer is not None:
                on_answer(i, out[i])

        if on_answer is not None:
            for i in (i for i, n in enumerate(left) if n == 0):
                on_answer(i, [])
        self._map(lambda pair: self._score_pair(*pair), pairs, done)
        return out

    def _billed_text(self, prompt: Prompt) -> str:
        # A chat cannot be rendered without the tokenizer (nor scored); its words then stand in for the count.
        return prompt_text(prompt) if self.tokenizer is None else self._prompt_text(prompt)

    def _count(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return estimate_tokens(text)

    def count_prompt_tokens(self, prompt: Prompt) -> int:
        """Tokens of ``prompt``: the configured tokenizer's count, else :func:`estimate_tokens`."""
        return self._count(self._billed_text(prompt))

    def score_tokens(self, prompt: Prompt, candidates: Sequence[str]) -> tuple[int, int]:
        """What scoring ``candidates`` after ``prompt`` is billed: one echo request per non-empty candidate,
        each reading prompt + candidate and generating one token."""
        text = self._billed_text(prompt)
        sent = [c for c in candidates if c]
        return sum(self._count(text + c) for c in sent), len(sent)

    def _score_pair(self, prompt_text: str, continuation: str) -> float:
        if not continuation:
            return 0.0
        if not prompt_text:
            raise ValueError("score: an empty prompt gives the first token no context to be scored against")
        full = prompt_text + continuation
        lp = self._echo(full, 1)
        total = 0.0
        for token, offset, value in zip(lp["tokens"][:-1], lp["text_offset"][:-1], lp["token_logprobs"][:-1]):
            if offset + len(token) > len(prompt_text) and offset < len(full):
                if value is None:
                    raise BackendError(f"{self.base_url}: no logprob for the first token; the prompt is empty?")
                total += value
        return total

    def _piece_to_id(self, piece: str) -> int | None:
        if piece.startswith("token_id:"):  # vLLM with return_tokens_as_token_ids
            return int(piece.split(":", 1)[1])
        if self.tokenizer is None:
            raise BackendError(
                f"{self.base_url} reports tokens as text; topk_logprobs needs token ids: set the teacher's "
                "`tokenizer` to the served model's tokenizer, or for vLLM add extra_body "
                "{return_tokens_as_token_ids: true}"
            )
        if self._piece_ids is None:
            table: dict[str, int] = {}
            for token_id in range(len(self.tokenizer)):
                table.setdefault(self.tokenizer.decode([token_id]), token_id)
            self._piece_ids = table
        return self._piece_ids.get(piece)

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int,
                      on_answer: Optional[Callable[[int, TopK], None]] = None) -> list[TopK]:
        """Top-k rows from echo logprobs. Alternatives whose text maps to no token id are left out of a row
        (their mass is then part of the tail). Token-id prompts and completions go through
        :mod:`protege.models.echo_ids`."""
        if len(prompts) != len(completions):
            raise ValueError(f"topk_logprobs: {len(prompts)} prompts but {len(completions)} completions")
        if completions and is_token_ids(completions[0]):
            from protege.models.echo_ids import topk_of_ids

            return self._map(lambda ids: topk_of_ids(self, ids, k), [list(p) + list(c) for p, c in
                                                                      zip(prompts, completions)], on_answer)
        texts = [self._prompt_text(p) + c for p, c in zip(prompts, completions)]
        return self._map(lambda text: self._topk_one(text, k), texts, on_answer)

    def _topk_one(self, text: str, k: int) -> TopK:
        lp = self._echo(text, k)
        n = len(lp["tokens"]) - 1  # the last row is the generated token, not part of the text
        ids, logprobs = [], []
        for row in lp["top_logprobs"][1:n]:
            pairs = sorted(((v, self._piece_to_id(p)) for p, v in (row or {}).items()), reverse=True)[:k]
            kept = [(v, i) for v, i in pairs if i is not None]
            ids.append([i for _, i in kept])
            logprobs.append([v for v, _ in kept])
        tails = [float(tail_logprob(torch.tensor(row, dtype=torch.float64))) if row else 0.0 for row in logprobs]
        token_ids = [self._piece_to_id(t) for t in lp["tokens"][:n]]
        return TopK(
            token_ids=[-1 if t is None else t for t in token_ids],
            ids=ids,
            logprobs=logprobs,
            token_logprobs=[float(v) for v in lp["token_logprobs"][1:n]],
            tail_logprob=tails,
        )


def _parse_choice(choice: dict[str, Any], chat: bool, usage: dict[str, Any], n_choices: int) -> Generation:
    text = ((choice.get("message") or {}).get("content") if chat else choice.get("text")) or ""
    finish = "length" if choice.get("finish_reason") == "length" else "stop"
    tokens: list[str] | None = None
    token_lps: list[float] | None = None
    tops: list[dict[str, float]] | None = None
    logprobs = choice.get("logprobs")
    if logprobs:
        if chat:
            content = logprobs.get("content") or []
            tokens = [e["token"] for e in content]
            token_lps = [float(e["logprob"]) for e in content]
            tops = [{t["token"]: float(t["logprob"]) for t in e.get("top_logprobs") or []} for e in content]
        else:
            tokens = list(logprobs.get("tokens") or [])
            token_lps = [float(v) for v in logprobs.get("token_logprobs") or []]
            tops = [{p: float(v) for p, v in (row or {}).items()} for row in logprobs.get("top_logprobs") or []]
    # usage counts all choices of the answer together; per-choice counts are exact only with logprobs.
    completion = len(tokens) if tokens is not None else round((usage.get("completion_tokens") or 0) / n_choices)
    return Generation(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=completion,
        finish_reason=finish,
        tokens=tokens,
        token_logprobs=token_lps,
        top_logprobs=tops,
    )
