"""Sampling k responses per problem: seeded, batched with left padding, truncation flagged, RNG untouched."""

from __future__ import annotations

import pytest
import torch

from protege.tasks.reasoning.sampling import sample_responses
from protege.train.lm_data import encode_prompt

from tiny import build_llama, build_tokenizer

PROMPTS = ["what is two plus three?", "the movie was", "a terrible film, boring and far too long, so"]


def _model_emitting(tokenizer, logits: dict[int, float]):
    """A tiny llama whose next-token distribution is softmax(logits) everywhere (zero head, fixed bias)."""
    model = build_llama(len(tokenizer), layers=1, hidden=32, pad_id=tokenizer.pad_token_id)
    head = torch.nn.Linear(32, len(tokenizer), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-1e4)
        for token, value in logits.items():
            head.bias[token] = value
    model.lm_head = head
    return model


def test_samples_are_seeded_and_truncation_is_no_eos_within_the_limit():
    tokenizer = build_tokenizer()
    eos, other = tokenizer.eos_token_id, tokenizer("the", add_special_tokens=False)["input_ids"][0]
    model = _model_emitting(tokenizer, {eos: 0.0, other: 0.0})  # EOS with probability 1/2 at every step
    state = torch.get_rng_state()
    out = sample_responses(model, tokenizer, PROMPTS, k=40, temperature=1.0, max_new_tokens=3, seed=1, batch_size=30)
    assert torch.equal(torch.get_rng_state(), state)
    again = sample_responses(model, tokenizer, PROMPTS, k=40, temperature=1.0, max_new_tokens=3, seed=1,
                             batch_size=30)
    assert out == again and len(out) == 3 and all(len(row) == 40 for row in out)
    flat = [x for row in out for x in row]
    for x in flat:
        assert x.tokens == len(x.token_ids) and x.truncated == (eos not in x.token_ids)
        expected = [other] * 3 if x.truncated else [other] * (x.tokens - 1) + [eos]
        assert x.token_ids == expected
        assert x.text == tokenizer.decode([other] * (x.tokens - (0 if x.truncated else 1)))
    lengths = [x.tokens for x in flat]
    truncated = sum(x.truncated for x in flat) / len(flat)
    assert 0.03 < truncated < 0.25  # 1/8 in expectation
    assert 0.35 < lengths.count(1) / len(flat) < 0.65  # EOS first with probability 1/2
    different = sample_responses(model, tokenizer, PROMPTS, k=40, temperature=1.0, max_new_tokens=3, seed=2, batch_size=30)
    assert different != out


def test_greedy_decodes_once_per_prompt_and_matches_generate():
    tokenizer = build_tokenizer()
    model = build_llama(len(tokenizer), layers=2, hidden=32, pad_id=tokenizer.pad_token_id)
    out = sample_responses(model, tokenizer, PROMPTS, k=2, temperature=0.0, max_new_tokens=5, batch_size=2)
    for prompt, (a, b) in zip(PROMPTS, out):
        assert a == b
        ids = encode_prompt(tokenizer, prompt)
        alone = model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False,
                               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        new = alone[0, len(ids):].tolist()
        eos = tokenizer.eos_token_id
        assert a.token_ids == (new[: new.index(eos) + 1] if eos in new else new)


def test_bad_sampling_arguments_are_errors():
    tokenizer = build_tokenizer()
    model = build_llama(len(tokenizer), layers=1)
    with pytest.raises(ValueError, match="k=0"):
        sample_responses(model, tokenizer, PROMPTS, k=0)
    with pytest.raises(ValueError, match="top_p=0"):
        sample_responses(model, tokenizer, PROMPTS, k=1, top_p=0)
