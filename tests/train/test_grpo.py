"""GRPO and KDRL on the training loop: grouped rollouts, rewards, gates that keep the teacher idle, resume, learning."""

from __future__ import annotations

import random

import pytest
import torch
from pydantic import ValidationError

from protege.core import console
from protege.losses.kdrl import KDRLConfig
from protege.losses.policy import group_advantages
from protege.core.run import Run
from protege.train.grpo import GRPOConfig, GRPOSource, PolicyConfig, PolicyObjective
from protege.train.loop import LoopConfig, train
from protege.train.preflight import TokenizerMismatchError

from tiny import build_llama, build_tokenizer
from tiny_lm import VOCAB, tiny_llama

EOS = 2
D = torch.float64


def _prompts(n: int = 6, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 5))] for _ in range(n)]


def _decode(ids: list[int]) -> str:
    return " ".join(str(i) for i in ids)


def _alternating():
    """A reward of 0, 1, 0, 1, … by call: every group of an even size is mixed."""
    calls = iter(range(10**9))
    return lambda index, text: next(calls) % 2


def _source(student, reward=None, **config) -> GRPOSource:
    cfg = GRPOConfig(**{"group_size": 4, "max_new_tokens": 5, "generation_dtype": None, **config})
    return GRPOSource(_prompts(), student, reward or _alternating(), cfg, decode=_decode, eos_id=EOS, pad_id=0)


def test_a_batch_holds_g_rewarded_rollouts_per_prompt_with_their_group_advantages():
    torch.manual_seed(0)
    seen = []

    def reward(index, text):
        seen.append((index, text))
        return int(len(text.split()) % 2 == 0)

    source = _source(tiny_llama(), reward, group_size=3)
    batch = source.batch([4, 1])
    assert batch["input_ids"].shape[0] == 6 and "old_logprobs" not in batch
    assert [i for i, _ in seen] == [4, 4, 4, 1, 1, 1]
    for row, (index, text) in enumerate(seen):
        prompt, n = source.prompts[index], int(batch["attention_mask"][row].sum())
        ids = batch["input_ids"][row, :n].tolist()
        assert ids[: len(prompt)] == prompt and _decode(ids[len(prompt):]) == text
        assert float(batch["rewards"][row]) == (len(text.split()) % 2 == 0)
    expected = group_advantages(batch["rewards"].view(2, 3))
    assert torch.equal(batch["advantages"], expected.advantages.flatten())
    assert torch.equal(batch["zero_variance"], expected.zero_variance.repeat_interleave(3))
    assert source.generated_tokens == int(batch["loss_mask"].sum()) == sum(len(t.split()) for _, t in seen)


def test_a_non_binary_reward_is_an_error_naming_the_prompt():
    with pytest.raises(ValueError, match=r"prompt_index=2.*binary"):
        _source(tiny_llama(), lambda index, text: 0.5).batch([2])


def test_groups_of_one_are_refused():
    with pytest.raises(ValidationError, match="group_size"):
        GRPOConfig(group_size=1)


def test_a_reused_rollout_batch_serves_k_steps_and_carries_old_logprobs():
    torch.manual_seed(0)
    student = tiny_llama()
    source = _source(student, updates_per_batch=2)
    source.begin_step(0)
    first = source.batch([0, 1])
    source.begin_step(1)
    assert source.batch([2, 3]) is first  # the prompts of step 1 are not used
    source.begin_step(2)
    fresh = source.batch([2, 3])
    assert fresh is not first and source.rollouts == 16
    with torch.no_grad():
        logits = student(input_ids=first["input_ids"], attention_mask=first["attention_mask"]).logits
    plain = logits.log_softmax(-1)[first["loss_mask"]].gather(
        -1, first["input_ids"].roll(-1, 1)[first["loss_mask"]][:, None]).squeeze(-1)
    assert torch.allclose(first["old_logprobs"], plain, atol=1e-5)
    # Served again after an update, the ratio to the rollout policy is no longer 1 and the loss sees it.
    objective, fresh_policy = PolicyObjective(PolicyConfig()), {k: v for k, v in first.items() if k != "old_logprobs"}
    assert float(objective(student, first)[0].detach()) == pytest.approx(float(objective(student, fresh_policy)[0].detach()), abs=1e-5)
    with torch.no_grad():
        student.lm_head.weight.add_(0.05 * torch.randn_like(student.lm_head.weight))
    assert abs(float(objective(student, first)[0].detach()) - float(objective(student, fresh_policy)[0].detach())) > 1e-3


