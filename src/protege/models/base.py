"""The one small interface every teacher backend implements, and the value types it returns.

A backend is stateless apart from its loaded model or client: caching, budgets and provenance live in the
ledger (:mod:`protege.core.ledger`, through :mod:`protege.models.ledgered`), which wraps any backend. Keep the
three methods pure in that sense: the same request returns the same kind of answer whatever was asked before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Protocol, Sequence, Union, runtime_checkable

# A prompt is either raw text (sent as is) or a chat: a list of {"role": ..., "content": ...} messages that
# the backend renders with the model's chat template.
Message = dict[str, str]
Prompt = Union[str, list[Message]]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature=0`` means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1  # samples per prompt
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # When > 0, each generated token also reports its log-probability and this many alternatives (API teachers
    # give logit KD nothing else to work with). OpenAI caps it at 20, vLLM at its ``max_logprobs`` (default 20).
    top_logprobs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generation:
    """One sampled continuation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "stop" | "length"
    # Filled only when ``SamplingParams.top_logprobs > 0``, one entry per generated token: its text piece, its
    # log-probability, and the top alternatives as {piece: logprob}.
    tokens: list[str] | None = None
    token_logprobs: list[float] | None = None
    top_logprobs: list[dict[str, float]] | None = None


@dataclass
class TopK:
    """Per-position top-k next-token log-probabilities over a sequence.

    Row ``i`` describes the distribution of token ``i + 1`` given tokens ``0..i`` (the usual shift), so a
    sequence of ``L`` tokens yields ``L - 1`` rows. ``token_logprobs[i]`` is the log-probability the model gave
    the token that actually follows; ``tail_logprob[i]`` is log(1 - sum(exp(logprobs[i]))), the mass outside
    the top k (``-inf`` when the top k hold all of it).
    """

    token_ids: list[int]  # the L tokens of the sequence
    ids: list[list[int]]  # (L-1) x k
    logprobs: list[list[float]]  # (L-1) x k, sorted descending
    token_logprobs: list[float]  # L-1
    tail_logprob: list[float] = field(default_factory=list)  # L-1


@runtime_checkable
class Teacher(Protocol):
    """A model that can be asked for text, for scores of given text, and for its next-token distributions."""

    @property
    def backend(self) -> str:
        """Short backend name: ``hf``, ``openai`` or ``llamacpp``."""

    @property
    def model_id(self) -> str:
        """What identifies the weights (resolved path, hub id or served model name); part of the ledger key."""

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        """``params.n`` continuations for each prompt."""

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        """Summed log-probability of each candidate continuation given its prompt.

        ``continuations[i]`` are the candidates for ``prompts[i]`` (e.g. one verbalizer per label). Backends
        that can, compute the shared prompt once per prompt and branch only over the candidates.
        """

    def topk_logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str], k: int) -> list[TopK]:
        """Top-k next-token log-probabilities at every position of ``prompt + completion``.

        A prompt and its completion may instead both be token ids (lists of int, :func:`is_token_ids`): they are
        scored as given, never rendered or re-tokenized, so a sequence another model sampled (in a tokenization
        the text would not give back) is scored token for token.
        """


class BackendError(RuntimeError):
    """A backend failed in a way retrying will not fix (bad request, missing model, unreachable server)."""

    code = "teacher_failed"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


# Bytes of text per token when no tokenizer is at hand: BPE vocabularies of English average about four. Used
# only to count the tokens of requests to a server whose tokenizer protege does not have, for cost estimates.
BYTES_PER_TOKEN = 4


def is_token_ids(value: object) -> bool:
    """Whether a prompt or completion is token ids (a list of int) rather than text or a chat."""
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


def prompt_text(prompt: Prompt) -> str:
    """The words of a prompt: raw text as is, a chat's message contents one per line (no template)."""
    return prompt if isinstance(prompt, str) else "\n".join(m.get("content", "") for m in prompt)


def estimate_tokens(text: str) -> int:
    """Tokens of ``text`` estimated from its UTF-8 length (:data:`BYTES_PER_TOKEN`), at least 1 for any text."""
    size = len(text.encode())
    return -(-size // BYTES_PER_TOKEN) if size else 0
