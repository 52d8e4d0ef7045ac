"""Candidate sets: the labels a teacher considers possible for a text, how well they cover the gold label, and the
student objective that learns one label from them (CanDist, :mod:`protege.losses.candidates`).

A set is a list of label indices. Annotate writes each text's set as label names in the ``candidates`` column:
from the scoring teacher's probabilities by the threshold/mass rule (:func:`~protege.models.calibration.
candidate_set`), or asked of a generating teacher (:mod:`.candidate_prompt`). ``train.targets: candidates``
trains on them with :class:`CandidateObjective`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from protege.core import console
from protege.losses.candidates import candidate_loss, refine, restrict


def name_sets(column: Sequence[Sequence[str]], labels: list[str]) -> list[list[int]]:
    """The ``candidates`` column (label names per row) as label indices; a name outside ``labels`` is refused."""
    position = {name: i for i, name in enumerate(labels)}
    out = []
    for row, names in enumerate(column):
        unknown = [n for n in names if n not in position]
        if unknown or not len(names):
            raise ValueError(f"candidates row {row} holds {list(names)}, not a non-empty subset of task.labels "
                             f"{labels}; re-run annotate after changing task.labels")
        out.append(sorted(position[n] for n in names))
    return out


def coverage(sets: Sequence[Sequence[int]], gold: Sequence[int]) -> dict[str, float]:
    """How often the set holds the gold label (rows with gold < 0 skipped), its mean size, and singleton share."""
    pairs = [(s, g) for s, g in zip(sets, gold) if g >= 0]
    if not pairs:
        return {"n": 0, "coverage": None, "mean_size": None, "singletons": None}
    return {"n": len(pairs),
            "coverage": round(float(np.mean([g in s for s, g in pairs])), 4),
            "mean_size": round(float(np.mean([len(s) for s, _ in pairs])), 4),
            "singletons": round(float(np.mean([len(s) == 1 for s, _ in pairs])), 4)}


def frame_coverage(frame: Any, labels: list[str]) -> dict[str, float] | None:
    """:func:`coverage` of an annotated table's ``candidates`` column against its ``gold_index``; None without them."""
    if not len(frame) or "candidates" not in frame.columns or "gold_index" not in frame.columns:
        return None
    gold = frame["gold_index"].fillna(-1).astype(int).tolist()
    return coverage(name_sets(frame["candidates"].tolist(), labels), gold)


def warn_on_coverage(stats: dict[str, Any], split: str, minimum: float) -> bool:
    """Warn (and return True) when the sets hold the gold label on fewer than ``minimum`` of ``split``'s texts."""
    if not stats.get("n") or stats["coverage"] >= minimum:
        return False
    never = " never hold" if stats["coverage"] == 0 else " hold only on"
    console.warn(f"candidate sets{never} the gold label on {stats['coverage']:.1%} of {stats['n']} gold {split} "
                 f"texts (mean size {stats['mean_size']:.2f}); a student trained with train.targets: candidates "
                 "learns the teacher's mistakes. Raise annotate.candidate_threshold or candidate_mass to widen "
                 "the sets, or check task.labels and the prompts.", code="candidates_miss_gold",
                 coverage=stats["coverage"])
    return True


def start_targets(soft: np.ndarray, labels: np.ndarray, sets: np.ndarray) -> Tensor:
    """Each example's first target: its teacher distribution on its set, or one-hot on its label."""
    start = np.nan_to_num(soft, nan=0.0)
    labelled = labels != -100
    start[labelled] = np.eye(soft.shape[1])[labels[labelled]]
    return restrict(torch.from_numpy(start), torch.from_numpy(sets))


@dataclass
class CandidateObjective:
    """CanDist on the training loop: cross-entropy to a per-example target kept on its candidate set.

    Targets start at :func:`start_targets` and, after every completed epoch (the loop's ``end_step``), move
    ``1 - momentum`` of the way to the student's own prediction restricted to the set: ``predict(model)`` gives
    the (N, C) probabilities of every training example in batch-source order. The targets and the number of
    refinements are the objective's state, saved in each checkpoint, so a resumed run refines exactly as an
    uninterrupted one. One loss term per example, like the other classifier objectives.
    """

    targets: Tensor  # (N, C) float64 rows on their sets
    sets: Tensor  # (N, C) bool
    momentum: float
    predict: Callable[[Any], np.ndarray]
    refined: int = field(default=0)  # epochs whose end has refined the targets

    def units(self, batch: dict[str, Tensor]) -> int:
        return int(batch["index"].shape[0])

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        logits = model(**{k: v for k, v in batch.items()
                          if k in ("input_ids", "attention_mask", "token_type_ids")}).logits
        index = batch["index"].cpu()
        target = self.targets[index].to(device=logits.device, dtype=torch.float32)
        guess = logits.argmax(-1).cpu()
        in_set = self.sets[index].gather(1, guess[:, None]).squeeze(1)
        return candidate_loss(logits, target), {
            "target_accuracy": float((guess == target.argmax(-1).cpu()).sum()),
            "prediction_in_set": float(in_set.sum()),
        }

    def end_step(self, state: Any) -> None:
        if state.epochs_done <= self.refined:
            return
        was_training = state.model.training
        probs = torch.from_numpy(np.asarray(self.predict(state.model), dtype=np.float64))
        if was_training:
            state.model.train()
        self.targets = refine(self.targets, probs, self.sets, self.momentum)
        self.refined = state.epochs_done

    def state_dict(self) -> dict[str, Any]:
        return {"targets": self.targets.clone(), "refined": self.refined}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["targets"].shape) != tuple(self.targets.shape):
            raise ValueError(f"the checkpoint's candidate targets are {tuple(state['targets'].shape)}, this "
                             f"training set's {tuple(self.targets.shape)}: the examples changed since it was "
                             "saved; delete the run's artifacts/checkpoints to start over")
        self.targets, self.refined = state["targets"].to(self.targets.dtype), int(state["refined"])