def _hand_loss(student, teacher, batch, units, beta, gate_kd, max_length):
    """The KDRL k2 loss of a batch from full logits, written out for the comparison."""
    mask = batch["loss_mask"]
    owner = mask.nonzero()[:, 0]
    targets = batch["input_ids"].roll(-1, 1)[mask][:, None]
    logp = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
    logp = logp[mask].gather(-1, targets).squeeze(-1)
    with torch.no_grad():
        t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.log_softmax(-1)
        t = t[mask].gather(-1, targets).squeeze(-1)
    adv = batch["advantages"][owner].to(D)
    terms = -adv * torch.exp(logp - logp.detach()) + beta * gate_kd[owner] * 0.5 * (t - logp) ** 2
    lengths = mask.sum(1).to(D)
    if units == "token_mean":
        return terms.sum() / lengths.sum()
    if units == "sequence_mean":
        return (terms / lengths[owner]).sum() / len(lengths)
    return terms.sum() / (max_length * len(lengths))


def _tokenized_pair():
    tok = build_tokenizer()
    student = build_llama(len(tok), layers=2, seed=0, hidden=32).double().train()
    teacher = build_llama(len(tok), layers=2, seed=1, hidden=32).double()
    return tok, student, teacher


@pytest.mark.parametrize("units", ["token_mean", "sequence_mean", "sequence_sum"])
def test_the_kdrl_loss_and_gradient_equal_a_full_logits_hand_computation(units):
    tok, student, teacher = _tokenized_pair()
    torch.manual_seed(0)
    source = GRPOSource(_prompts(), student, _alternating(), GRPOConfig(group_size=4, max_new_tokens=6,
                        generation_dtype=None), decode=_decode, eos_id=EOS, pad_id=EOS)
    batch = source.batch([0, 1])
    kd = KDRLConfig(estimator="k2", beta=0.3, gate="response")
    objective = PolicyObjective(PolicyConfig(units=units, kd=kd, chunk_size=5), teacher=teacher,
                                student_tokenizer=tok, teacher_tokenizer=tok)
    loss, metrics = objective(student, batch)
    loss = loss / objective.units(batch)
    (grad,) = torch.autograd.grad(loss, student.model.layers[0].mlp.up_proj.weight)
    hand = _hand_loss(student, teacher, batch, units, 0.3, (batch["rewards"] == 0).to(D), 6)
    (hand_grad,) = torch.autograd.grad(hand, student.model.layers[0].mlp.up_proj.weight)
    assert float(loss.detach()) == pytest.approx(float(hand.detach()), rel=1e-6, abs=1e-9)
    assert torch.allclose(grad, hand_grad, rtol=1e-5, atol=1e-9)
    units_count = objective.units(batch)
    assert metrics["beta"] / units_count == pytest.approx(0.3)
    assert metrics["gate_open"] / units_count == pytest.approx(0.5)
    assert metrics["reward"] / units_count == pytest.approx(0.5)


def test_gated_sequences_never_reach_the_teacher():
    tok, student, teacher = _tokenized_pair()
    torch.manual_seed(1)
    source = GRPOSource(_prompts(), student, _alternating(), GRPOConfig(group_size=4, max_new_tokens=6,
                        generation_dtype=None), decode=_decode, eos_id=EOS, pad_id=EOS)
    batch = source.batch([0, 1, 2])
    received = []
    teacher.model.register_forward_pre_hook(lambda m, args, kwargs: received.append(kwargs["input_ids"].clone()),
                                            with_kwargs=True)
    kd = KDRLConfig(beta=0.1, gate="response", schedule="switch", switch_step=1)
    objective = PolicyObjective(PolicyConfig(kd=kd), teacher=teacher, student_tokenizer=tok, teacher_tokenizer=tok)
    _, metrics = objective(student, batch)
    incorrect = (batch["rewards"] == 0).nonzero().flatten()
    (rows,) = received
    assert len(rows) == len(incorrect) == 6
    for got, row in zip(rows, incorrect):
        n = int(batch["attention_mask"][row].sum())
        assert got[:n].tolist() == batch["input_ids"][row, :n].tolist()
    assert objective.teacher_tokens == int(batch["loss_mask"][incorrect].sum())
    units = objective.units(batch)
    assert metrics["teacher_tokens"] / units == pytest.approx(objective.teacher_tokens / 12)
    objective.begin_step(1)  # reward-only phase of the switch schedule: β = 0
    objective(student, batch)
    assert len(received) == 1
    everyone_right = {**batch, "rewards": torch.ones_like(batch["rewards"])}
    objective.begin_step(0)
    objective(student, everyone_right)
    assert len(received) == 1


