"""Training an encoder classifier (MiniLM by default) on a teacher's labels: the pieces the training loop runs.

Every training example carries exactly one target: the teacher's label distribution (``soft``), or a class id
(``label``): the teacher's top label when training on hard labels, or a gold label when the recipe allows gold.
Soft rows are scored with the tempered KL of :func:`protege.losses.classification_kd`; labelled rows with the same
function at ``hard_weight=1`` (plain cross-entropy). With ``targets: candidates`` every example also carries a
candidate set and :class:`~protege.tasks.classify.candidates.CandidateObjective` trains on it instead. The objective returns a sum and a count, so the loop can
normalise over the whole accumulated step rather than per micro-batch.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor

from protege.losses import classification_kd
from protege.losses.candidates import restrict
from protege.core.section import PATH, Section
from protege.core.run import Run
from protege.train.loop import EarlyStopping, LoopConfig, TrainResult
from protege.train.loop import train as train_loop
from protege.tasks.classify import tables
from protege.tasks.classify.candidates import CandidateObjective, start_targets
from protege.models.zoo import load_encoder_classifier

STUDENT_CARD = "protege-student.json"


def _default_loop() -> LoopConfig:
    # MiniLM underfits a few hundred examples at the usual 5e-5 for 3 epochs; 2e-4 and more passes learn them.
    return LoopConfig(
        epochs=6, lr=2e-4, micro_batch_size=32, schedule="linear", warmup_steps=5, weight_decay=0.01,
        eval_every=20, early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=3), log_every=10,
    )


class ClassifierTrainConfig(Section):
    """How the student classifier is trained."""

    student: str = Field("minilm-l6", description="Encoder to fine-tune: embedded name, local folder or hub id.",
                         json_schema_extra=PATH)
    targets: Literal["soft", "hard", "candidates"] = Field(
        "soft", description="soft: the teacher's label distribution (KD loss); hard: its top label (cross-entropy); "
        "candidates: its candidate set, with a target that starts at the teacher's distribution on the set and is "
        "refined toward the student's own predictions on it each epoch (CanDist)."
    )
    candidate_momentum: float = Field(
        0.7, ge=0, le=1, description="targets candidates: share of the old target kept at each epoch's end; the "
        "rest moves to the student's prediction on the set (1: the teacher's target for ever, 0: the student's)."
    )
    use_gold: bool = Field(
        False, description="Also train on the gold labels of the seed table. Off by default: gold is used for "
        "training only when the recipe says so."
    )
    gold_repeats: int = Field(
        1, ge=1, description="With use_gold: how many times each gold seed example appears per epoch, so a small "
        "seed is not drowned by thousands of teacher-labelled texts."
    )
    temperature: float = Field(2.0, gt=0, description="Softening temperature of the KD loss (1 = none).")
    max_length: int = Field(128, ge=8, description="Tokens per text; longer texts are truncated.")
    gold_seed_baseline: bool = Field(
        True, description="Also train a student on the gold seed alone, to compare in the report: same trainer, "
        "as many optimizer steps as the student (more epochs over the small seed), best dev weights kept."
    )
    learning_curve: list[float] = Field(
        default_factory=lambda: [0.25, 0.5],
        description="Fractions of the training examples on which extra students are trained (nested subsets), "
        "for the report's accuracy-against-examples plot; [] skips them.",
    )
    dev_target: Literal["auto", "gold", "teacher"] = Field(
        "auto", description="What early stopping and the kept weights aim at on the dev split: its gold labels, or "
        "the teacher's labels there (agreement with the teacher); auto: gold when every dev text has a gold label. "
        "A near-chance teacher that gives one label to most dev texts makes agreement reward a student that "
        "answers that label always."
    )
    train_table: Optional[str] = Field(
        tables.SELECTED, description="Record table the teacher-labelled training examples come from; null: none, "
        "the gold seed alone (needs use_gold), e.g. when augment's written texts are the only teacher data."
    )

    @model_validator(mode="after")
    def _something_to_learn(self) -> "ClassifierTrainConfig":
        if self.train_table is None and not self.use_gold:
            raise ValueError("train.train_table is null and train.use_gold is false: the student would have no "
                             "training examples; set use_gold: true or name a teacher-labelled table")
        return self
    loop: LoopConfig = Field(
        default_factory=_default_loop,
        description="The training loop: epochs or steps, batch, lr, evaluation and early stopping (metric "
        "dev_accuracy: on the dev split, against the labels dev_target names).",
    )

    def named_models(self) -> dict[str, str]:
        """The encoder to check before anything is spent."""
        return {"student": self.student}


@dataclass
class Examples:
    """Texts with one target each: a probability row in ``soft`` (NaN row when absent) or a class id in ``labels``
    (-100 when absent); and each text's candidate set in ``sets`` (all labels for a soft row and the label alone
    for a labelled row unless given: :meth:`from_candidates`)."""

    texts: list[str]
    soft: np.ndarray  # (N, C) float, NaN rows where the example has a hard label instead
    labels: np.ndarray  # (N,) int64, -100 where the example has a soft target instead
    sets: Optional[np.ndarray] = None  # (N, C) bool: labels the example may have; filled in when None

    def __post_init__(self) -> None:
        n = len(self.texts)
        if self.soft.shape[0] != n or self.labels.shape != (n,):
            raise ValueError(f"Examples: {n} texts but soft {self.soft.shape} and labels {self.labels.shape}")
        has_soft = ~np.isnan(self.soft).any(1)
        has_label = self.labels != -100
        if (has_soft == has_label).any():
            bad = int(np.flatnonzero(has_soft == has_label)[0])
            raise ValueError(f"example {bad} ({self.texts[bad][:40]!r}) needs exactly one of a soft target or a label")
        if self.sets is None:
            self.sets = np.ones(self.soft.shape, dtype=bool)
            self.sets[has_label] = np.eye(self.num_labels, dtype=bool)[self.labels[has_label]]
        if self.sets.shape != self.soft.shape or not self.sets.any(1).all():
            raise ValueError(f"Examples: candidate sets {self.sets.shape} must be (N, C) = {self.soft.shape} with "
                             "at least one label per row")

    @property
    def num_labels(self) -> int:
        return self.soft.shape[1]

    def __len__(self) -> int:
        return len(self.texts)

    @classmethod
    def from_soft(cls, texts: Sequence[str], probs: Any) -> "Examples":
        probs = np.asarray([list(p) for p in probs], dtype=np.float64)
        return cls(list(texts), probs, np.full(len(texts), -100, dtype=np.int64))

    @classmethod
    def from_labels(cls, texts: Sequence[str], labels: Sequence[int], num_labels: int) -> "Examples":
        return cls(list(texts), np.full((len(texts), num_labels), np.nan), np.asarray(labels, dtype=np.int64))

    @classmethod
    def from_candidates(cls, texts: Sequence[str], probs: Any, sets: Sequence[Sequence[int]]) -> "Examples":
        """Teacher distributions restricted to each text's candidate set (label indices) and renormalised there."""
        probs = np.asarray([list(p) for p in probs], dtype=np.float64).reshape(len(texts), -1)
        mask = np.zeros(probs.shape, dtype=bool)
        for row, members in enumerate(sets):
            mask[row, list(members)] = True
        restricted = restrict(torch.from_numpy(probs), torch.from_numpy(mask)).numpy()
        return cls(list(texts), restricted, np.full(len(texts), -100, dtype=np.int64), mask)

    def subset(self, index: Sequence[int]) -> "Examples":
        idx = np.asarray(index, dtype=np.int64)
        return Examples([self.texts[i] for i in idx], self.soft[idx], self.labels[idx], self.sets[idx])

    def __add__(self, other: "Examples") -> "Examples":
        if other.num_labels != self.num_labels:
            raise ValueError(f"cannot join examples over {self.num_labels} and {other.num_labels} classes")
        return Examples(self.texts + other.texts, np.concatenate([self.soft, other.soft]),
                        np.concatenate([self.labels, other.labels]), np.concatenate([self.sets, other.sets]))


