"""The ``prepare_teacher`` stage: fine-tune the teacher (LoRA) on the gold ``seed`` set before it annotates.

A small instruct model scoring label words is often near chance on real data; a few epochs on ~100 gold labels
make it a far better annotator of thousands of unlabelled texts ("fine-tuned teacher annotates, small student
learns"). The objective is the one annotation uses: the prompt is rendered exactly as ``annotate`` renders it,
and the next-token logits of each label's verbalizers (their first tokens) form a classification head trained
with cross-entropy on the gold label. Only LoRA adapters on the attention and MLP projections are trained, on
the one training loop (:mod:`protege.train.loop`) with its LoRA settings.

The adapter is saved under ``artifacts/teacher_adapter/``. Every later stage then gets the base teacher with the
adapter merged (the run's teacher route calls :func:`prepared_teacher`), under the model id ``<base>+lora-<hash of the adapter weights>``, so ledger answers of the
prepared teacher are never confused with those of the base teacher or of another preparation.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from pydantic import Field, model_validator

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import Section
from protege.tasks.classify import tables
from protege.train.lora import LoraConfig
from protege.train.loop import LoopConfig, train
from protege.tasks.classify.task import continuations, label_of_continuation
from protege.tasks.classify.task import render
from protege.models.hf import last_position_logits
from protege.models.hf import HFTeacher

if TYPE_CHECKING:
    from protege.core.run import Run
    from protege.models.hf import HFTeacher
    from protege.stage import StageContext
    from protege.tasks.classify.task import ClassificationTask

ADAPTER = tables.TEACHER_ADAPTER
NAME = "prepare_teacher"  # the training's name: checkpoints and metrics under artifacts/*/prepare_teacher
WEIGHTS = "adapter_model.safetensors"


_LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Teacher preparation's own defaults: a few epochs over ~100 prompts at a LoRA learning rate, no clipping. A
# recipe's loop: or lora: keys are laid over these, so `loop: {epochs: 4}` keeps the rest.
DEFAULT_LOOP = {"epochs": 3, "micro_batch_size": 8, "lr": 1e-3, "schedule": "linear", "max_grad_norm": None,
                "tracker": None, "log_every": 5}
DEFAULT_LORA = {"r": 8, "alpha": 16.0, "dropout": 0.05, "target_modules": _LLAMA_LINEAR}


class PrepareTeacherConfig(Section):
    """LoRA fine-tuning of an ``hf`` teacher on the gold seed set, on the one training loop."""

    loop: LoopConfig = Field(
        default_factory=lambda: LoopConfig(**DEFAULT_LOOP),
        description=f"The training loop's settings; keys given here are laid over {DEFAULT_LOOP}. An epoch sees "
        "each seed example once per template.")
    lora: LoraConfig = Field(
        default_factory=lambda: LoraConfig(**DEFAULT_LORA),
        description=f"The adapters (the loop's LoRA settings); keys given here are laid over {DEFAULT_LORA}.")
    max_length: int = Field(
        256, ge=16, description="Prompt tokens per training example; longer texts are shortened to fit."
    )

    @model_validator(mode="before")
    @classmethod
    def _over_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key, default in (("loop", DEFAULT_LOOP), ("lora", DEFAULT_LORA)):
                if isinstance(data.get(key), dict):
                    data[key] = {**default, **data[key]}
        return data


def verbalizer_heads(task: "ClassificationTask", teacher: "HFTeacher") -> list[list[int]]:
    """Per label, the first token ids of its verbalizers; labels must not share a first token."""
    heads: list[list[int]] = [[] for _ in task.labels]
    owner_of: dict[int, int] = {}
    for word, label in zip(continuations(task), label_of_continuation(task)):
        first = teacher.encode_continuation(word)[0]
        if owner_of.setdefault(first, label) != label:
            raise UserError(
                f"prepare_teacher: verbalizers {word!r} ({task.labels[label]}) and one of "
                f"{task.labels[owner_of[first]]} start with the same token, so one next-token head cannot "
                "tell them apart; choose task.verbalizers that differ in their first word piece"
            )
        if first not in heads[label]:
            heads[label].append(first)
    return heads


def fit_prompt(
    task: "ClassificationTask", teacher: "HFTeacher", text: str, template: int, max_length: int
) -> list[int]:
    """Token ids of the rendered prompt, the text shortened until the prompt fits in ``max_length`` tokens."""
    ids = teacher.encode_prompt(render(task, text, template))
    while len(ids) > max_length and text:
        text = text[: int(len(text) * max_length / len(ids) * 0.95)]
        ids = teacher.encode_prompt(render(task, text, template))
    if len(ids) > max_length:
        raise UserError(
            f"prepare_teacher: the prompt without any text is {len(ids)} tokens, over max_length "
            f"{max_length}; raise prepare_teacher.max_length or use fewer few-shot examples"
        )
    return ids


def label_logits(model: Any, batch: list[list[int]], heads: list[list[int]], pad_id: int) -> Any:
    """``(batch, labels)``: log-sum-exp of each label's head-token logits at the last prompt position."""
    import torch


    last = last_position_logits(model, batch, pad_id).float()
    return torch.stack([torch.logsumexp(last[:, h], dim=-1) for h in heads], dim=-1)


