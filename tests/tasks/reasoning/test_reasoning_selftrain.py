"""Self-training: STaR data, HS-STaR's DPO pairing, pair batches, and DPO in the one training loop."""

from __future__ import annotations

import math

import pytest
import torch

from protege.tasks.reasoning.selftrain import (
    DPO,
    DPOConfig,
    Pair,
    PairExamples,
    dpo_pairs,
    problem_pairs,
    reference_logprobs,
    star_examples,
)
from protege.tasks.reasoning.sources import chain_sum
from protege.train.lm_objectives import sequence_logprobs
from protege.train.loop import LoopConfig, train

from tiny import build_llama, build_tokenizer


def s(pid, response, correct, process=None):
    return {"problem_id": pid, "response": response, "correct": correct, "process_score": process}


def test_star_keeps_distinct_correct_responses_soundest_first_capped_per_problem():
    samples = [s("a", "x = 1", True, 0.0), s("a", "x  =  1 ", True, 1.0), s("a", "y = 1", True, 1.0),
               s("a", "wrong", False, 1.0), s("a", "z = 1", True, None), s("b", "b1", True), s("c", "c", False)]
    assert star_examples(samples, cap=2) == [("a", "y = 1"), ("a", "x = 1"), ("b", "b1")]
    assert len(star_examples(samples, cap=10)) == 4  # the whitespace twin is dropped
    with pytest.raises(ValueError, match="cap=0"):
        star_examples(samples, cap=0)


def test_pairs_rank_correct_best_first_and_incorrect_worst_first_k_is_the_smaller_count():
    samples = [s("p", "c_mid", True, 0.5), s("p", "w_good", False, 1.0), s("p", "c_best", True, 1.0),
               s("p", "w_worst", False, 0.0), s("p", "c_none", True, None), s("p", "w_mid", False, 0.5),
               s("p", "w_mid", False, 0.5)]
    pairs = problem_pairs(samples)
    assert [(p.chosen, p.rejected) for p in pairs] == [("c_best", "w_worst"), ("c_mid", "w_mid"),
                                                      ("c_none", "w_good")]
    assert problem_pairs(samples[:2]) == [Pair("p", "c_mid", "w_good", 0.5, 1.0)]


def test_no_pairs_is_an_error_that_names_the_fix():
    samples = [s("a", "r", True), s("a", "r2", True), s("b", "w", False)]
    with pytest.raises(ValueError, match=r"no DPO pairs: of 2 problems, 1 have only correct samples and 1 only "
                                         r"wrong ones; sample more responses per problem"):
        dpo_pairs(samples)


def _setup(n=8):
    problems = chain_sum(n, terms=2, digits=1, seed=0)
    tokenizer = build_tokenizer(tuple(p.question + "\n" + p.solution for p in problems))
    model = build_llama(len(tokenizer), layers=2, hidden=32, pad_id=tokenizer.pad_token_id).train()
    pairs = [Pair(p.id, p.solution, p.solution.replace(p.answer, str(int(p.answer) + 1)), None, None)
             for p in problems]
    return tokenizer, model, PairExamples.from_pairs(tokenizer, [p.question for p in problems], pairs)


def test_pair_batches_put_chosen_rows_first_and_mask_the_responses():
    tokenizer, model, examples = _setup(3)
    with pytest.raises(ValueError, match="call reference_logprobs"):
        examples.batch([0, 1])
    reference_logprobs(model, examples)
    assert model.training  # restored
    batch = examples.batch([2, 0])
    assert batch["input_ids"].shape[0] == 4 and DPO().units(batch) == 2
    for row, i in enumerate([2, 0]):
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == examples.chosen[i]
        assert batch["input_ids"][row + 2, :int(batch["attention_mask"][row + 2].sum())].tolist() == \
            examples.rejected[i]
        response = tokenizer.decode(examples.chosen[i][examples.prompt_lengths[i]:], skip_special_tokens=True)
        assert response.endswith("</answer>")
        scored = batch["loss_mask"][row].nonzero().flatten().tolist()
        assert scored == list(range(examples.prompt_lengths[i] - 1, n - 1))
    assert batch["ref_chosen"].tolist() == pytest.approx([examples.ref_chosen[2], examples.ref_chosen[0]])


def _float64_sequence_logprobs(model, batch):
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.double()
    logp = logits.log_softmax(-1).gather(-1, batch["input_ids"].roll(-1, 1).unsqueeze(-1)).squeeze(-1)
    return (logp * batch["loss_mask"]).sum(1).tolist()


@pytest.mark.parametrize("beta, nll_weight", [(0.1, 0.0), (0.5, 1.0)])
def test_dpo_objective_equals_the_float64_formula(beta, nll_weight):
    _, model, examples = _setup(4)
    reference = build_llama(model.config.vocab_size, layers=2, hidden=32, seed=5, pad_id=model.config.pad_token_id)
    reference_logprobs(reference, examples)  # a reference different from the policy: margins are not zero
    batch = examples.batch([0, 1, 2, 3])
    loss, metrics = DPO(DPOConfig(beta=beta, nll_weight=nll_weight, chunk_size=5))(model, batch)
    logp = _float64_sequence_logprobs(model, batch)
    ref = _float64_sequence_logprobs(reference, batch)
    tokens = batch["loss_mask"].sum(1).tolist()
    expected, margins = 0.0, []
    for i in range(4):
        delta = (logp[i] - ref[i]) - (logp[i + 4] - ref[i + 4])
        margins.append(delta)
        expected += math.log1p(math.exp(-beta * delta)) + nll_weight * (-logp[i] / tokens[i])
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-4)
    assert metrics["margin"] == pytest.approx(sum(margins), rel=1e-3, abs=1e-3)
    assert metrics["reward_accuracy"] == sum(m > 0 for m in margins)


def test_dpo_trains_in_the_loop_and_the_margin_rises():
    _, model, examples = _setup(8)
    reference_logprobs(model, examples)
    every = list(range(len(examples)))
    objective = DPO(DPOConfig(beta=0.5))
    loss0, before = objective(model, examples.batch(every))
    assert float(loss0) == pytest.approx(8 * math.log(2), rel=1e-4)  # the policy starts at the reference
    assert abs(before["margin"]) < 1e-3
    cfg = LoopConfig(steps=6, micro_batch_size=4, lr=3e-3, schedule="constant", tracker=None, seed=0)
    result = train(model, objective, examples, cfg)
    with torch.no_grad():
        _, after = objective(result.model, examples.batch(every))
    assert after["margin"] / 8 > 1.0 and after["reward_accuracy"] == 8
    chosen = sequence_logprobs(result.model, examples.sequences(every))[:8]
    assert chosen.isfinite().all()
