"""Process scores without a reward model: how sound a response's steps are, scored by its weakest step.

HS-STaR scores a response by the minimum step score of a process reward model; two model-free stand-ins:

* **arithmetic** (:func:`arithmetic_score`): every equation written in the response, ``a ± b = c`` with any
  chain of ``+ - × * ÷ / x`` on either side (usual precedence, exact rational arithmetic), is checked. A step
  is right when both sides are equal; a side written as a decimal literal may be rounded to its own places
  ("10 / 3 = 3.33" is right, "10 / 3 = 3" is not), and a division by zero is a wrong step. The response scores
  1.0 when every step is right, 0.0 when any is wrong, and None when it writes no equation with an operator
  (plain "x = 5" or "72 = 72" are not steps). A chain "2 + 3 = 5 + 1 = 6" reads as the running computation
  it abbreviates: each side equals the previous one or starts from its value.
* **teacher likelihood** (:func:`likelihood_score`): the response's lines are its steps; a caller-supplied
  function returns each step's mean token log-probability under a teacher (the model call stays with the
  caller), and the response scores exp(min): the geometric-mean token probability of its least likely step,
  in (0, 1] like the arithmetic score, so the same HS-STaR thresholds apply to both.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Sequence

_NUM = r"-?\$?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?"
_OP = r"[-+−×*÷/xX]"
_EXPR = rf"{_NUM}(?:[ \t]*{_OP}[ \t]*{_NUM})*"  # within one line: a step never spans lines
_RUN = re.compile(rf"(?<![\w.]){_EXPR}(?:[ \t]*=[ \t]*{_EXPR})+(?!\d)")
_NUM_AT = re.compile(rf"[ \t]*({_NUM})")
_OP_AT = re.compile(rf"[ \t]*({_OP})")
_MUL, _DIV = set("×*xX"), set("÷/")


@dataclass(frozen=True)
class Step:
    """One checked equality: its text, both sides' exact values (None after a division by zero), verdict."""

    text: str
    left: Optional[Fraction]
    right: Optional[Fraction]
    correct: bool


def _literal(text: str) -> Fraction:
    return Fraction(text.replace("$", "").replace(",", ""))


def _tokens(side: str) -> tuple[list[str], list[str]]:
    """Numbers and the operators between them; a minus right after an operator belongs to the number."""
    numbers, ops, pos = [], [], 0
    while True:
        num = _NUM_AT.match(side, pos)
        numbers.append(num.group(1))
        op = _OP_AT.match(side, num.end())
        if op is None:
            return numbers, ops
        ops.append(op.group(1))
        pos = op.end()


@dataclass(frozen=True)
class _Side:
    value: Optional[Fraction]  # None after a division by zero
    operators: bool
    places: int  # decimal places of a side that is a single literal, else 0
    first: Fraction  # its first number


def _evaluate(side: str) -> _Side:
    numbers, ops = _tokens(side)
    values = [_literal(n) for n in numbers]
    if not ops:
        return _Side(values[0], False, len(numbers[0].split(".")[1]) if "." in numbers[0] else 0, values[0])
    return _Side(_combine(values, ops), True, 0, values[0])


def _combine(values: list[Fraction], ops: list[str]) -> Optional[Fraction]:
    terms, signs = [values[0]], [1]
    for op, value in zip(ops, values[1:]):
        if op in _MUL:
            terms[-1] *= value
        elif op in _DIV:
            if value == 0:
                return None
            terms[-1] /= value
        else:
            terms.append(value)
            signs.append(-1 if op in "-−" else 1)
    return sum(s * t for s, t in zip(signs, terms))


def _close(a: Optional[Fraction], b: Optional[Fraction], tolerance: Fraction) -> bool:
    return a is not None and b is not None and abs(a - b) <= tolerance


def arithmetic_steps(response: str) -> list[Step]:
    """Every equality with an operator on at least one side, checked, in order of appearance."""
    steps = []
    for match in _RUN.finditer(response or ""):
        sides = [_evaluate(side) for side in match.group(0).split("=")]
        for left, right in zip(sides, sides[1:]):
            if not (left.operators or right.operators):
                continue
            places = max(left.places, right.places)
            tolerance = Fraction(1, 2 * 10 ** places) if places else Fraction(0)
            # "2 + 3 = 5 + 1 = 6" abbreviates two steps: a side may also continue from the previous value.
            ok = _close(left.value, right.value, tolerance) or (
                right.operators and _close(left.value, right.first, Fraction(0)))
            steps.append(Step(match.group(0), left.value, right.value, bool(ok)))
    return steps


def min_step(scores: Sequence[float]) -> Optional[float]:
    """A response's process score from its step scores: the weakest step; None without steps."""
    return min(scores) if len(scores) else None


def arithmetic_score(response: str) -> Optional[float]:
    """1.0 when every written equation holds, 0.0 when any does not, None when there is none."""
    return min_step([1.0 if s.correct else 0.0 for s in arithmetic_steps(response)])


def split_steps(response: str) -> list[str]:
    """The steps a teacher scores: the response's non-empty lines."""
    return [line.strip() for line in (response or "").splitlines() if line.strip()]


def likelihood_score(response: str, mean_logprobs: Callable[[Sequence[str]], Sequence[float]]) -> Optional[float]:
    """exp(min over steps of the teacher's mean token log-probability); None for an empty response.

    ``mean_logprobs(steps)`` returns one mean log-probability (≤ 0) per step, each scored in the context of
    the problem and the steps before it; the caller closes over the teacher and the prompt.
    """
    steps = split_steps(response)
    if not steps:
        return None
    values = list(mean_logprobs(steps))
    if len(values) != len(steps):
        raise ValueError(f"mean_logprobs returned {len(values)} values for {len(steps)} steps: return one "
                         f"mean token log-probability per step")
    return math.exp(min(values))