def test_the_exact_estimator_reports_the_full_vocabulary_reverse_kl():
    tok, student, teacher = _tokenized_pair()
    torch.manual_seed(2)
    source = GRPOSource(_prompts(), student, _alternating(), GRPOConfig(group_size=2, max_new_tokens=4,
                        generation_dtype=None), decode=_decode, eos_id=EOS, pad_id=EOS)
    batch = source.batch([0, 3])
    objective = PolicyObjective(PolicyConfig(kd=KDRLConfig(estimator="exact", beta=1.0), chunk_size=3),
                                teacher=teacher, student_tokenizer=tok, teacher_tokenizer=tok)
    _, metrics = objective(student, batch)
    with torch.no_grad():
        q = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        p = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    log_q, log_p = q[batch["loss_mask"]].log_softmax(-1), p[batch["loss_mask"]].log_softmax(-1)
    kl = (log_q.exp() * (log_q - log_p)).sum(-1)
    assert metrics["kd"] / objective.units(batch) == pytest.approx(float(kl.mean()), rel=1e-9)


def test_zero_variance_groups_can_be_dropped_from_the_units():
    torch.manual_seed(0)
    student = tiny_llama()
    source = _source(student, lambda index, text: int(index == 0))
    batch = source.batch([0, 1])  # prompt 0: all correct; prompt 1: all wrong
    assert batch["zero_variance"].all()
    kept = PolicyObjective(PolicyConfig())
    dropped = PolicyObjective(PolicyConfig(drop_zero_variance=True))
    assert kept.units(batch) == int(batch["loss_mask"].sum()) and dropped.units(batch) == 0
    loss, metrics = kept(student, batch)
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in student.parameters())
    assert metrics["zero_variance"] / kept.units(batch) == 1.0


def test_teacher_settings_are_checked_before_anything_runs(monkeypatch):
    tok, _, teacher = _tokenized_pair()
    other = build_tokenizer(vocab_size=200)
    with pytest.raises(TokenizerMismatchError):
        PolicyObjective(PolicyConfig(kd=KDRLConfig()), teacher=teacher, student_tokenizer=other, teacher_tokenizer=tok)
    with pytest.raises(ValueError, match="kd settings"):
        PolicyObjective(PolicyConfig(), teacher=teacher)
    with pytest.raises(ValueError, match="kd settings"):
        PolicyObjective(PolicyConfig(kd=KDRLConfig()))
    with pytest.raises(ValueError, match="tokenizer"):
        PolicyObjective(PolicyConfig(kd=KDRLConfig()), teacher=teacher)
    with pytest.raises(ValueError, match="reference"):
        PolicyObjective(PolicyConfig(reference_kl=0.1))
    warnings = []
    monkeypatch.setattr(console, "warn", lambda message, **fields: warnings.append(message))
    PolicyObjective(PolicyConfig(kd=KDRLConfig(gate="group"), drop_zero_variance=True), teacher=teacher,
                    student_tokenizer=tok, teacher_tokenizer=tok)
    assert len(warnings) == 1 and "never" in warnings[0]


def _run_grpo(folder, steps, *, reward, lr=1e-3, config=None):
    student = tiny_llama()
    cfg = config or GRPOConfig(group_size=4, max_new_tokens=4, generation_dtype=None)
    source = GRPOSource(_prompts(8), student, reward, cfg, decode=_decode, eos_id=EOS, pad_id=0)
    loop = LoopConfig(steps=steps, micro_batch_size=2, lr=lr, schedule="constant", save_every=1, log_every=1,
                      tracker=None, seed=3)
    result = train(student, PolicyObjective(PolicyConfig()), source, loop, run=None if folder is None else Run(folder))
    return source, result


def test_a_resumed_run_rolls_out_the_same(tmp_path):
    def recorder(log):
        return lambda index, text: log.append((index, text)) or int("7" in text.split())

    full, first, resumed = [], [], []
    _run_grpo(tmp_path / "full", 3, reward=recorder(full))
    _run_grpo(tmp_path / "cut", 2, reward=recorder(first))
    _run_grpo(tmp_path / "cut", 3, reward=recorder(resumed))
    assert len(full) == 3 * 2 * 4 and first + resumed == full


def test_grpo_raises_the_mean_reward_of_a_toy_task():
    rewards = []

    def contains_7(index, text):  # the toy task: mention token 7
        rewards.append(int("7" in text.split()))
        return rewards[-1]

    source, result = _run_grpo(None, 12, reward=contains_7, lr=1e-2,
                               config=GRPOConfig(group_size=8, max_new_tokens=4, generation_dtype=None))
    per_step = [sum(rewards[i:i + 16]) / 16 for i in range(0, len(rewards), 16)]
    early, late = sum(per_step[:4]) / 4, sum(per_step[-4:]) / 4
    assert late > early + 0.3, per_step
    assert source.generated_tokens > 0
    assert {"pg_loss", "reward", "response_length", "zero_variance"} <= set(result.metrics)
    assert result.metrics["reward"] == pytest.approx(per_step[-1])
