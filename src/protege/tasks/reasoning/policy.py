"""Drawing scored samples from a policy: the student (in process) or the teacher (through the ledger).

The student is the folder the ``student`` stage saved, sampled with :func:`.sampling.sample_responses`. The
teacher is asked through ``ctx.teacher`` (the run's ledger), so it may be an in-process model or any
OpenAI-compatible server (``teacher.backend: openai`` pointed at vLLM, SGLang or llama.cpp), and a re-run pays
for no sample twice. Either way a sample becomes a record with every field the family's tables keep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from pydantic import Field

from protege.core.records import record_id
from protege.core.section import VOLATILE, Section
from protege.models.base import SamplingParams
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.sampling import sample_responses
from protege.tasks.reasoning.task import ReasoningTask, score

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.stage import StageContext


class SamplingSettings(Section):
    """How responses are sampled."""

    temperature: float = Field(1.0, ge=0, description="Sampling temperature (0: greedy).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(128, ge=1, description="Longest response; one without EOS by then is truncated.")
    batch_size: int = Field(16, ge=1, description="Sequences decoded at once.", json_schema_extra=VOLATILE)


@dataclass(frozen=True)
class Draw:
    text: str
    tokens: int
    truncated: bool


def load_model(folder: Path, what: str) -> tuple[Any, Any]:
    """(model, tokenizer) of a saved transformers folder, in eval mode."""
    from protege.models.zoo import load_causal_lm

    if not (folder / "config.json").exists():
        raise ValueError(f"{what} is missing ({folder}): run the stage that makes it first")
    return load_causal_lm(str(folder))


def student_id(run: "Run") -> str:
    return run.read_json(tables.STUDENT_SUMMARY)["model_id"]


def draw(ctx: "StageContext", policy: str, prompts: Sequence[str], k: int, sampling: SamplingSettings, seed: int,
         model: Optional[tuple[Any, Any]] = None) -> list[list[Draw]]:
    """``k`` samples per prompt from ``policy`` (``student``: ``model`` or the saved student; ``teacher``)."""
    if not prompts or k < 1:
        return [[] for _ in prompts]
    if policy == "teacher":
        params = SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, n=k, seed=seed)
        # As chat messages, the way the student sees them and the teacher was prepared (train.lm_data.render):
        # a raw string would reach an hf teacher without its chat template.
        chats = [[{"role": "user", "content": p}] for p in prompts]
        return [[Draw(g.text, g.completion_tokens, g.finish_reason == "length") for g in gens]
                for gens in ctx.teacher.generate(chats, params)]
    lm, tokenizer = model or load_model(ctx.run.artifacts / tables.STUDENT, "the student")
    out = sample_responses(lm, tokenizer, prompts, k=k, temperature=sampling.temperature, top_p=sampling.top_p,
                           max_new_tokens=sampling.max_new_tokens, seed=seed, batch_size=sampling.batch_size)
    return [[Draw(s.text, s.tokens, s.truncated) for s in row] for row in out]


def policy_id(ctx: "StageContext", policy: str) -> str:
    return ctx.teacher.model_id if policy == "teacher" else student_id(ctx.run)


def records(task: ReasoningTask, problems: Sequence[dict], draws: Sequence[Sequence[Draw]], *, round: int,
            kind: str, policy: str, seed: int) -> list[dict]:
    """Scored sample records, ``index`` counting each problem's samples of this kind from 0."""
    out = []
    for problem, row in zip(problems, draws):
        for index, d in enumerate(row):
            out.append({"id": record_id(problem["id"], round, kind, index, policy, seed), "problem_id": problem["id"],
                        "split": problem["split"], "round": round, "kind": kind, "index": index,
                        "response": d.text, "tokens": d.tokens, "policy": policy, "seed": seed,
                        **score(task, d.text, problem["answer"], truncated=d.truncated)})
    return out


class Clock:
    """Seconds spent, accumulated over ``with`` blocks."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "Clock":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds += time.perf_counter() - self._start
