"""The training loop: exact accumulation, exact resume, LoRA, trackers, metrics, early stopping."""

from __future__ import annotations

import json

import pytest
import torch

from protege.core.run import Run
from protege.train.lm_objectives import SFT
from protege.train.lora import LoraConfig
from protege.train.loop import LoopConfig, train
from protege.train.schedule import IndexStream, lr_factor

from tiny_lm import random_examples, tiny_llama


def _config(**kw) -> LoopConfig:
    base = dict(steps=3, micro_batch_size=8, lr=1e-2, tracker=None, log_every=1, max_grad_norm=None)
    return LoopConfig(**{**base, **kw})


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_accumulation_split_does_not_change_the_update():
    data = random_examples(24)
    one = train(tiny_llama(), SFT(), data, _config(micro_batch_size=8, grad_accum=1)).model
    four = train(tiny_llama(), SFT(), data, _config(micro_batch_size=2, grad_accum=4)).model
    start = tiny_llama()
    moved = max(float((a - b).abs().max().detach()) for a, b in zip(one.parameters(), start.parameters()))
    assert moved > 1e-3  # the steps did change the weights
    for (name, a), b in zip(one.named_parameters(), four.parameters()):
        assert torch.allclose(a, b, atol=2e-5), name


def test_per_micro_batch_mean_would_differ():
    examples = random_examples()
    # Guard on the test above: the micro-batches really have different token counts, so averaging per
    # micro-batch (the classic bug) would give another gradient.
    counts = [int(examples.batch(list(range(i, i + 2)))["loss_mask"].sum()) for i in range(0, 8, 2)]
    assert len(set(counts)) > 1


class _Killed(Exception):
    pass


def _kill_at(step: int):
    calls = []

    def evaluate(model):
        calls.append(1)
        if len(calls) == step:
            raise _Killed
        return {}

    return evaluate


def test_resume_reaches_the_same_weights(tmp_path):
    data = random_examples(16)
    cfg = _config(steps=5, micro_batch_size=4, save_every=1, eval_every=1, warmup_steps=1)
    full = train(tiny_llama(), SFT(), data, cfg).model
    run = Run(tmp_path / "run")
    with pytest.raises(_Killed):  # dies during step 3, after steps 1 and 2 were checkpointed
        train(tiny_llama(), SFT(), data, cfg, run=run, evaluate=_kill_at(3))
    assert (run.artifacts / "checkpoints" / "train" / "step-000002").is_dir()
    # A new process rebuilds the model from scratch; the checkpoint restores weights, optimizer, schedule, RNG.
    second = train(tiny_llama(seed=5), SFT(), data, cfg, run=run)
    assert second.steps == 5
    for (name, a), b in zip(full.named_parameters(), second.model.parameters()):
        assert torch.equal(a, b), name
    kept = sorted(p.name for p in (run.artifacts / "checkpoints" / "train").iterdir())
    assert kept == ["step-000004", "step-000005"]


def test_lora_trains_only_the_adapters():
    model = tiny_llama()
    before = _weights(model)
    result = train(model, SFT(), random_examples(8), _config(steps=2, lora=LoraConfig(r=4, target_modules=["q_proj", "v_proj"])))
    peft_model = result.model
    changed = {n for n, p in peft_model.named_parameters() if "lora_" in n}
    assert changed and all(p.requires_grad for n, p in peft_model.named_parameters() if "lora_" in n)
    assert not any(p.requires_grad for n, p in peft_model.named_parameters() if "lora_" not in n)
    base = peft_model.get_base_model()
    for name, value in base.state_dict().items():
        if "lora_" not in name and "base_layer" not in name:
            assert torch.equal(value, before[name]), name
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert any(float(p.abs().max()) > 0 for p in lora_b)  # B starts at zero; training moved it


