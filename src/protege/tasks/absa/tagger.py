"""The ABSA student: an encoder (MiniLM by default) tagging word pieces with BIO × polarity, on the one loop.

The pieces :func:`protege.train.loop.train` runs:

- :class:`TaggerSource` tokenises sentences with offset mappings and builds per-piece target distributions
  (:class:`~protege.tasks.absa.tags.TagScheme`), a mask of the labelled pieces and a weight per sentence
  (synthetic rows are down-weighted by giving them ``weight < 1``). With ``token_drop > 0`` it replaces that
  share of the labelled pieces' inputs with the mask (or unknown) token, the input noise of noisy
  self-training; the targets stay, so the model learns to tag a piece from its context.
- :class:`TaggerObjective`: one loss term per labelled piece, the cross-entropy ``-Σ_l q_l log p_l`` against
  its target distribution times its sentence's weight; returns the *sum* (the loop divides by the step's
  count).

:func:`fit_tagger` trains a fresh tagger (dropout optionally raised for noisy self-training),
:func:`predict_spans` decodes sentences to :class:`~protege.tasks.absa.tags.TaggedSpan`, and
:func:`save_tagger` writes a plain transformers folder (``id2label`` set) that
``AutoModelForTokenClassification.from_pretrained`` and ``AutoTokenizer.from_pretrained`` load as they are.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from protege.core.run import Run
from protege.core.section import Section
from protege.tasks.absa.metrics import labels_of, pair_scores
from protege.tasks.absa.tags import TaggedSpan, TagScheme
from protege.tasks.absa.task import AbsaExample, Aspect
from protege.train.loop import EarlyStopping, LoopConfig, TrainResult
from protege.train.loop import train as train_loop

TAGGER_CARD = "protege-tagger.json"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _default_loop() -> LoopConfig:
    return LoopConfig(
        epochs=20, lr=1e-4, micro_batch_size=16, schedule="linear", warmup_steps=10, weight_decay=0.01,
        eval_every=25, early_stopping=EarlyStopping(metric="dev_pair_f1", mode="max", patience=4),
        log_every=10,
    )


class TaggerConfig(Section):
    """How the tagger student is built and trained."""

    student: str = Field("minilm-l6", description="Encoder to fine-tune: embedded name, folder or hub id.")
    max_length: int = Field(128, ge=8, description="Word pieces per sentence; aspects past the cut are lost.")
    token_drop: float = Field(
        0.0, ge=0, lt=1, description="Share of labelled pieces whose input is replaced by the mask token "
        "(noisy self-training's input noise); 0 for plain training.",
    )
    dropout: Optional[float] = Field(
        None, ge=0, lt=1, description="Dropout probability set on every dropout layer of the student (model "
        "noise for noisy self-training); None keeps the model's own.",
    )
    loop: LoopConfig = Field(
        default_factory=_default_loop,
        description="The training loop; early stopping reads dev_pair_f1 (pair F1 on the dev sentences).",
    )


@dataclass(frozen=True)
class TaggedExample:
    """A training sentence: its aspects, its weight, and optionally a polarity distribution per aspect."""

    sentence: str
    aspects: tuple[Aspect, ...]
    weight: float = 1.0
    distributions: Optional[tuple[Optional[Mapping[str, float]], ...]] = None

    @classmethod
    def of(cls, example: AbsaExample, weight: float = 1.0) -> "TaggedExample":
        return cls(example.sentence, example.aspects, weight)


def _encode_text(tokenizer: Any, sentences: Sequence[str], max_length: int) -> Any:
    return tokenizer(list(sentences), truncation=True, max_length=max_length, padding=True,
                     return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")


def _keep(enc: Any) -> Tensor:
    """Pieces of real text: attended, not special."""
    return enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()


@dataclass
class TaggerSource:
    """The loop's batch source: sentences -> input ids, piece targets (B, T, L), mask (B, T), weights (B,)."""

    examples: Sequence[TaggedExample]
    tokenizer: Any
    scheme: TagScheme
    max_length: int = 128
    token_drop: float = 0.0
    seed: int = 0
    # Aspects the tags could not hold (truncated or overlapping), summed over the batches built so far.
    lost: int = field(default=0, init=False)
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError("the tagger needs a fast tokenizer (offset mappings); this one is not")
        self._generator = torch.Generator().manual_seed(self.seed)

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        chosen = [self.examples[i] for i in indices]
        enc = _encode_text(self.tokenizer, [e.sentence for e in chosen], self.max_length)
        keep = _keep(enc)
        targets, masks = [], []
        for row, example in enumerate(chosen):
            t, m, lost = self.scheme.encode(enc["offset_mapping"][row].tolist(), example.aspects,
                                            keep[row].tolist(), example.distributions)
            targets.append(t)
            masks.append(m)
            self.lost += lost
        batch = {k: enc[k] for k in MODEL_INPUTS if k in enc}
        mask = torch.from_numpy(np.stack(masks))
        if self.token_drop > 0:
            noise = self.tokenizer.mask_token_id if self.tokenizer.mask_token_id is not None \
                else self.tokenizer.unk_token_id
            drop = (torch.rand(mask.shape, generator=self._generator) < self.token_drop) & mask
            batch["input_ids"] = batch["input_ids"].masked_fill(drop, noise)
        batch["targets"] = torch.from_numpy(np.stack(targets))
        batch["target_mask"] = mask
        batch["weights"] = torch.tensor([e.weight for e in chosen], dtype=torch.float32)
        return batch


