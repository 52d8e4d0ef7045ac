"""The ``prepare_teacher`` stage: fine-tune the teacher (LoRA) on the gold ``seed`` set before it annotates.

A small instruct model scoring label words is often near chance on real data; a few epochs on ~100 gold labels
make it a far better annotator of thousands of unlabelled texts ("fine-tuned teacher annotates, small student
learns"). The objective is the one annotation uses: the prompt is rendered exactly as ``annotate`` renders it,
and the next-token logits of each label's verbalizers (their first tokens) form a classification head trained
with cross-entropy on the gold label. Only LoRA adapters on the attention and MLP projections are trained.

The adapter is saved under ``artifacts/teacher_adapter/``. ``annotate`` then uses the base teacher with the
adapter merged, under the model id ``<base>+lora-<hash of the adapter weights>``, so ledger answers of the
prepared teacher are never confused with those of the base teacher or of another preparation.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pydantic import Field

from protege import console
from protege.section import Section

if TYPE_CHECKING:
    from protege.models.hf import HFTeacher
    from protege.models.ledgered import LedgeredTeacher
    from protege.pipeline import StageContext
    from protege.tasks.classification import ClassificationTask

ADAPTER = "teacher_adapter"
WEIGHTS = "adapter_model.safetensors"


class PrepareTeacherConfig(Section):
    """LoRA fine-tuning of an ``hf`` teacher on the gold seed set."""

    epochs: int = Field(3, ge=1, description="Passes over the seed set (each example once per template).")
    batch_size: int = Field(8, ge=1, description="Prompts per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate (linear decay to 0).")
    lora_rank: int = Field(8, ge=1, description="Rank of the LoRA update matrices.")
    lora_alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / rank).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input during training.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Names of the linear layers that get adapters (llama-style names by default).",
    )
    last_layers: Optional[int] = Field(
        None, ge=1, description="Adapt only the last N decoder layers; the backward pass then stops there "
        "(with a third of the layers a step costs about half as much). All layers if unset.",
    )
    max_length: int = Field(
        256, ge=16, description="Prompt tokens per training example; longer texts are shortened to fit."
    )
    bf16: bool = Field(False, description="bfloat16 autocast for the forward pass (faster on some CPUs).")


def verbalizer_heads(task: "ClassificationTask", teacher: "HFTeacher") -> list[list[int]]:
    """Per label, the first token ids of its verbalizers; labels must not share a first token."""
    from protege.tasks.classification import continuations, label_of_continuation

    heads: list[list[int]] = [[] for _ in task.labels]
    owner_of: dict[int, int] = {}
    for word, label in zip(continuations(task), label_of_continuation(task)):
        first = teacher.encode_continuation(word)[0]
        if owner_of.setdefault(first, label) != label:
            raise ValueError(
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
    from protege.tasks.classification import render

    ids = teacher.encode_prompt(render(task, text, template))
    while len(ids) > max_length and text:
        text = text[: int(len(text) * max_length / len(ids) * 0.95)]
        ids = teacher.encode_prompt(render(task, text, template))
    if len(ids) > max_length:
        raise ValueError(
            f"prepare_teacher: the prompt without any text is {len(ids)} tokens, over max_length "
            f"{max_length}; raise prepare_teacher.max_length or use fewer few-shot examples"
        )
    return ids


def label_logits(model: Any, batch: list[list[int]], heads: list[list[int]], pad_id: int) -> Any:
    """``(batch, labels)``: log-sum-exp of each label's head-token logits at the last prompt position."""
    import torch

    from protege.models.hf import last_position_logits

    last = last_position_logits(model, batch, pad_id).float()
    return torch.stack([torch.logsumexp(last[:, h], dim=-1) for h in heads], dim=-1)


