"""k sampled responses per problem from a transformers causal LM, with what each sample needs for scoring.

Prompts are rendered as :mod:`protege.train.lm_data` renders them (the chat template with the assistant turn
opened), expanded k times, and decoded ``batch_size`` rows at a time with left padding through
:func:`protege.train.rollouts.generate_continuations`. Sampling is seeded: the same prompts, k, batch size
and seed give the same samples, and the global torch RNG is left as it was. Temperature 0 decodes each prompt
once (greedy decoding answers the same every time) and repeats the answer k times.

A sample is *truncated* when no EOS came within ``max_new_tokens``; its token count includes the EOS when
there is one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from protege.train.lm_data import encode_prompt
from protege.train.rollouts import generate_continuations


@dataclass(frozen=True)
class Sample:
    token_ids: list[int]  # generated tokens, up to and including EOS
    text: str  # decoded without special tokens
    tokens: int
    truncated: bool


def sample_responses(model: Any, tokenizer: Any, prompts: Sequence[str], *, k: int, temperature: float = 1.0,
                     top_p: float = 1.0, max_new_tokens: int = 256, seed: int = 0,
                     batch_size: int = 8) -> list[list[Sample]]:
    """``k`` samples per prompt, in prompt order."""
    if k < 1:
        raise ValueError(f"k={k}: draw at least 1 sample per problem")
    if temperature < 0 or not 0 < top_p <= 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"temperature={temperature} (>= 0), top_p={top_p} (in (0, 1]), max_new_tokens="
                         f"{max_new_tokens} (>= 1) and batch_size={batch_size} (>= 1): one is out of range")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token_id: truncation cannot be told from a finished answer")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    copies = k if temperature > 0 else 1
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    rows = [ids for ids in encoded for _ in range(copies)]
    device = next(model.parameters()).device
    generated: list[list[int]] = []
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            generated += generate_continuations(model, rows[start:start + batch_size], pad_id=pad, eos_id=eos,
                                                max_new_tokens=max_new_tokens, temperature=temperature,
                                                top_p=top_p)
    samples = [Sample(ids, tokenizer.decode(ids, skip_special_tokens=True), len(ids), eos not in ids)
               for ids in generated]
    return [samples[i * copies:(i + 1) * copies] * (k // copies) for i in range(len(prompts))]
