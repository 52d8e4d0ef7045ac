"""Self-training data from sampled responses, and the DPO objective for the one training loop.

Samples are records with ``problem_id``, ``response``, ``correct`` and (optionally) ``process_score``.

* **STaR** (:func:`star_examples`): each problem's correct responses, de-duplicated (whitespace-insensitive),
  soundest process score first, at most ``cap`` per problem: the SFT data of a STaR round.
* **DPO pairs** (:func:`dpo_pairs`), HS-STaR's pairing: within one problem, the distinct correct responses
  ranked by process score best first and the distinct incorrect ones worst first, paired in rank order,
  K = min of the two counts. Responses without a process score rank after those with one.
* :class:`PairExamples` tokenises pairs like :mod:`protege.train.lm_data` (prompt rendered with the chat
  template, response closed by EOS, ``loss_mask`` on the response) and collates a micro-batch of P pairs
  into 2P rows, the chosen ones first. :func:`reference_logprobs` scores every pair once per round with the
  model as it is before training, and the scores travel with the examples, so no second model is held.
* :class:`DPO` is the :class:`~protege.train.loop.Objective`: its loss terms are pairs; it returns the sum of
  :func:`protege.losses.dpo_loss` over the micro-batch's pairs and sums of its metrics (margin, reward
  accuracy, chosen and rejected log-probabilities, chosen NLL per token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
from pydantic import Field
from torch import Tensor

from protege.core import console
from protege.losses import dpo_loss, dpo_margin
from protege.core.section import Section
from protege.train.lm_data import collate, encode_pair
from protege.train.lm_objectives import sequence_logprobs


def _key(response: str) -> str:
    return " ".join(response.split())


def _by_problem(samples: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        grouped.setdefault(s["problem_id"], []).append(s)
    return grouped


def _distinct(samples: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for s in samples:
        if _key(s["response"]) not in seen:
            seen.add(_key(s["response"]))
            out.append(s)
    return out


def _ranked(samples: list[dict[str, Any]], best_first: bool) -> list[dict[str, Any]]:
    """Stable sort by process score (best or worst first); unscored samples last."""
    def key(s: dict[str, Any]) -> tuple[int, float]:
        score = s.get("process_score")
        return (1, 0.0) if score is None else (0, -score if best_first else score)
    return sorted(samples, key=key)


def star_examples(samples: Iterable[dict[str, Any]], cap: int) -> list[tuple[str, str]]:
    """(problem_id, response) of distinct correct responses, at most ``cap`` per problem, soundest first."""
    if cap < 1:
        raise ValueError(f"cap={cap}: keep at least 1 correct response per problem")
    out = []
    for pid, rows in _by_problem(samples).items():
        kept = _ranked(_distinct(r for r in rows if r["correct"]), best_first=True)[:cap]
        out.extend((pid, r["response"]) for r in kept)
    return out


@dataclass(frozen=True)
class Pair:
    problem_id: str
    chosen: str
    rejected: str
    chosen_process: Optional[float]
    rejected_process: Optional[float]


def problem_pairs(samples: Sequence[dict[str, Any]]) -> list[Pair]:
    """HS-STaR pairs of one problem's samples: best correct with worst incorrect first, K = min of counts."""
    right = _ranked(_distinct(s for s in samples if s["correct"]), best_first=True)
    wrong = _ranked(_distinct(s for s in samples if not s["correct"]), best_first=False)
    return [Pair(c["problem_id"], c["response"], w["response"], c.get("process_score"), w.get("process_score"))
            for c, w in zip(right, wrong)]


def dpo_pairs(samples: Iterable[dict[str, Any]]) -> list[Pair]:
    """Pairs of every problem; an error naming the fix when no problem has both a correct and a wrong sample."""
    grouped = _by_problem(samples)
    pairs = [p for rows in grouped.values() for p in problem_pairs(rows)]
    if not pairs:
        solved = sum(all(s["correct"] for s in rows) for rows in grouped.values())
        raise ValueError(f"no DPO pairs: of {len(grouped)} problems, {solved} have only correct samples and "
                         f"{len(grouped) - solved} only wrong ones; sample more responses per problem (a larger "
                         f"budget), raise the sampling temperature, pick problems nearer the policy's boundary, "
                         f"or train with STaR (SFT on correct responses) instead")
    return pairs


