"""LM evaluation on tiny models: response fit against hand computations, generation metrics, arithmetic scoring."""

from __future__ import annotations

import pytest
import torch

from protege.evaluate.lm_metrics import generation_eval, response_fit
from protege.data.arithmetic import load_arithmetic, number_match

from tiny import build_llama, build_tokenizer
from tiny_lm import random_examples, tiny_llama


def test_response_fit_matches_full_logits():
    student, teacher = tiny_llama(), tiny_llama(seed=1)
    data = random_examples(5)
    fit = response_fit(student, teacher, data, batch_size=2)
    batch = data.batch(range(5))
    with torch.no_grad():
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[batch["loss_mask"]]
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[batch["loss_mask"]]
    targets = batch["input_ids"].roll(-1, dims=1)[batch["loss_mask"]]
    n = len(targets)
    assert fit["tokens"] == n
    assert fit["nll"] == pytest.approx(float(torch.nn.functional.cross_entropy(s, targets)), rel=1e-5)
    kl = (t.log_softmax(-1).exp() * (t.log_softmax(-1) - s.log_softmax(-1))).sum(-1).mean()
    assert fit["kl"] == pytest.approx(float(kl), rel=1e-5)
    assert fit["top1_agreement"] == pytest.approx(float((s.argmax(-1) == t.argmax(-1)).float().mean()))
    same = response_fit(student, student, data)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6) and same["top1_agreement"] == 1.0
    assert "kl" not in response_fit(student, None, data)


def test_generation_eval_counts_tokens_and_scores_answers():
    tok = build_tokenizer()
    model = build_llama(len(tok), layers=2)
    # A head that always says "5": greedy answers are "5555" (four new tokens, no EOS), whatever the prompt.
    five = tok.convert_tokens_to_ids("5")
    head = torch.nn.Linear(model.config.hidden_size, len(tok), bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-10.0)
        head.bias[five] = 10.0
    model.lm_head = head
    prompts = ["what is two plus three?", "the movie was"]
    out = generation_eval(model, tok, prompts, golds=["5555", "7"], max_new_tokens=4, batch_size=2)
    assert out["texts"] == ["5555", "5555"]
    assert out["answers"] == 2 and out["tokens_per_answer"] == 4 and out["tokens_per_second"] > 0
    assert out["task_accuracy"] == 0.5  # the first gold is the answer's last number, the second is not


def test_number_match_reads_the_last_number():
    assert number_match("12 + 7 = 19, so the answer is 19.", "19")
    assert number_match("It has 1,250 coins", "#### 1250")
    assert not number_match("first 19 then 20", "19")
    assert not number_match("no number here", "3")


def test_arithmetic_splits_are_fixed_and_disjoint():
    a, b = load_arithmetic(), load_arithmetic()
    assert a["train"].equals(b["train"]) and len(a["train"]) == 400 and len(a["test"]) == 100
    assert not set(a["train"]["text"]) & set(a["test"]["text"])
    row = a["train"].iloc[0]
    assert number_match(row["label"], row["label"]) and row["text"].endswith("give the final number.")