def test_metrics_and_tensorboard_are_written(tmp_path):
    run = Run(tmp_path / "run")
    evaluations = []

    def evaluate(model):
        evaluations.append(model.training)
        return {"score": 1.0}

    train(tiny_llama(), SFT(), random_examples(8), _config(steps=4, micro_batch_size=4, tracker="tensorboard",
                                                           eval_every=2), run=run, evaluate=evaluate)
    lines = [json.loads(x) for x in (run.artifacts / "metrics" / "train.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert lines[-1]["loss"] < lines[0]["loss"]
    assert all(r["ce"] == pytest.approx(r["loss"]) for r in lines)
    evals = [json.loads(x) for x in (run.artifacts / "metrics" / "train-eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4] and evaluations == [False, False]
    assert list((run.artifacts / "tensorboard").rglob("events.out.tfevents*"))


def test_early_stopping_restores_the_best_weights():
    scores = iter([3.0, 1.0, 2.0, 2.5, 0.5])
    snapshots = []

    def evaluate(model):
        snapshots.append(_weights(model))
        return {"loss": next(scores)}

    cfg = _config(steps=5, eval_every=1, early_stopping={"metric": "loss", "patience": 2})
    result = train(tiny_llama(), SFT(), random_examples(8), cfg, evaluate=evaluate)
    assert result.stopped_early and result.steps == 4 and result.best == 1.0
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, snapshots[1][name]), name


def test_best_weights_survive_a_kill_and_resume(tmp_path):
    scores = {1: 3.0, 2: 1.0, 3: 2.0, 4: 2.5, 5: 2.6, 6: 2.7}
    evaluated_steps = iter([1, 2, 3, 4, 4, 5, 6])  # killed while evaluating step 4; the rerun replays it
    snapshots = {}

    def evaluate(model):
        step = next(evaluated_steps)
        if step in snapshots:
            return {"loss": scores[step]}
        snapshots[step] = _weights(model)
        if step == 4:
            raise _Killed
        return {"loss": scores[step]}

    cfg = _config(steps=6, eval_every=1, save_every=1, early_stopping={"metric": "loss", "patience": 5})
    run = Run(tmp_path / "run")
    with pytest.raises(_Killed):  # the best evaluation (step 2) is two steps behind the kill
        train(tiny_llama(), SFT(), random_examples(8), cfg, run=run, evaluate=evaluate)
    assert (run.artifacts / "checkpoints" / "train" / "best.pt").is_file()
    result = train(tiny_llama(seed=5), SFT(), random_examples(8), cfg, run=run, evaluate=evaluate)
    assert result.steps == 6 and result.best == 1.0 and not result.stopped_early
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, snapshots[2][name]), name
    assert any(not torch.equal(v, snapshots[2][k]) for k, v in snapshots[6].items())  # the restore mattered


def test_index_stream_visits_every_example_once_per_epoch():
    stream = IndexStream(10, seed=3)
    first = stream.step(0, 4) + stream.step(1, 4) + stream.step(2, 4)[:2]
    assert sorted(first) == list(range(10))
    assert stream.step(1, 4) == IndexStream(10, seed=3).step(1, 4)


def test_schedule_warms_up_and_decays():
    assert lr_factor(0, 10, 2, "cosine") < lr_factor(1, 10, 2, "cosine") < 1
    assert lr_factor(2, 10, 2, "cosine") == pytest.approx(1.0)
    assert lr_factor(9, 10, 0, "linear") == pytest.approx(0.1)
    assert lr_factor(5, 10, 0, "constant") == 1.0


def test_one_process_can_train_at_different_precisions():
    for precision in ("bf16", "no"):
        result = train(tiny_llama(), SFT(), random_examples(8), _config(steps=1, mixed_precision=precision))
        assert result.steps == 1 and result.metrics["loss"] > 0


def test_config_needs_a_length():
    with pytest.raises(ValueError, match="steps or epochs"):
        LoopConfig()


def test_a_lora_student_is_saved_merged_and_reloads_identically(tmp_path):
    from transformers import AutoModelForCausalLM

    from protege.train.student import save_causal_lm
    from tiny import build_tokenizer

    data = random_examples(8)
    result = train(tiny_llama(), SFT(), data, _config(steps=2, lora=LoraConfig(r=4, target_modules=["q_proj"])))
    batch = data.batch([0, 1])
    with torch.no_grad():
        expected = result.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    save_causal_lm(result.model, build_tokenizer(), tmp_path / "student")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "student").eval()
    assert not any("lora" in name for name in reloaded.state_dict())
    with torch.no_grad():
        got = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(got, expected, atol=1e-5)