class DPOConfig(Section):
    """The DPO objective."""

    beta: float = Field(0.1, gt=0, description="β: inverse temperature of the preference margin.")
    nll_weight: float = Field(0.0, ge=0, description="Weight of the chosen response's NLL per token, added to "
                              "keep its likelihood from falling (0: plain DPO).")
    chunk_size: int = Field(32, ge=1, description="Completion positions projected to the vocabulary at once.")


@dataclass
class PairExamples:
    """A :class:`~protege.train.loop.BatchSource` of tokenised (prompt, chosen, rejected) triples."""

    chosen: list[list[int]]
    rejected: list[list[int]]
    prompt_lengths: list[int]
    pad_id: int
    ref_chosen: Optional[list[float]] = None  # filled by reference_logprobs, once per round
    ref_rejected: Optional[list[float]] = None

    @classmethod
    def from_pairs(cls, tokenizer: Any, prompts: Sequence[str], pairs: Sequence[Pair], *,
                   max_length: int = 512) -> "PairExamples":
        """Tokenise; pairs whose prompt leaves no room for a response token are dropped with a warning."""
        chosen, rejected, lengths = [], [], []
        for prompt, pair in zip(prompts, pairs, strict=True):
            c, n = encode_pair(tokenizer, prompt, pair.chosen, max_length)
            r, _ = encode_pair(tokenizer, prompt, pair.rejected, max_length)
            if len(c) > n and len(r) > n:
                chosen.append(c)
                rejected.append(r)
                lengths.append(n)
        if len(chosen) < len(pairs):
            console.warn(f"{len(pairs) - len(chosen)} of {len(pairs)} pairs dropped: the prompt alone fills "
                         f"max_length={max_length} tokens; raise max_length to keep them", code="pairs_dropped")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(chosen, rejected, lengths, pad)

    def __len__(self) -> int:
        return len(self.chosen)

    def sequences(self, indices: Sequence[int]) -> dict[str, Tensor]:
        """The pairs' 2P rows (chosen first) as an LM micro-batch, without reference scores."""
        lengths = [self.prompt_lengths[i] for i in indices]
        return collate([self.chosen[i] for i in indices] + [self.rejected[i] for i in indices], lengths * 2,
                       self.pad_id)

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError("the pairs have no reference log-probabilities: call reference_logprobs(model, "
                             "examples) once per round, before training")
        return {**self.sequences(indices),
                "ref_chosen": torch.tensor([self.ref_chosen[i] for i in indices], dtype=torch.float32),
                "ref_rejected": torch.tensor([self.ref_rejected[i] for i in indices], dtype=torch.float32)}


@torch.no_grad()
def reference_logprobs(model: Any, examples: PairExamples, *, batch_size: int = 8, chunk_size: int = 32) -> None:
    """Score every pair with ``model`` as the frozen reference and store the scores in ``examples``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    try:
        for start in range(0, len(examples), batch_size):
            indices = list(range(start, min(start + batch_size, len(examples))))
            batch = {k: v.to(device) for k, v in examples.sequences(indices).items()}
            logp = sequence_logprobs(model, batch, chunk_size).double().cpu().tolist()
            chosen += logp[: len(indices)]
            rejected += logp[len(indices):]
    finally:
        model.train(was_training)
    examples.ref_chosen, examples.ref_rejected = chosen, rejected


class DPO:
    """DPO over the pairs of a micro-batch (2P rows, chosen first); the loss terms are the P pairs."""

    def __init__(self, config: Optional[DPOConfig] = None):
        self.config = config or DPOConfig()

    def units(self, batch: dict[str, Tensor]) -> int:
        return len(batch["ref_chosen"])

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        cfg, pairs = self.config, self.units(batch)
        logp = sequence_logprobs(model, batch, cfg.chunk_size)
        chosen, rejected = logp[:pairs], logp[pairs:]
        tokens = batch["loss_mask"][:pairs].sum(dim=1)
        ref_c, ref_r = batch["ref_chosen"].to(logp.dtype), batch["ref_rejected"].to(logp.dtype)
        loss = dpo_loss(chosen, rejected, ref_c, ref_r, beta=cfg.beta, nll_weight=cfg.nll_weight,
                        chosen_tokens=tokens)
        margin = dpo_margin(chosen, rejected, ref_c, ref_r).detach()
        metrics = {"margin": float(margin.sum()), "reward_accuracy": float((margin > 0).sum()),
                   "chosen_logp": float(chosen.detach().sum()), "rejected_logp": float(rejected.detach().sum()),
                   "chosen_nll_per_token": float((-chosen.detach() / tokens.clamp_min(1)).sum())}
        return loss.sum(), metrics
