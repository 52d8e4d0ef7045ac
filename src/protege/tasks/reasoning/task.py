"""The ``reasoning`` task section: where problems come from, how answers are checked, how steps are scored.

The section is validated when the recipe is read, before anything is sampled: an unknown verifier, an unknown
source form, a generator knob out of range or a missing file is an error naming the key and the fix.

A problem is asked as its question followed by the format instruction, and a response is scored by
:func:`score`: the extracted answer, the binary verdict of the task's verifier, whether it was formatted or
truncated, and the process score (the weakest checked step, :mod:`.process`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Optional

from pydantic import Field, model_validator

from protege.core.section import Section
from protege.tasks.reasoning.answers import FORMAT_INSTRUCTION, VERIFIERS, score_response
from protege.tasks.reasoning.process import arithmetic_score
from protege.tasks.reasoning.sources import CHAIN_SUM_RANGES

# Process scorers by name: a response's soundness from its text alone (None when it has no checkable step).
PROCESS: dict[str, Callable[[str], Optional[float]]] = {"arithmetic": arithmetic_score, "none": lambda _: None}


class ReasoningTask(Section):
    """Problems with a verifiable final answer."""

    kind: Literal["reasoning"] = Field("reasoning", description="The task kind.")
    source: str = Field("chain_sum", description="chain_sum (built-in generator), gsm8k:<path>, rg:<dataset> "
                        "(reasoning-gym extra) or a path to a .jsonl file with question and answer.")
    knobs: dict[str, Any] = Field(default_factory=dict, description="Generator settings: chain_sum's terms and "
                                  "digits, or a reasoning-gym dataset's config fields.")
    verifier: str = Field("numeric", description=f"How an answer is checked: {', '.join(VERIFIERS)}.")
    process: Literal["arithmetic", "none"] = Field(
        "arithmetic", description="Process score of a response: arithmetic (every written equation checked, the "
        "weakest step counts) or none.")
    instruction: str = Field(FORMAT_INSTRUCTION, description="Appended to every question: how to answer.")

    @model_validator(mode="after")
    def _checked(self) -> "ReasoningTask":
        if self.verifier not in VERIFIERS:
            raise ValueError(f"task.verifier={self.verifier!r} is unknown: use one of {', '.join(VERIFIERS)}")
        if self.source == "chain_sum":
            for key, value in self.knobs.items():
                if key not in CHAIN_SUM_RANGES:
                    raise ValueError(f"task.knobs.{key}: chain_sum has no such knob; its knobs are "
                                     f"{', '.join(CHAIN_SUM_RANGES)}")
                lo, hi = CHAIN_SUM_RANGES[key]
                if not isinstance(value, int) or not lo <= value <= hi:
                    raise ValueError(f"task.knobs.{key}={value!r} is out of range: use an integer from {lo} to {hi}")
        elif self.source.startswith("rg:"):
            pass  # reasoning-gym checks its own config when the problems stage builds the dataset
        else:
            if self.knobs:
                raise ValueError(f"task.knobs: source {self.source!r} is a file and takes no generator knobs; "
                                 f"remove task.knobs")
            path = self.source.removeprefix("gsm8k:")
            if not (self.source.startswith("gsm8k:") or path.endswith(".jsonl")):
                raise ValueError(f"task.source={self.source!r} is unknown: use chain_sum, gsm8k:<path>, "
                                 f"rg:<dataset> or a path to a .jsonl file")
            if not Path(path).is_file():
                raise ValueError(f"task.source: {path} does not exist; give the path of the problem file")
        return self


def prompt(task: ReasoningTask, question: str) -> str:
    """What the policy is asked: the question, then how to answer."""
    return f"{question}\n{task.instruction}"


def score(task: ReasoningTask, response: str, gold: str, *, truncated: bool) -> dict[str, Any]:
    """Record fields of one response: answer, rule, formatted, correct, truncated, reward, process_score."""
    return {**score_response(response, gold, task.verifier, truncated=truncated),
            "process_score": PROCESS[task.process](response)}