class TaggerObjective:
    """Σ over labelled pieces of weight × cross-entropy against the piece's target distribution."""

    def units(self, batch: dict[str, Tensor]) -> int:
        return int(batch["target_mask"].sum())

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(**{k: batch[k] for k in MODEL_INPUTS if k in batch}).logits
        mask, targets = batch["target_mask"], batch["targets"]
        per_piece = -(targets * torch.log_softmax(logits.float(), -1)).sum(-1)  # (B, T)
        total = (per_piece * batch["weights"][:, None] * mask).sum()
        agree = ((logits.argmax(-1) == targets.argmax(-1)) & mask).sum()
        return total, {"tag_accuracy": float(agree)}


@torch.no_grad()
def predict_spans(model: Any, tokenizer: Any, scheme: TagScheme, sentences: Sequence[str], *,
                  batch_size: int = 32, max_length: int = 128) -> list[list[TaggedSpan]]:
    """The spans the tagger finds in each sentence; the model is left in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out: list[list[TaggedSpan]] = []
    for start in range(0, len(sentences), batch_size):
        chunk = list(sentences[start : start + batch_size])
        enc = _encode_text(tokenizer, chunk, max_length)
        logits = model(**{k: enc[k].to(device) for k in MODEL_INPUTS if k in enc}).logits
        probs = torch.softmax(logits.float(), -1).cpu().numpy()
        keep = _keep(enc).tolist()
        for row, sentence in enumerate(chunk):
            out.append(scheme.decode(sentence, enc["offset_mapping"][row].tolist(), probs[row], keep[row]))
    return out


def predict_aspects(model: Any, tokenizer: Any, scheme: TagScheme, examples: Sequence[AbsaExample],
                    **kwargs: Any) -> dict[str, tuple[Aspect, ...]]:
    """Predicted labels keyed by example id, ready for :mod:`protege.tasks.absa.metrics`."""
    spans = predict_spans(model, tokenizer, scheme, [e.sentence for e in examples], **kwargs)
    return {e.id: tuple(s.aspect(e.sentence) for s in found) for e, found in zip(examples, spans)}


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Set every dropout layer's probability (the config's dropout fields are only read at construction)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def load_tagger(student: str, scheme: TagScheme, dropout: Optional[float] = None) -> tuple[Any, Any]:
    """A fresh token-classification head on ``student`` with the scheme's labels, and its tokenizer."""
    from protege.models.zoo import load_encoder_classifier

    model, tokenizer = load_encoder_classifier(student, len(scheme.labels), scheme.labels, head="token")
    if dropout is not None:
        set_dropout(model, dropout)
    return model, tokenizer


def save_tagger(model: Any, tokenizer: Any, folder: Path, scheme: TagScheme,
                info: Optional[dict[str, Any]] = None) -> Path:
    """A plain transformers folder (weights, config with id2label, tokenizer) and a card of what it learnt."""
    if [model.config.id2label.get(i) for i in range(model.config.num_labels)] != scheme.labels:
        raise ValueError(f"model labels {model.config.id2label} differ from the scheme's {scheme.labels}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    card = {"polarities": list(scheme.polarities), "labels": scheme.labels, **(info or {})}
    (folder / TAGGER_CARD).write_text(json.dumps(card, indent=2, default=str))
    return folder


@dataclass
class FittedTagger:
    model: Any
    tokenizer: Any
    result: TrainResult
    lost_aspects: int  # training aspects the tags could not hold (truncated or overlapping), over all batches


def fit_tagger(config: TaggerConfig, train: Sequence[TaggedExample], scheme: TagScheme, *,
               dev: Sequence[AbsaExample] = (), run: Optional[Run] = None, name: str = "tagger",
               seed: int = 0) -> FittedTagger:
    """Fine-tune a fresh ``config.student`` on ``train``; with ``dev``, keep the best dev pair-F1 weights."""
    torch.manual_seed(seed)  # the new tagging head
    model, tokenizer = load_tagger(config.student, scheme, config.dropout)
    gold = labels_of(dev)

    def evaluate(m: Any) -> dict[str, float]:
        pred = predict_aspects(m, tokenizer, scheme, dev, max_length=config.max_length)
        return {"dev_pair_f1": pair_scores(gold, pred).f1}

    loop = config.loop.model_copy(update={"seed": seed})
    if not dev and loop.early_stopping is not None:
        loop = loop.model_copy(update={"early_stopping": None, "eval_every": None})
    source = TaggerSource(train, tokenizer, scheme, config.max_length, config.token_drop, seed)
    result = train_loop(model, TaggerObjective(), source, loop, run=run, evaluate=evaluate if dev else None,
                        name=name)
    if run is not None:
        # Left behind, the checkpoints would make the next fit under this name resume instead of training.
        shutil.rmtree(run.artifacts / "checkpoints" / name, ignore_errors=True)
    return FittedTagger(result.model, tokenizer, result, source.lost)
