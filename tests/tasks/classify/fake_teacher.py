"""A scripted teacher for the classification stages: scores label words by cue words, writes texts on request."""

from __future__ import annotations

import random
import re
from typing import Sequence

from protege.models.base import Generation, Prompt, SamplingParams

CUES = {"positive": "good", "negative": "bad"}
FILLER = ["movie", "plot", "actor", "the", "a", "was", "very", "quite", "story", "scene", "ending", "cast", "film"]


def _text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class CueTeacher:
    """Label word w scores 0 if its cue word is in the text, else -3; texts mentioning 'music' get the cue
    inverted, so the teacher is wrong on them. ``generate`` writes a new text with the asked label's cue."""

    backend = "fake"
    model_id = "cue-teacher"

    def __init__(self) -> None:
        self.generated = 0

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for prompt, words in zip(prompts, continuations):
            body = _text(prompt).split("Text:", 1)[-1].split()
            flip = "music" in body
            row = []
            for word in words:
                hit = CUES[word.strip()] in body
                row.append(0.0 if hit != flip else -3.0)
            out.append(row)
        return out

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        out = []
        for prompt in prompts:
            label = self.asked_label(_text(prompt))
            rng = random.Random(f"{_text(prompt)}|{params.seed}")
            gens = []
            for _ in range(params.n):
                words = rng.sample(FILLER, 5) + [CUES[label]]
                rng.shuffle(words)
                gens.append(Generation(text=" ".join(words), prompt_tokens=10, completion_tokens=6))
                self.generated += 1
            out.append(gens)
        return out

    def asked_label(self, text: str) -> str:
        """The label a generation prompt asks for."""
        return re.search(r"label is '(\w+)'", text).group(1)

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover - classification never asks
        raise NotImplementedError
