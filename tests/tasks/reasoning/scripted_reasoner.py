"""A tiny llama teacher whose generate() is scripted: right, wrong or mixed per problem, so labels vary.

Its weights are a real (random) tiny llama, so the stages that fine-tune the teacher or distil from its logits
run on it; only its answers are scripted: a problem's fate is its question's hash mod 3 (always right, always
wrong with a wrong step, or right on every other sample).
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

from protege.models.base import Generation, SamplingParams
from protege.models.hf import HFTeacher

_EXPR = re.compile(r"Compute ([-\d +]+)\.")


def fate(question: str) -> int:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 3


def worked(expression: str, wrong: bool) -> str:
    tokens = expression.split()
    running, lines = int(tokens[0]), []
    for op, n in zip(tokens[1::2], tokens[2::2]):
        after = running + int(n) if op == "+" else running - int(n)
        lines.append(f"{running} {op} {n} = {after + (1 if wrong else 0)}")
        running = after + (1 if wrong else 0)
    return "\n".join(lines) + f"\n<answer>{running}</answer>"


class ScriptedReasoner(HFTeacher):
    calls = 0

    def generate(self, prompts: Sequence, params: SamplingParams) -> list[list[Generation]]:
        type(self).calls += len(prompts)
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
            match = _EXPR.search(text)
            f = fate(match.group(0)) if match else 1
            gens = []
            for i in range(params.n):
                wrong = f == 1 or (f == 2 and (i + (params.seed or 0)) % 2 == 1)
                body = worked(match.group(1).strip(), wrong) if match else "no idea"
                gens.append(Generation(body, 10, len(body.split()), "stop"))
            out.append(gens)
        return out
