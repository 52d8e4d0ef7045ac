"""A scripted teacher for the absa stages: answers each kind of prompt the family sends from cue words."""

from __future__ import annotations

import json
import re
from typing import Sequence

from protege.models.base import Generation, Prompt, SamplingParams

CUES = {
    "great": "positive",
    "good": "positive",
    "bad": "negative",
    "slow": "negative",
    "noisy": "negative",
    "fine": "neutral",
}
TERMS = ["battery life", "hard drive", "keyboard", "screen", "fan", "price", "trackpad", "glass"]


def _text(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


def _pairs(sentence: str) -> list[list[str]]:
    words = sentence.lower()
    polarity = next((p for c, p in CUES.items() if c in words.split() or f"{c}." in words), "neutral")
    return [[term, polarity] for term in TERMS if term in words]


class ScriptedAbsaTeacher:
    """``generate`` rewrites by swapping cue words (garbage on request); ``score`` reads cue words."""

    backend = "fake"
    model_id = "absa-script"

    def __init__(self, garbage_every: int = 0, copy_sentence: str = "") -> None:
        self.calls = 0
        self.garbage_every = garbage_every
        self.copy_sentence = (
            copy_sentence  # answered to the first rewrite: a dev sentence, dropped by synthesize
        )

    def _answer(self, text: str, i: int) -> str:
        if text.startswith("We are collecting"):
            if "opinion" in text:
                return "\n".join(
                    ["great", "good"]
                    if "positive" in text
                    else ["bad", "slow"]
                    if "negative" in text
                    else ["fine"]
                )
            if "aspect terms" in text:
                return "- screen\n- keyboard\n- battery life\n- fan"
            return "1. laptop\n2. notebook"
        if self.garbage_every and i % self.garbage_every == 0:
            return ["", "no idea", "[1, 2, 3]", "{}"][i // self.garbage_every % 4]
        if text.startswith("Find the aspect terms"):
            sentence = text.rsplit("Sentence:", 1)[1].split("\nAspects:")[0].strip()
            return json.dumps(_pairs(sentence))
        if self.copy_sentence and "Aspects:" in text:
            self.copy_sentence, copied = "", self.copy_sentence
            return f"Sentence: {copied}\nAspects: {json.dumps(_pairs(copied))}"
        wanted = re.findall(r"'([^']+)' \((\w+)\)", text)
        if wanted:  # key-point: a sentence with the planned aspects
            cue = {"positive": "great", "negative": "bad", "neutral": "fine"}
            sentence = " and ".join(f"the {term} is {cue[p]}" for term, p in wanted) + "."
            return f"Sentence: {sentence}\nAspects: {json.dumps([[t, p] for t, p in wanted])}"
        source = re.findall(r"Sentence: (.+)", text) or [text.splitlines()[-2]]
        sentence = source[0].replace("[MASK]", "screen").replace("great", "good").replace("bad", "slow")
        sentence = sentence if sentence != source[0] else "it was " + sentence
        return f"Sentence: {sentence}\nAspects: {json.dumps(_pairs(sentence))}"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        out = []
        for prompt in prompts:
            self.calls += 1
            out.append(
                [
                    Generation(
                        self._answer(_text(prompt), self.calls), prompt_tokens=20, completion_tokens=12
                    )
                    for _ in range(params.n)
                ]
            )
        return out

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for prompt, words in zip(prompts, continuations):
            self.calls += 1
            sentence = _text(prompt).split("Review:", 1)[-1].split("\n")[0]
            polarity = (_pairs(sentence) or [["", "neutral"]])[0][1]
            out.append([0.0 if w.strip() == polarity else -2.0 for w in words])
        return out

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover - the absa family never asks
        raise NotImplementedError