@dataclass
class ExampleSource:
    """The loop's batch source: tokenises the chosen examples into one padded micro-batch (padded only to its
    longest text)."""

    examples: Examples
    tokenizer: Any
    max_length: int

    def __len__(self) -> int:
        return len(self.examples)

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        chosen = self.examples.subset(indices)
        batch = dict(self.tokenizer(chosen.texts, truncation=True, max_length=self.max_length, padding=True,
                                    return_tensors="pt"))
        batch["soft"] = torch.tensor(chosen.soft, dtype=torch.float32)
        batch["labels"] = torch.tensor(chosen.labels, dtype=torch.long)
        batch["index"] = torch.tensor(list(indices), dtype=torch.long)  # where per-example state is kept
        return batch


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


@dataclass
class ClassifierObjective:
    """Summed loss over a micro-batch's examples (one loss term each) and how many agree with their target."""

    temperature: float

    def units(self, batch: dict[str, Tensor]) -> int:
        return int(batch["labels"].shape[0])

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(**model_inputs(batch)).logits
        soft, labels = batch["soft"], batch["labels"]
        has_label = labels != -100
        has_soft = ~has_label
        total = logits.new_zeros(())
        if has_soft.any():
            total = total + classification_kd(logits[has_soft], soft[has_soft], temperature=self.temperature,
                                              num_items=1)
        if has_label.any():
            n_classes = logits.shape[-1]
            # hard_weight=1 makes the KD loss plain cross-entropy; the uniform row only fills the unused soft slot.
            uniform = logits.new_full((int(has_label.sum()), n_classes), 1.0 / n_classes).detach()
            total = total + classification_kd(logits[has_label], uniform, labels[has_label], hard_weight=1.0,
                                              num_items=1)
        target = torch.where(has_label, labels, soft.nan_to_num(0).argmax(-1))
        return total, {"target_accuracy": float((logits.argmax(-1) == target).sum())}


