"""Resume points and best weights of the training loop.

Checkpoints (model, optimizer, scheduler, RNG of every process, step) live in
``artifacts/checkpoints/<name>/step-NNNNNN``, written to a temporary folder and renamed into place by the loop.
With early stopping the best evaluated weights are kept in ``best.pt`` beside them, so a run killed after its
best evaluation still ends on those weights when it resumes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor


def checkpoints(folder: Path) -> list[Path]:
    if not folder.exists():
        return []
    return sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))


class Improvement:
    """Early-stopping bookkeeping; also remembers the best weights when they are to be restored.

    With a checkpoint folder the best weights are also written to ``best.pt`` beside the step checkpoints, so a
    run killed after its best evaluation still ends with those weights when it resumes.
    """

    FILE = "best.pt"

    def __init__(self, config: Optional[Any], folder: Optional[Path] = None, main: bool = True):
        self.config = config
        self.best: Optional[float] = None
        self.bad = 0
        self.best_state: Optional[dict[str, Tensor]] = None
        self.path = folder / self.FILE if folder is not None and config is not None and config.restore_best \
            else None
        self.main = main

    def update(self, metrics: dict[str, float], model: torch.nn.Module, step: int) -> bool:
        """Record an evaluation; True when training should stop."""
        cfg = self.config
        if cfg is None:
            return False
        if cfg.metric not in metrics:
            raise KeyError(f"early_stopping.metric={cfg.metric!r} is not among the evaluation metrics "
                           f"{sorted(metrics)}")
        value = metrics[cfg.metric]
        better = self.best is None or (value < self.best if cfg.mode == "min" else value > self.best)
        if better:
            self.best, self.bad = value, 0
            if cfg.restore_best:
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                self._save(step)
        else:
            self.bad += 1
        return self.bad >= cfg.patience

    def _save(self, step: int) -> None:
        if self.path is None or not self.main:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({"step": step, "value": self.best, "state": self.best_state}, tmp)
        os.replace(tmp, self.path)

    def state(self) -> dict:
        return {"best": self.best, "bad": self.bad}

    def load(self, state: dict) -> None:
        """Resume from a checkpoint's bookkeeping, with the best weights it refers to."""
        self.best, self.bad = state.get("best"), state.get("bad", 0)
        if self.path is None or self.best is None or not self.path.exists():
            return
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        # A best.pt newer than the checkpoint (killed in between) is rewritten when the replayed steps reach it.
        if saved["value"] == self.best:
            self.best_state = saved["state"]
