"""On-policy KD: λ decides which micro-batches are the student's own continuations, scored by the teacher."""

from __future__ import annotations

import json

import torch

from protege.core.run import Run
from protege.train.lm_objectives import DistillConfig, LogitKD
from protege.train.loop import LoopConfig, train
from protege.train.rollouts import OnPolicyConfig, OnPolicySource

from tiny_lm import random_examples, tiny_llama

EOS = 2


def test_fraction_one_trains_on_the_students_own_greedy_continuations():
    student, data = tiny_llama(), random_examples(6)
    config = OnPolicyConfig(fraction=1.0, temperature=0, max_new_tokens=5, generation_dtype=None)
    source = OnPolicySource(data, student, config, eos_id=EOS)
    student.train()
    modes = []
    hook = student.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    batch = source.batch([0, 3, 5])
    hook.remove()
    assert modes and not any(modes) and student.training  # rolled out in eval mode, then back to training
    assert float(batch["on_policy"]) == 1.0
    for row, i in enumerate([0, 3, 5]):
        prompt = data.prompt(i)
        alone = student.generate(torch.tensor([prompt]), max_new_tokens=5, do_sample=False, eos_token_id=EOS,
                                 pad_token_id=0)[0, len(prompt):].tolist()
        alone = alone[: alone.index(EOS) + 1] if EOS in alone else alone
        n = int(batch["attention_mask"][row].sum())
        assert batch["input_ids"][row, :n].tolist() == prompt + alone
        assert batch["input_ids"][row, :n].tolist() != data.sequences[i]
        # scored positions: exactly those predicting the generated tokens
        assert batch["loss_mask"][row].nonzero().flatten().tolist() == list(range(len(prompt) - 1, n - 1))


def test_rollouts_sample_from_a_bf16_copy_that_follows_the_training_weights():
    student, data = tiny_llama(), random_examples(6)
    source = OnPolicySource(data, student, OnPolicyConfig(fraction=1.0, temperature=0, max_new_tokens=5), eos_id=EOS)
    source.batch([0, 1])
    copy = source.generator()
    assert copy is not student and all(p.dtype == torch.bfloat16 for p in copy.parameters())
    assert all(not p.requires_grad for p in copy.parameters())
    floats = {n: b.dtype for n, b in student.named_buffers() if b.is_floating_point()}
    assert {n: b.dtype for n, b in copy.named_buffers() if b.is_floating_point()} == floats  # RoPE stays fp32
    with torch.no_grad():
        next(student.parameters()).add_(1.0)  # an optimizer step
    assert source.generator() is copy  # refreshed in place, not rebuilt
    for mine, theirs in zip(copy.parameters(), student.parameters()):
        assert torch.equal(mine, theirs.to(torch.bfloat16))
    assert next(student.parameters()).dtype == torch.float32  # the training weights are untouched


def test_fraction_zero_is_the_offline_batch():
    data = random_examples(6)
    source = OnPolicySource(data, tiny_llama(), OnPolicyConfig(fraction=0.0), eos_id=EOS)
    batch = source.batch([1, 2])
    assert float(batch["on_policy"]) == 0.0
    assert torch.equal(batch["input_ids"], data.batch([1, 2])["input_ids"])


def test_fraction_sets_the_share_of_on_policy_batches():
    torch.manual_seed(0)
    source = OnPolicySource(random_examples(4), tiny_llama(), OnPolicyConfig(fraction=0.3, max_new_tokens=1), eos_id=EOS)
    share = sum(float(source.batch([0])["on_policy"]) for _ in range(200)) / 200
    assert 0.2 < share < 0.4


def test_on_policy_kd_runs_in_the_loop(tmp_path):
    student, teacher = tiny_llama(), tiny_llama(seed=1, layers=3)
    source = OnPolicySource(random_examples(8), student, OnPolicyConfig(fraction=1.0, max_new_tokens=6), eos_id=EOS)
    run = Run(tmp_path / "run")
    cfg = LoopConfig(steps=2, micro_batch_size=4, lr=1e-3, log_every=1, tracker=None)
    result = train(student, LogitKD(teacher, DistillConfig(kind="reverse_kl")), source, cfg, run=run)
    lines = [json.loads(x) for x in (run.artifacts / "metrics" / "train.jsonl").read_text().splitlines()]
    assert [r["on_policy"] for r in lines] == [1.0, 1.0] and all(r["kd"] > 0 for r in lines)
    assert result.model is student
