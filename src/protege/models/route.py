"""The one route from a run to its teacher: loaded once, behind the run's ledger, prepared when a stage prepared it.

Stages never build a teacher themselves. The pipeline gives each run one :class:`TeacherRoute`, and a stage asks
it for

* :meth:`TeacherRoute.ledgered` — the teacher behind the ledger (every call looked up first, every answer
  stored), which is what a stage that asks the teacher questions uses;
* :meth:`TeacherRoute.weights` — the in-process model and tokenizer, for stages that need raw logits (logit
  caching, logit KD, held-out KL): the same loaded model, never a second load of the same weights (a copy only
  when another dtype is asked for).

A stage that prepares the teacher (e.g. fine-tunes adapters) hands the route a function through :meth:`adapt`;
every later request gets the backend that function returns, under its own model id, so ledger answers of the
base and the prepared teacher never mix.

Tests inject a teacher through the route's ``make`` argument (``run_recipe(recipe, teacher=...)``): a backend
instance or a factory ``TeacherConfig -> Teacher``.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Union

from protege.core.errors import UserError
from protege.core.ledger import Ledger
from protege.models.base import Teacher
from protege.models.config import TeacherConfig
from protege.models.ledgered import LedgeredTeacher, Prices, SessionStats

Maker = Union[Teacher, Callable[[TeacherConfig], Teacher]]


class TeacherRoute:
    def __init__(self, config: TeacherConfig, ledger: Ledger, *, make: Optional[Maker] = None):
        self.config = config
        self.ledger = ledger
        self.stats = SessionStats()  # shared by every ledgered wrapper of this route, prepared or not
        self.used = False  # set on any access; the runner resets it per stage to report what a stage paid
        self._make = make
        self._backend: Optional[Teacher] = None
        self._ledgered: Optional[LedgeredTeacher] = None
        self._pending: list[Callable[[Teacher], Teacher]] = []
        self._copies: dict[str, Any] = {}

    # -- the backend -------------------------------------------------------------------------------------
    def backend(self) -> Teacher:
        """The bare backend (prepared if a stage prepared it); loaded on first use."""
        self.used = True
        if self._backend is None:
            self._backend = self._build()
        while self._pending:
            self._backend = self._pending.pop(0)(self._backend)
            self._ledgered = None
            self._copies.clear()
        return self._backend

    def _build(self) -> Teacher:
        make = self._make
        if make is None:
            from protege.models.factory import make_teacher

            return make_teacher(self.config)
        return make(self.config) if callable(make) and not hasattr(make, "score") else make

    def adapt(self, prepare: Callable[[Teacher], Teacher]) -> None:
        """From now on the teacher is ``prepare(base backend)``; applied at the next request."""
        self._pending.append(prepare)

    # -- what stages ask for ---------------------------------------------------------------------------
    def ledgered(self) -> LedgeredTeacher:
        backend = self.backend()
        if self._ledgered is None:
            prices = Prices(self.config.price_input_per_million, self.config.price_output_per_million)
            self._ledgered = LedgeredTeacher(backend, self.ledger, prices=prices, batch_size=self.config.batch_size)
            self._ledgered.stats = self.stats
        return self._ledgered

    def weights(self, dtype: Optional[str] = None, *, why: str = "this stage") -> tuple[Any, Any]:
        """``(model, tokenizer)`` of an in-process teacher, frozen, in ``dtype`` (default: as loaded)."""
        if self.config.backend != "hf" and self._make is None:
            raise UserError(f"{why} needs the teacher's weights in this process, but teacher.backend is "
                             f"{self.config.backend!r}: use backend: hf, or an objective that needs only the "
                             "teacher's answers (sft, cached_kd)")
        backend = self.backend()
        model, tokenizer = getattr(backend, "model", None), getattr(backend, "tokenizer", None)
        if model is None or tokenizer is None:
            raise UserError(f"{why} needs the teacher's weights, and the {backend.backend!r} backend has none")
        for p in model.parameters():
            p.requires_grad_(False)
        loaded = str(next(model.parameters()).dtype).removeprefix("torch.")
        if dtype is None or dtype == loaded:
            return model.eval(), tokenizer
        if dtype not in self._copies:
            import torch

            self._copies[dtype] = copy.deepcopy(model).to(getattr(torch, dtype)).eval()
        return self._copies[dtype], tokenizer
