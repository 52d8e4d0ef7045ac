"""The one training loop: any model, any objective, any batch source, on Accelerate (CPU, DDP, FSDP, DeepSpeed).

Read it top to bottom in :func:`train`. The pieces it plugs together:

* a :class:`BatchSource` turns example indices into a micro-batch dict (offline records, cached teacher logits,
  on-policy rollouts). The loop owns the order: step ``s`` always sees the same examples, whatever the number of
  processes or the accumulation split, which is what makes resume and accumulation exact.
* an :class:`Objective` says how many loss terms (tokens, examples) a micro-batch holds, and returns the *sum*
  of its loss terms. The loop counts the terms of the whole optimizer step on every process first, then scales
  each micro-batch's sum by world_size / global_count before backward: DDP averages gradients over processes,
  so the world size turns that average back into a sum, and the update equals one big batch's mean-loss update
  however the batch was split across micro-batches and processes.
* either may define ``begin_step(step)``: the loop calls it with the 0-based optimizer step before fetching that
  step's micro-batches, resumed runs included, so a coefficient schedule or a reused rollout batch follows the
  step rather than a count of calls that a resume would reset.
* either may define ``end_step(state)``: called with a :class:`LoopState` after every optimizer step, before that
  step's evaluation and checkpoint, so per-epoch work (refining targets on the student's own predictions) sees
  the updated weights and its result is saved with the step. A part that keeps such state defines
  ``state_dict()`` and ``load_state_dict()``; it is then saved in every checkpoint and restored on resume.

Checkpoints (model, optimizer, scheduler, RNG of every process, step) are written to a temporary folder and
renamed into ``artifacts/checkpoints/<name>/step-NNNNNN``; a rerun resumes from the newest one. With early stopping
the best evaluated weights are kept in ``best.pt`` beside them, so a resumed run still ends on its best weights.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Protocol, Sequence, runtime_checkable

import torch
from pydantic import Field, model_validator
from torch import Tensor

from protege.core import console
from protege.core.section import Section
from protege.core.run import Run
from protege.train.checkpoints import Improvement, checkpoints
from protege.train.lora import LoraConfig, apply_lora
from protege.train.schedule import IndexStream, lr_factor, total_steps

Batch = dict[str, Any]


@runtime_checkable
class BatchSource(Protocol):
    """Examples addressable by index; ``batch`` collates some of them into one micro-batch of tensors."""

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int]) -> Batch: ...


@runtime_checkable
class Objective(Protocol):
    """What to minimise. The loss of a step is Σ loss terms / (number of terms over the whole step)."""

    def units(self, batch: Batch) -> int:
        """How many loss terms (completion tokens, examples, …) this micro-batch contributes."""

    def __call__(self, model: Any, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """The sum of this micro-batch's loss terms, and metrics that are sums over the same terms.

        Return the same metric names on every call: they are summed across processes by position.
        """


class EarlyStopping(Section):
    """Stop when an evaluation metric has not improved for ``patience`` evaluations."""

    metric: str = Field("loss", description="Name of a metric returned by the evaluation callback.")
    mode: Literal["min", "max"] = Field("min", description="Whether lower or higher values are better.")
    patience: int = Field(3, ge=1, description="Evaluations without improvement before stopping.")
    restore_best: bool = Field(True, description="Load the best evaluated weights back at the end.")


class LoopConfig(Section):
    """How to train: length, batch, optimiser, schedule, precision, evaluation, checkpoints and logging."""

    steps: Optional[int] = Field(None, ge=1, description="Optimizer steps to take (give steps or epochs).")
    epochs: Optional[float] = Field(None, gt=0, description="Passes over the training examples (steps or epochs).")
    micro_batch_size: int = Field(8, ge=1, description="Examples per forward pass on one process.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step on each process.")
    lr: float = Field(5e-5, gt=0, description="Peak learning rate (AdamW).")
    schedule: Literal["constant", "linear", "cosine"] = Field(
        "cosine", description="Learning-rate decay after warm-up, to zero at the last step (constant: none).")
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up from zero.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on matrices (not biases or norms).")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="Clip the gradient norm to this; None: no clip.")
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        "no", description="Autocast the forward pass (Accelerate's mixed_precision).")
    eval_every: Optional[int] = Field(None, ge=1, description="Evaluate every this many steps (and at the end).")
    save_every: Optional[int] = Field(None, ge=1, description="Checkpoint every this many steps (and at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Newest checkpoints kept on disk.")
    resume: bool = Field(True, description="Continue from the newest checkpoint in the run directory if any.")
    early_stopping: Optional[EarlyStopping] = Field(None, description="Stop when evaluation stops improving.")
    seed: int = Field(0, description="Seed of data order, initialisation of new weights, dropout and sampling.")
    log_every: int = Field(10, ge=1, description="Write training metrics every this many steps.")
    tracker: Optional[Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "aim", "clearml", "dvclive",
                              "swanlab"]] = Field(
        "tensorboard", description="Accelerate tracker receiving the metrics (any Accelerate supports; its package "
        "must be installed): tensorboard writes under artifacts/tensorboard, the others to their own service.")
    lora: Optional[LoraConfig] = Field(None, description="Train low-rank adapters instead of all weights.")

    @model_validator(mode="after")
    def _length(self) -> "LoopConfig":
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps or epochs, e.g. steps: 100")
        return self


@dataclass
class LoopState:
    """What an ``end_step`` hook is told: the step just finished and the model after it."""

    step: int  # optimizer steps done, resumed ones included
    examples_seen: int  # training examples drawn so far, over all processes
    size: int  # examples in the batch source
    model: Any  # the unwrapped model, in train mode; a hook that runs it in eval mode puts it back

    @property
    def epochs_done(self) -> int:
        """Complete passes over the source so far."""
        return self.examples_seen // self.size


@dataclass
class TrainResult:
    model: Any  # the trained model, unwrapped (a peft model when LoRA was used)
    steps: int  # optimizer steps taken in total, including those of a resumed run
    metrics: dict[str, float] = field(default_factory=dict)  # last logged training metrics
    history: list[dict[str, float]] = field(default_factory=list)  # every logged training record, in order
    evaluations: list[dict[str, float]] = field(default_factory=list)
    best: Optional[float] = None  # best early-stopping metric seen
    stopped_early: bool = False
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- pieces


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all requires_grad=False)")
    decay = [p for n, p in trainable if p.ndim >= 2]
    rest = [p for n, p in trainable if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def _forget_other_precision(mixed_precision: str) -> None:
    """Let one process train models at different precisions, one after the other.

    Accelerate keeps the precision in process-wide state and refuses a second ``Accelerator`` with another one;
    the distributed set-up lives apart (``PartialState``) and is kept.
    """
    from accelerate.state import AcceleratorState

    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _adamw(model: torch.nn.Module, config: LoopConfig) -> torch.optim.AdamW:
    groups = _param_groups(model, config.weight_decay)
    params = [p for g in groups for p in g["params"]]
    # The fused kernel updates in place: the multi-tensor default allocates temporaries the size of the
    # optimizer state (~0.3 GB more peak memory for an 80M-parameter student).
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.bfloat16, torch.float16)
                for p in params)
    return torch.optim.AdamW(groups, lr=config.lr, fused=fused or None)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


class _MetricsLog:
    """Metrics as JSON lines, ``artifacts/metrics/<name>.jsonl`` (training) and ``<name>-eval.jsonl``, written by
    the main process only."""

    def __init__(self, run: Optional[Run], name: str, enabled: bool):
        self.folder = run.artifact("metrics", "x").parent if run is not None and enabled else None
        self.name = name

    def write(self, kind: str, record: dict) -> None:
        if self.folder is not None:
            suffix = "" if kind == "train" else f"-{kind}"
            with open(self.folder / f"{self.name}{suffix}.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------- the loop


def train(
    model: Any,
    objective: Objective,
    source: BatchSource,
    config: LoopConfig,
    *,
    run: Optional[Run] = None,
    evaluate: Optional[Callable[[Any], dict[str, float]]] = None,
    name: str = "train",
) -> TrainResult:
    """Train ``model`` on ``source`` by minimising ``objective``; returns the trained (unwrapped) model.

    ``run`` receives checkpoints (``artifacts/checkpoints/<name>``), metrics (``artifacts/metrics/<name>.jsonl``)
    and tracker logs (``artifacts/tensorboard/<name>``); without it nothing is written.
    ``evaluate(model) -> metrics`` runs every ``eval_every`` steps and at the end, on every process, with the
    model in eval mode and gradients off. ``name`` separates several trainings in one run.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    began = time.perf_counter()
    set_seed(config.seed)
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    tracking = run is not None and config.tracker is not None
    _forget_other_precision(config.mixed_precision)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=config.tracker if tracking else None,
        project_dir=str(run.artifact("tensorboard", name)) if tracking else None,
    )
    world, main = accelerator.num_processes, accelerator.is_main_process
    steps = total_steps(config, len(source), world)
    optimizer = _adamw(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, steps, config.warmup_steps, config.schedule))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    for part in (source, objective):
        if hasattr(part, "state_dict") and hasattr(part, "load_state_dict"):
            accelerator.register_for_checkpointing(part)
    if tracking:
        accelerator.init_trackers(name, config={k: v for k, v in config.model_dump().items()
                                                if isinstance(v, (int, float, str, bool))})
    log = _MetricsLog(run, name, main)
    ckpt_root = run.artifact("checkpoints", name, "x").parent if run is not None else None
    improvement = Improvement(config.early_stopping, ckpt_root, main)

    start = 0
    previous = checkpoints(ckpt_root) if ckpt_root is not None and config.resume else []
    if previous:
        accelerator.load_state(str(previous[-1]))
        state = json.loads((previous[-1] / "trainer_state.json").read_text())
        start = state["step"]
        improvement.load(state["early_stopping"])
        console.info(f"{name}: resuming from {previous[-1].name} (step {start} of {steps})")

    def save(step: int) -> None:
        final = ckpt_root / f"step-{step:06d}"
        tmp = ckpt_root / f"step-{step:06d}.tmp"
        if main and tmp.exists():
            shutil.rmtree(tmp)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp), safe_serialization=False)
        accelerator.wait_for_everyone()  # every process has written its RNG state before the rename
        if main:
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step,
                                                                "early_stopping": improvement.state()}))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in checkpoints(ckpt_root)[: -config.keep_checkpoints]:
                shutil.rmtree(old)
        accelerator.wait_for_everyone()

    def run_evaluation(step: int) -> bool:
        inner = accelerator.unwrap_model(model)
        inner.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in evaluate(inner).items()}
        inner.train()
        result.evaluations.append({"step": step, **metrics})
        log.write("eval", {"step": step, **metrics})
        if tracking:
            accelerator.log({f"eval/{k}": v for k, v in metrics.items()}, step=step)
        return improvement.update(metrics, inner, step)

    result = TrainResult(model=None, steps=start)
    stream = IndexStream(len(source), config.seed)
    per_process = config.micro_batch_size * config.grad_accum
    rank = accelerator.process_index
    model.train()
    window = {"loss": 0.0, "units": 0.0, "time": time.perf_counter(), "steps": 0}
    sums: dict[str, float] = {}
    with console.progress(f"{name}", total=steps - start) as advance:
        for step in range(start, steps):
            for part in (source, objective):
                if hasattr(part, "begin_step"):
                    part.begin_step(step)
            # 1. This process's share of the step, all micro-batches fetched first so their size is known.
            mine = stream.step(step, per_process * world)[rank * per_process:(rank + 1) * per_process]
            micro = [_to_device(source.batch(mine[i:i + config.micro_batch_size]), accelerator.device)
                     for i in range(0, per_process, config.micro_batch_size)]
            # 2. The global number of loss terms of this step, before any backward.
            units = torch.tensor(float(sum(objective.units(b) for b in micro)), device=accelerator.device)
            global_units = accelerator.reduce(units, "sum").clamp_min(1.0)
            scale = world / global_units
            # 3. Forward and backward per micro-batch; gradients are synchronised on the last one only.
            step_loss = torch.zeros((), device=accelerator.device)
            for i, batch in enumerate(micro):
                sync = i == len(micro) - 1
                with nullcontext() if sync else accelerator.no_sync(model):
                    loss_sum, metrics = objective(model, batch)
                    accelerator.backward(loss_sum * scale)
                step_loss += loss_sum.detach()
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
            grad_norm = (accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                         if config.max_grad_norm is not None else None)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            advance(1)
            done = step + 1
            result.steps = done
            hooked = [part for part in (source, objective) if hasattr(part, "end_step")]
            if hooked:
                state = LoopState(done, done * per_process * world, len(source), accelerator.unwrap_model(model))
                for part in hooked:
                    part.end_step(state)
            # 4. Metrics: sums over the logging window, divided by the terms they cover on all processes.
            window["loss"] += float(accelerator.reduce(step_loss, "sum"))
            window["units"] += float(global_units)
            window["steps"] += 1
            if done % config.log_every == 0 or done == steps:
                keys = sorted(sums)
                reduced = accelerator.reduce(torch.tensor([sums[k] for k in keys] or [0.0],
                                                          device=accelerator.device), "sum").tolist()
                record = {"step": done, "loss": window["loss"] / max(window["units"], 1.0),
                          **{k: v / max(window["units"], 1.0) for k, v in zip(keys, reduced)},
                          "lr": scheduler.get_last_lr()[0], "units_per_step": window["units"] / window["steps"],
                          "seconds_per_step": (time.perf_counter() - window["time"]) / window["steps"]}
                if grad_norm is not None:
                    record["grad_norm"] = float(grad_norm)
                result.metrics = record
                result.history.append(record)
                log.write("train", record)
                if tracking:
                    accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"}, step=done)
                window = {"loss": 0.0, "units": 0.0, "time": time.perf_counter(), "steps": 0}
                sums = {}
            stop = False
            if evaluate is not None and ((config.eval_every and done % config.eval_every == 0) or done == steps):
                stop = run_evaluation(done)
            if ckpt_root is not None and ((config.save_every and done % config.save_every == 0)
                                          or done == steps or stop):
                save(done)
            if stop:
                result.stopped_early = True
                console.info(f"{name}: stopping early at step {done}: {config.early_stopping.metric} has not "
                             f"improved for {config.early_stopping.patience} evaluations")
                break

    inner = accelerator.unwrap_model(model)
    if improvement.best_state is not None:
        inner.load_state_dict(improvement.best_state)
    if tracking:
        accelerator.end_training()
    inner.eval()
    result.model, result.best = inner, improvement.best
    result.seconds = time.perf_counter() - began
    return result
