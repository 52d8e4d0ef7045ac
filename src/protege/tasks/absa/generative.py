"""The generative ABSA student: a causal LM (e.g. the half-depth SmolLM2) that writes a sentence's pairs.

FSA distillation's recipe for a generative student, on the one loop with completion-only loss (the SFT
objective scores only the response tokens, :mod:`protege.train.lm_data`):

1. **rationale pre-training** (:func:`rationale_pairs`): the review is the prompt and the teacher's analysis or
   rewrite the response — or, for the domain-adaptation control, the review itself is the response to a fixed
   prompt (the model reads the same reviews with no teacher text);
2. **fine-tuning on pairs** (:func:`pairs_training`): a sentence is the prompt and its aspect-sentiment pairs,
   as a JSON list of ``[term, polarity]``, the response;
3. **prediction** (:func:`predict_pairs`): greedy decoding, the answer parsed (:func:`parse_pairs`) and grounded
   in the sentence (:func:`normalise`), so it is scored with the family's pair F1 like the tagger.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Sequence

from protege.core.run import Run
from protege.tasks.absa.ground import normalise
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.prompts import pairs_text
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect
from protege.train.lm_data import LMExamples, encode_prompt
from protege.train.lm_objectives import SFT
from protege.train.loop import LoopConfig, TrainResult
from protege.train.loop import train as train_loop
from protege.train.rollouts import generate_continuations

REVIEW_PROMPT = "Write a customer review."


def pairs_prompt(sentence: str) -> str:
    return f"List the aspect terms of this review sentence with their sentiment.\nSentence: {sentence}"


def rationale_pairs(reviews: Sequence[str], texts: Optional[Sequence[str]],
                    corpus: Literal["rationales", "reviews"]) -> tuple[list[str], list[str]]:
    """(prompts, responses) of the pre-training: review -> teacher text, or fixed prompt -> review."""
    if corpus == "reviews":
        unique = list(dict.fromkeys(reviews))
        return [REVIEW_PROMPT] * len(unique), unique
    if texts is None or len(texts) != len(reviews):
        raise ValueError("rationale pre-training needs one teacher text per review")
    return [f"Review: {r}\nExplain the sentiment of this review." for r in reviews], list(texts)


def pairs_training(examples: Sequence[AbsaExample]) -> tuple[list[str], list[str]]:
    """(prompts, responses) of the fine-tuning on gold pairs."""
    return [pairs_prompt(e.sentence) for e in examples], [pairs_text(e) for e in examples]


def fit_lm(model: Any, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], loop: LoopConfig, *,
           max_length: int = 256, run: Optional[Run] = None, name: str = "generative") -> TrainResult:
    """Supervised fine-tuning with loss on the response tokens only."""
    data = LMExamples.from_pairs(tokenizer, prompts, responses, max_length=max_length)
    return train_loop(model, SFT(), data, loop, run=run, name=name)


def predict_pairs(model: Any, tokenizer: Any, examples: Sequence[AbsaExample], task: AbsaTask, *,
                  batch_size: int = 16, max_new_tokens: int = 48) -> tuple[dict[str, tuple[Aspect, ...]], dict]:
    """Predicted labels by example id (greedy, parsed, grounded) and the share of answers that parsed."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out: dict[str, tuple[Aspect, ...]] = {}
    parsed = 0
    for start in range(0, len(examples), batch_size):
        chunk = examples[start: start + batch_size]
        prompts = [encode_prompt(tokenizer, pairs_prompt(e.sentence)) for e in chunk]
        completions = generate_continuations(model, prompts, pad_id=pad, eos_id=tokenizer.eos_token_id,
                                             max_new_tokens=max_new_tokens, temperature=0.0)
        for e, ids in zip(chunk, completions):
            answer = parse_pairs(tokenizer.decode(ids, skip_special_tokens=True))
            parsed += answer.parsed
            out[e.id] = normalise(e.sentence, answer.pairs, task).aspects
    return out, {"answers": len(examples), "parsed": parsed}