class _SeedPrompts:
    """The loop's batch source: rendered seed prompts (token ids) and their gold label indices."""

    def __init__(self, examples: list[tuple[list[int], int]]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int]) -> dict[str, Any]:
        import torch

        picked = [self.examples[i] for i in indices]
        return {"sequences": [ids for ids, _ in picked], "labels": torch.tensor([label for _, label in picked])}


class _LabelHead:
    """The loop's objective: cross-entropy of the label-word logits at the prompt's last position, per example."""

    def __init__(self, heads: list[list[int]], pad_id: int):
        self.heads, self.pad_id = heads, pad_id

    def units(self, batch: dict[str, Any]) -> int:
        return len(batch["labels"])

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        import torch

        logits = label_logits(model, batch["sequences"], self.heads, self.pad_id)
        gold = batch["labels"].to(logits.device)
        loss = torch.nn.functional.cross_entropy(logits, gold, reduction="sum")
        return loss, {"train_accuracy": float((logits.argmax(-1) == gold).sum())}


def train_adapter(
    teacher: "HFTeacher", task: "ClassificationTask", texts: list[str], labels: list[int],
    cfg: PrepareTeacherConfig, out_dir: Path, seed: int, run: Optional["Run"] = None,
) -> dict:
    """Train LoRA adapters on ``texts``/``labels`` with the training loop, save them to ``out_dir``, restore the
    base model (its weights are never changed)."""
    heads = verbalizer_heads(task, teacher)
    examples = [(fit_prompt(task, teacher, text, t, cfg.max_length), label)
                for text, label in zip(texts, labels) for t in range(len(task.templates))]
    loop = cfg.loop.model_copy(update={"seed": seed, "lora": cfg.lora})
    result = train(teacher.model, _LabelHead(heads, teacher.tokenizer.pad_token_id), _SeedPrompts(examples), loop,
                   run=run, name=NAME)
    try:
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        result.model.save_pretrained(tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        result.model.unload()  # the base weights were never changed; only the injected LoRA layers go
        teacher.model.eval()
    if run is not None:  # resume points only serve a crash mid-preparation; the adapter is saved now
        shutil.rmtree(run.artifacts / "checkpoints" / NAME, ignore_errors=True)
    history = [{"step": r["step"], "loss": round(r["loss"], 4), "train_accuracy": round(r["train_accuracy"], 4)}
               for r in result.history]
    console.info(f"prepare_teacher: {result.steps} steps, final loss {history[-1]['loss']:.3f}, seed accuracy "
                 f"{history[-1]['train_accuracy']:.1%} (last {loop.log_every} steps)")
    return {"examples": len(examples), "steps": result.steps, "history": history}


def prepared_model_id(base_id: str, adapter_dir: Path) -> str:
    digest = hashlib.sha256((adapter_dir / WEIGHTS).read_bytes()).hexdigest()[:12]
    return f"{base_id}+lora-{digest}"


def _hf_backend(teacher: Any) -> "HFTeacher":
    if not all(hasattr(teacher, a) for a in ("model", "tokenizer", "encode_prompt", "encode_continuation")):
        raise UserError(
            f"prepare_teacher fine-tunes the weights, so it needs the in-process teacher (teacher.backend: "
            f"hf); this teacher is {teacher.backend!r}. Remove the prepare_teacher section or switch backend."
        )
    return teacher


def prepared_teacher(base: Any, run: "Run") -> "HFTeacher":
    """The base teacher with the prepared adapter merged in, under the adapter-hashed model id.

    The merge changes the base weights in place, so the route that calls this forgets the base teacher: nothing
    can ask the merged weights a question under the base model id.
    """
    from peft import PeftModel


    adapter = run.artifacts / ADAPTER
    if not (adapter / WEIGHTS).exists():
        raise UserError(f"the recipe prepares the teacher but {adapter} holds no adapter; "
                         "run `protege run RECIPE --force prepare_teacher`")
    inner = _hf_backend(base)
    merged = PeftModel.from_pretrained(inner.model, str(adapter)).merge_and_unload().eval()
    prepared = HFTeacher(merged, inner.tokenizer, model_id=prepared_model_id(inner.model_id, adapter),
                         batch_size=inner.batch_size)
    console.info(f"prepared teacher {prepared.model_id}")
    return prepared


def run(ctx: "StageContext") -> dict:
    cfg: PrepareTeacherConfig = ctx.config
    task = ctx.require_task()
    seed = ctx.run.records.read(tables.SEED)
    if not len(seed):
        raise UserError("prepare_teacher trains on gold labels but the seed table is empty; set "
                         "data.seed_size (e.g. 100) or remove the prepare_teacher section")
    teacher = _hf_backend(ctx.route.backend())
    out_dir = ctx.run.artifact(ADAPTER)
    summary = train_adapter(teacher, task, seed["text"].tolist(), seed["gold_index"].astype(int).tolist(),
                            cfg, out_dir, ctx.seed, run=ctx.run)
    summary["model_id"] = prepared_model_id(teacher.model_id, out_dir)
    ctx.run.write_json(tables.PREPARE_SUMMARY, summary)
    (out_dir / "protege.json").write_text(json.dumps({"base_model": teacher.model_id, **cfg.model_dump(mode="json")}))
    return {"examples": summary["examples"], "steps": summary["steps"],
            "final_loss": summary["history"][-1]["loss"], "model_id": summary["model_id"]}