@torch.no_grad()
def predict_probs(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 64,
                  max_length: int = 128) -> np.ndarray:
    """(N, C) class probabilities of ``model`` for ``texts``; the model is left in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[start : start + batch_size]), truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        logits = model(**model_inputs({k: v.to(device) for k, v in enc.items()})).logits
        out.append(torch.softmax(logits.float(), -1).cpu().numpy())
    if not out:
        return np.zeros((0, model.config.num_labels))
    return np.concatenate(out)


def save_student(model: Any, tokenizer: Any, out: Path, *, labels: list[str], info: dict[str, Any]) -> None:
    """The student as an ordinary transformers folder, plus a card saying what it was trained on."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / STUDENT_CARD).write_text(json.dumps({"labels": labels, **info}, indent=2, default=str))


def load_student(path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A saved student: model (eval mode), tokenizer and its card."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    card_path = Path(path) / STUDENT_CARD
    if not card_path.exists():
        raise FileNotFoundError(f"{path} holds no trained student ({STUDENT_CARD} missing); run the train stage first")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    model.eval()
    return model, AutoTokenizer.from_pretrained(path), json.loads(card_path.read_text())


@dataclass
class Fitted:
    model: Any
    tokenizer: Any
    result: TrainResult


def fit(
    config: ClassifierTrainConfig,
    train: Examples,
    dev_texts: Sequence[str],
    dev_labels: Sequence[int],
    labels: list[str],
    *,
    run: Optional[Run] = None,
    name: str = "student",
    seed: int = 0,
) -> Fitted:
    """Fine-tune a fresh copy of ``config.student`` on ``train`` with the shared training loop.

    ``dev_labels`` are the labels early stopping aims at (:func:`~protege.tasks.classify.inputs.dev_targets`);
    the weights with the best dev accuracy are returned.
    """

    if train.num_labels != len(labels):
        raise ValueError(f"training targets have {train.num_labels} classes, the task has {len(labels)}: {labels}")
    torch.manual_seed(seed)  # the new classification head
    model, tokenizer = load_encoder_classifier(config.student, len(labels), labels)
    dev_texts, dev_gold = list(dev_texts), np.asarray(dev_labels)

    def evaluate(m: Any) -> dict[str, float]:
        probs = predict_probs(m, tokenizer, dev_texts, max_length=config.max_length)
        return {"dev_accuracy": float((probs.argmax(1) == dev_gold).mean()) if len(dev_gold) else 0.0}

    loop = config.loop.model_copy(update={"seed": seed})
    objective: Any = ClassifierObjective(config.temperature)
    if config.targets == "candidates":
        texts = train.texts
        objective = CandidateObjective(
            start_targets(train.soft, train.labels, train.sets), torch.from_numpy(train.sets),
            config.candidate_momentum,
            lambda m: predict_probs(m, tokenizer, texts, max_length=config.max_length))
    result = train_loop(
        model, objective, ExampleSource(train, tokenizer, config.max_length), loop,
        run=run, evaluate=evaluate if dev_texts else None, name=name,
    )
    if run is not None:
        # Checkpoints only serve a resume after a crash; left behind, they would make the next fit under this
        # name (a forced re-run) resume at its last step instead of training.
        shutil.rmtree(run.artifacts / "checkpoints" / name, ignore_errors=True)
    return Fitted(result.model, tokenizer, result)
