"""Prompt log-probabilities of given token ids from an OpenAI-compatible server: the served sampled-token KD path.

A student's sampled sequence must be scored token for token: its text, re-tokenized by the server, can come back
as other tokens (a BPE sampler may emit "1" + "2" where the text tokenizes as "12"). So the ids themselves are
sent (``/completions`` with ``prompt`` a list of ids, ``echo`` and ``logprobs``), which vLLM and SGLang accept.
Whether a server accepts ids is probed once, with a one-token request and no retries.

A server that takes only text (llama-cpp-python's) gets the ids decoded with the teacher's ``tokenizer``, and
its echo is read in one of two layouts, after checking that the echoed pieces spell exactly the given tokens:

* **standard** (row i: token i given tokens < i; the first row has no value): every token has its row;
* **llama-cpp-python's, BOS first**: when the sequence starts with the BOS token (a ChatML prompt starts with
  ``<|im_start|>``), the server drops every BOS-id token from the rows and the rest are aligned; positions of
  BOS tokens get no value (NaN). Without a BOS first its rows are shifted by one position (the value of row i
  is token i under the distribution *after* token i), which no check can tell from the standard layout on
  values alone, so that case is refused, as the text path of :meth:`OpenAICompatTeacher.score` refuses it.

Either way a piece that does not match its token, or a row count that does not add up, leaves ``token_ids`` of
the answer at -1 from there on: the caller sees the sequence was not scored as given.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from protege.models.base import BackendError, TopK
from protege.models.hf import tail_logprob

NAN = math.nan


def accepts_ids(teacher: Any) -> bool:
    """Whether the server takes token-id prompts, probed once per teacher with one token and no retries."""
    known: Optional[bool] = getattr(teacher, "_accepts_ids", None)
    if known is None:
        body = {"model": teacher.model_id, "prompt": [0], "max_tokens": 1, "temperature": 0.0, "echo": True,
                "logprobs": 1, **teacher.extra_body}
        try:
            known = teacher._client.post("/completions", json=body).status_code < 400
        except Exception:  # noqa: BLE001 - an unreachable server fails the real request with its own message
            known = False
        teacher._accepts_ids = known
    return known


def _echo(teacher: Any, prompt: Any, k: int) -> dict[str, Any]:
    answer = teacher.post("/completions", {"model": teacher.model_id, "prompt": prompt, "max_tokens": 1,
                                           "temperature": 0.0, "echo": True, "logprobs": k})
    logprobs = (answer.get("choices") or [{}])[0].get("logprobs") or {}
    if not logprobs.get("tokens") or len(logprobs["tokens"]) != len(logprobs.get("token_logprobs") or []):
        raise BackendError(f"{teacher.base_url} (model {teacher.model_id!r}) returned no per-token prompt "
                           "log-probabilities (/completions with echo and logprobs); use a server that does "
                           "(vLLM, SGLang), or the hf or llamacpp backend")
    return logprobs


def _row(teacher: Any, top: Optional[dict[str, float]], k: int) -> tuple[list[int], list[float]]:
    pairs = sorted(((v, teacher._piece_to_id(p)) for p, v in (top or {}).items()), reverse=True)[:k]
    kept = [(v, i) for v, i in pairs if i is not None]
    return [i for _, i in kept], [v for v, _ in kept]


def _answer(teacher: Any, ids: list[int], rows: list[Optional[int]], lp: dict[str, Any], k: int) -> TopK:
    """TopK of ``ids`` from echo rows; ``rows[j]`` is the row of token j (None: no value; -1: not matched)."""
    values, top_ids, top_lps = [], [], []
    for j in range(1, len(ids)):
        r = rows[j]
        value = lp["token_logprobs"][r] if r is not None and r >= 0 else None
        values.append(NAN if value is None else float(value))
        found = _row(teacher, lp["top_logprobs"][r], k) if r is not None and r >= 0 else ([], [])
        top_ids.append(found[0])
        top_lps.append(found[1])
    tails = [float(tail_logprob(torch.tensor(v, dtype=torch.float64))) if v else 0.0 for v in top_lps]
    token_ids = [t if r is None or r >= 0 else -1 for t, r in zip(ids, rows)]
    return TopK(token_ids=token_ids, ids=top_ids, logprobs=top_lps, token_logprobs=values, tail_logprob=tails)


def _same_piece(echoed: str, expected: str) -> bool:
    # llama.cpp renders special tokens and incomplete UTF-8 bytes as empty pieces; both sides may hold '\ufffd'.
    return echoed == expected or echoed == "" or "\ufffd" in expected


def _align(pieces: list[str], ids: list[int], expected: list[str], skipped: set[int]) -> list[Optional[int]]:
    """The echo row of every token (None for ``skipped`` ids the server gives no row), -1 from a mismatch on."""
    rows: list[Optional[int]] = []
    r = 0
    for t, want in zip(ids, expected):
        if t in skipped:
            rows.append(None)
        elif r < len(pieces) and _same_piece(pieces[r], want):
            rows.append(r)
            r += 1
        else:
            return rows + [-1] * (len(ids) - len(rows))
    # The echo ends with the generated token's row (none when it is a skipped BOS); any other remainder means
    # the server read other tokens.
    return rows if len(pieces) - r in (0, 1) else rows[:1] + [-1] * (len(ids) - 1)


def topk_of_ids(teacher: Any, ids: list[int], k: int) -> TopK:
    """:class:`TopK` of the token ids ``ids`` (prompt + completion) from ``teacher``'s server."""
    if len(ids) < 2:
        raise ValueError("topk_logprobs: a sequence of token ids needs at least 2 tokens to score one")
    if accepts_ids(teacher):
        lp = _echo(teacher, ids, k)
        rows: list[Optional[int]] = list(range(len(ids))) if len(lp["tokens"]) == len(ids) + 1 else [-1] * len(ids)
        return _answer(teacher, ids, rows, lp, k)
    tok = teacher.tokenizer
    if tok is None:
        raise BackendError(f"{teacher.base_url} takes text prompts only, so scoring token ids needs them decoded "
                           "with the served model's tokenizer: set the teacher's `tokenizer`")
    lp = _echo(teacher, tok.decode(ids, skip_special_tokens=False), k)
    expected = [tok.decode([t], skip_special_tokens=True) for t in ids]
    bos = tok.bos_token_id
    if bos is not None and ids[0] == bos and lp["tokens"][0] != tok.decode([bos], skip_special_tokens=False):
        return _answer(teacher, ids, _align(lp["tokens"], ids, expected, {bos}), lp, k)
    teacher._check_echo(tok.decode(ids, skip_special_tokens=False), lp)  # standard layout, or refused
    return _answer(teacher, ids, _align(lp["tokens"], ids, expected, set()), lp, k)