def train_adapter(
    teacher: "HFTeacher", task: "ClassificationTask", texts: list[str], labels: list[int],
    cfg: PrepareTeacherConfig, out_dir: Path, seed: int,
) -> dict:
    """Train LoRA adapters on ``texts``/``labels``, save them to ``out_dir``, restore the base model."""
    import torch
    from peft import LoraConfig, get_peft_model

    heads = verbalizer_heads(task, teacher)
    examples = [(fit_prompt(task, teacher, text, t, cfg.max_length), label)
                for text, label in zip(texts, labels) for t in range(len(task.templates))]
    torch.manual_seed(seed)
    order_rng = random.Random(seed)
    layers = None
    if cfg.last_layers is not None:
        depth = teacher.model.config.num_hidden_layers
        layers = list(range(max(depth - cfg.last_layers, 0), depth))
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=cfg.target_modules, layers_to_transform=layers, task_type="CAUSAL_LM")
    model = get_peft_model(teacher.model, lora)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    steps_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / total))
    pad = teacher.tokenizer.pad_token_id
    history = []
    model.train()
    try:
        with console.progress("prepare_teacher: LoRA steps", total=total) as advance:
            for epoch in range(cfg.epochs):
                order_rng.shuffle(examples)
                losses, correct = [], 0
                for start in range(0, len(examples), cfg.batch_size):
                    batch = examples[start : start + cfg.batch_size]
                    gold = torch.tensor([label for _, label in batch])
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                        logits = label_logits(model, [ids for ids, _ in batch], heads, pad)
                    loss = torch.nn.functional.cross_entropy(logits.float(), gold)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    losses.append(loss.item())
                    correct += int((logits.argmax(-1) == gold).sum())
                    advance(1)
                history.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 4),
                                "train_accuracy": round(correct / len(examples), 4)})
                console.info(f"prepare_teacher: epoch {epoch + 1} loss {history[-1]['loss']:.3f} "
                             f"seed accuracy {history[-1]['train_accuracy']:.1%}")
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
    finally:
        model.unload()  # the base weights were never changed; only the injected LoRA layers go
        teacher.model.eval()
    return {"examples": len(examples), "steps": total, "history": history}


def prepared_model_id(base_id: str, adapter_dir: Path) -> str:
    digest = hashlib.sha256((adapter_dir / WEIGHTS).read_bytes()).hexdigest()[:12]
    return f"{base_id}+lora-{digest}"


def _hf_inner(teacher: "LedgeredTeacher") -> "HFTeacher":
    inner = getattr(teacher, "inner", teacher)
    if not all(hasattr(inner, a) for a in ("model", "tokenizer", "encode_prompt", "encode_continuation")):
        raise ValueError(
            f"prepare_teacher fine-tunes the weights, so it needs the in-process teacher (teacher.backend: "
            f"hf); this teacher is {teacher.backend!r}. Remove the prepare_teacher section or switch backend."
        )
    return inner


def teacher_for_annotation(ctx: "StageContext") -> "LedgeredTeacher":
    """The recipe's teacher, with the prepared adapter merged in when the recipe prepares the teacher."""
    if getattr(ctx.recipe, "prepare_teacher", None) is None:
        return ctx.teacher
    from peft import PeftModel

    from protege.models.hf import HFTeacher
    from protege.models.ledgered import LedgeredTeacher

    adapter = ctx.run.artifacts / ADAPTER
    if not (adapter / WEIGHTS).exists():
        raise ValueError(
            f"the recipe prepares the teacher but {adapter} holds no adapter; run stage prepare_teacher"
        )
    base = ctx.teacher
    inner = _hf_inner(base)
    merged = PeftModel.from_pretrained(inner.model, str(adapter)).merge_and_unload().eval()
    prepared = HFTeacher(merged, inner.tokenizer, model_id=prepared_model_id(inner.model_id, adapter),
                         batch_size=inner.batch_size)
    console.info(f"annotate: prepared teacher {prepared.model_id}")
    # The base teacher's weights were merged in place: shadow it so nothing asks it under the base model id.
    ctx.teacher = LedgeredTeacher(prepared, ctx.run.ledger, prices=base.prices, batch_size=base.batch_size)
    return ctx.teacher


def run(ctx: "StageContext") -> dict:
    cfg: PrepareTeacherConfig = ctx.config
    task = ctx.recipe.task
    if task is None:
        raise ValueError("stage 'prepare_teacher' needs a 'task:' section")
    seed = ctx.run.records.read("seed")
    if not len(seed):
        raise ValueError("prepare_teacher trains on gold labels but the seed table is empty; set "
                         "data.seed_size (e.g. 100) or remove the prepare_teacher section")
    teacher = _hf_inner(ctx.teacher)
    out_dir = ctx.run.artifact(ADAPTER)
    summary = train_adapter(teacher, task, seed["text"].tolist(), seed["gold_index"].astype(int).tolist(),
                            cfg, out_dir, ctx.recipe.seed)
    summary["model_id"] = prepared_model_id(teacher.model_id, out_dir)
    ctx.run.write_json("prepare_teacher.json", summary)
    (out_dir / "protege.json").write_text(json.dumps({"base_model": teacher.model_id, **cfg.model_dump()}))
    return {"examples": summary["examples"], "steps": summary["steps"],
            "final_loss": summary["history"][-1]["loss"], "model_id": summary["model_id"]}
