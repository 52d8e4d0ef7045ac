"""GRPO and KDRL on the one training loop: a batch source of rewarded rollout groups, and the policy objective.

:class:`GRPOSource` (a :class:`~protege.train.loop.BatchSource`) has the student sample G responses to each of
the step's prompts (the sampling copy of :mod:`protege.train.rollouts`), rewards each with the caller's binary
verifier and computes the group advantages (:mod:`protege.losses.policy`) before the batch leaves it. A micro-batch
of P prompts holds P·G sequences, group by group:

====================================  =========================================================================
``input_ids``, ``attention_mask``,    (P·G, L): prompt + response, scored on the response (the layout of
``loss_mask``                         :mod:`protege.train.lm_data`)
``rewards``, ``advantages``           (P·G,)
``zero_variance``                     (P·G,) bool: the response's group has all-equal rewards
``group_size``, ``max_new_tokens``    scalars
``old_logprobs``                      (N,): log π_old of the N scored tokens, from the training weights at
                                      rollout time; only when a rollout batch serves several updates
====================================  =========================================================================

With ``updates_per_batch`` = 1 the old policy is the current one: the objective uses its own detached
log-probabilities (ratio exactly 1, no clipping effect) and no forward pass is spent on them. With k > 1 the
micro-batches rolled out at step s serve steps s … s+k−1 (the prompts the loop picks for the other steps are not
used) and the clip bounds how far they move the policy; a run resumed on a step that is not a multiple of k
rolls out afresh, so checkpoint at multiples of k. Sampling draws from torch's global generator, which
checkpoints restore, so a resumed run rolls out the same.

:class:`PolicyObjective` (an :class:`~protege.train.loop.Objective`) is GRPO's clipped surrogate, and KDRL's
(:mod:`protege.losses.kdrl`) when given a teacher; the teacher's forward pass runs only on the sequences whose
KD gate is open; a :class:`~protege.train.served_teacher.ServedTeacher` (any backend's prompt log-probabilities of
the student's token ids, through the ledger) serves the sampled-token estimators instead. One chunked pass over
the student's output head computes the log-probabilities, the surrogate, the KD term (``exact``: the
full-vocabulary reverse KL against the teacher's logits made from its hidden states chunk by chunk) and an
optional k3 KL to a frozen reference, so neither model's (N, V) logits ever exist.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from pydantic import Field
from torch import Tensor

from protege.core import console
from protege.losses.chunking import chunked_head_sum
from protege.losses.kdrl import KDRLConfig, KDTerms, exact_kd_terms, kdrl_token_loss, never_opens, \
    sampled_kd_terms, teacher_rows
from protege.losses.policy import Baseline, Scaling, Units, group_advantages, sequence_weights, unit_count
from protege.losses.sampled import kl_estimates
from protege.core.section import Section
from protege.train.lm_data import collate
from protege.train.lm_objectives import completion_states, frozen_states, next_tokens, output_head
from protege.train.preflight import check_token_ids, check_token_kd
from protege.train.rollouts import Sampler, SamplingConfig
from protege.train.served_teacher import ServedTeacher

Reward = Callable[[int, str], Any]  # (prompt index, response text) -> 0 or 1

_ROW_KEYS = ("input_ids", "attention_mask", "loss_mask")


class GRPOConfig(SamplingConfig):
    """How GRPO rolls out and scores: group size, advantage baseline and scaling, reuse of a rollout batch."""

    group_size: int = Field(4, ge=2, description="G, responses sampled per prompt; at least 2, since a group of "
                            "one has no baseline to compare its reward with.")
    baseline: Baseline = Field("mean", description="Baseline of a response's reward: mean (GRPO) or "
                               "leave_one_out (the mean of the group's other rewards).")
    scaling: Scaling = Field("group_std", description="Divide advantages by the group's std (GRPO), the rollout "
                             "batch's std, or none (Dr. GRPO).")
    scale_eps: float = Field(1e-6, ge=0, description="Added to the std before dividing.")
    updates_per_batch: int = Field(1, ge=1, description="Optimizer steps each rollout batch serves; above 1 the "
                                   "clipped ratio to the rollout policy matters.")


@torch.no_grad()
def sampled_logprobs(hidden: Tensor, weight: Tensor, bias: Optional[Tensor], targets: Tensor,
                     chunk_size: int) -> Tensor:
    """log-softmax(hidden @ weight.T + bias)[target] per row (N,), a chunk of rows at a time, in float32 or wider."""
    dtype = torch.promote_types(hidden.dtype, torch.float32)
    out = torch.empty(hidden.shape[0], dtype=dtype, device=hidden.device)
    for start in range(0, hidden.shape[0], chunk_size):
        logits = torch.nn.functional.linear(hidden[start:start + chunk_size], weight, bias).to(dtype)
        out[start:start + chunk_size] = logits.log_softmax(-1).gather(
            -1, targets[start:start + chunk_size, None]).squeeze(-1)
    return out


def binary_reward(value: Any, index: int) -> float:
    """``value`` as 0.0 / 1.0; an error naming the prompt for anything else."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number not in (0.0, 1.0):
        raise ValueError(f"reward(prompt_index={index}, text) returned {value!r}; GRPO here expects a binary "
                         "verifier's verdict, 0 or 1 (True/False). Threshold a graded score (e.g. score == 1) or "
                         "use the task's own verifier")
    return number


class GRPOSource:
    """A :class:`~protege.train.loop.BatchSource` of G rewarded rollouts per prompt (see the module notes).

    ``prompts`` are token ids ending where the response starts (the rendered chat prompt); ``student`` is the
    model being trained; ``reward(index, text)`` judges the response ``decode(ids)`` to prompt ``index``.
    ``generated_tokens`` and ``rollouts`` count what was sampled.
    """

    def __init__(self, prompts: Sequence[Sequence[int]], student: Any, reward: Reward, config: GRPOConfig, *,
                 decode: Callable[[list[int]], str], eos_id: int, pad_id: int, chunk_size: int = 32):
        if not prompts:
            raise ValueError("GRPOSource needs at least one prompt")
        self.prompts = [list(p) for p in prompts]
        self.student = student
        self.reward = reward
        self.config = config
        self.decode = decode
        self.pad_id = pad_id
        self.chunk_size = chunk_size
        self.sampler = Sampler(student, config, eos_id=eos_id, pad_id=pad_id)
        self.generated_tokens = 0
        self.rollouts = 0
        self._step: Optional[int] = None
        self._cache: list[dict[str, Tensor]] = []
        self._served = 0

    def __len__(self) -> int:
        return len(self.prompts)

    def begin_step(self, step: int) -> None:
        self._step, self._served = step, 0
        if step % self.config.updates_per_batch == 0:
            self._cache = []

    def batch(self, indices: Sequence[int]) -> dict[str, Tensor]:
        reuse = self.config.updates_per_batch > 1 and self._step is not None
        if reuse and self._served < len(self._cache):
            self._served += 1
            return self._cache[self._served - 1]
        out = self._rollout(indices)
        if reuse:
            self._cache.append(out)
            self._served += 1
        return out

    def _rollout(self, indices: Sequence[int]) -> dict[str, Tensor]:
        cfg = self.config
        owners = [i for i in indices for _ in range(cfg.group_size)]
        prompts = [self.prompts[i] for i in owners]
        completions = self.sampler.rollout(prompts)
        rewards = torch.tensor([binary_reward(self.reward(i, self.decode(c)), i) for i, c in zip(owners, completions)])
        self.generated_tokens += sum(len(c) for c in completions)
        self.rollouts += len(completions)
        grouped = group_advantages(rewards.view(-1, cfg.group_size), baseline=cfg.baseline, scaling=cfg.scaling,
                                   eps=cfg.scale_eps)
        out = collate([p + c for p, c in zip(prompts, completions)], [len(p) for p in prompts], self.pad_id)
        out.update(rewards=rewards, advantages=grouped.advantages.flatten(),
                   zero_variance=grouped.zero_variance.repeat_interleave(cfg.group_size),
                   group_size=torch.tensor(cfg.group_size), max_new_tokens=torch.tensor(cfg.max_new_tokens))
        if cfg.updates_per_batch > 1:
            device = next(self.student.parameters()).device
            on_device = {k: out[k].to(device) for k in _ROW_KEYS}
            with torch.no_grad():
                hidden = completion_states(self.student, on_device)
                weight, bias = output_head(self.student)
                out["old_logprobs"] = sampled_logprobs(hidden, weight, bias, next_tokens(on_device),
                                                       self.chunk_size).cpu()
        return out


class PolicyConfig(Section):
    """The GRPO objective: loss aggregation, clipping, zero-variance groups, reference KL, and KDRL's teacher term."""

    units: Units = Field("token_mean", description="Aggregation: token_mean (all tokens of the step), "
                         "sequence_mean (per-sequence mean, then mean: the GRPO paper) or sequence_sum "
                         "(per-sequence sum over a fixed length: Dr. GRPO).")
    max_length: Optional[int] = Field(None, ge=1, description="The fixed length of units: sequence_sum; default "
                                      "the rollouts' max_new_tokens.")
    eps_low: float = Field(0.2, ge=0, lt=1, description="Lower clip of the probability ratio, 1 − eps_low.")
    eps_high: float = Field(0.2, ge=0, description="Upper clip of the probability ratio, 1 + eps_high (DAPO: 0.28).")
    drop_zero_variance: bool = Field(False, description="Leave groups with all-equal rewards out of the loss and "
                                     "its units (they carry no policy gradient, and with a teacher no KD term).")
    reference_kl: float = Field(0.0, ge=0, description="Coefficient of a k3 KL to a frozen reference model, as "
                                "GRPO uses it (as a loss its gradient is that of the forward KL(π_ref‖π)).")
    chunk_size: int = Field(32, ge=1, description="Scored positions projected to the vocabulary at once.")
    kd: Optional[KDRLConfig] = Field(None, description="KDRL: the teacher term (estimator, β schedule, gate).")


def _frozen(model: Any) -> Any:
    if model is not None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model


class PolicyObjective:
    """GRPO's (or with a teacher, KDRL's) loss over :class:`GRPOSource` batches.

    ``teacher`` is an in-memory causal LM sharing the student's tokenizer (``teacher_tokenizer`` and
    ``student_tokenizer`` are compared before anything runs), or a
    :class:`~protege.train.served_teacher.ServedTeacher` for the sampled-token estimators; ``reference`` a frozen model for
    ``reference_kl``. ``group_size`` sharpens the warning for a gate that can never open; ``label`` names the term
    in it. The schedule follows
    the loop's step (``begin_step``); call :meth:`switch` when the held-out KL stops improving (schedule
    ``switch_on_plateau``). ``teacher_tokens`` counts the positions the teacher scored.
    """

    def __init__(self, config: PolicyConfig, *, teacher: Any = None, reference: Any = None,
                 student_tokenizer: Any = None, teacher_tokenizer: Any = None, group_size: Optional[int] = None,
                 label: str = "the KD term"):
        if (teacher is None) != (config.kd is None):
            raise ValueError("KDRL needs both a teacher model and the policy's kd settings: pass teacher= together "
                             "with kd: {estimator: k2, ...}, or neither for plain GRPO")
        if (reference is None) != (config.reference_kl == 0):
            raise ValueError(f"reference_kl={config.reference_kl} and reference="
                             f"{'None' if reference is None else 'a model'}: a KL to a reference needs both a "
                             "positive coefficient and the frozen reference model")
        self.served = isinstance(teacher, ServedTeacher)
        if self.served:
            teacher_tokenizer = teacher_tokenizer or teacher.tokenizer
            if config.kd.estimator == "exact":
                raise ValueError("estimator 'exact' needs the teacher's whole distribution at every position, which "
                                 "a served teacher does not give: load its weights here (teacher.backend: hf), or "
                                 "use a sampled-token estimator (k2, k1_reward, k3)")
        if teacher is not None:
            if student_tokenizer is None or teacher_tokenizer is None:
                raise ValueError("pass student_tokenizer and teacher_tokenizer with a teacher: the KD term compares "
                                 "token ids, which is only sound when both models share one tokenizer")
            (check_token_ids if self.served else check_token_kd)(teacher_tokenizer, student_tokenizer)
            reason = never_opens(config.kd, drop_zero_variance=config.drop_zero_variance, group_size=group_size)
            if reason is not None:
                console.warn(f"{label} can never apply, so the teacher will never run: {reason}",
                             code="kd_never_applies")
        self.config = config
        self.teacher = teacher if self.served else _frozen(teacher)
        self.reference = _frozen(reference)
        self.step = 0
        self.switched = False
        self.teacher_tokens = 0

    def begin_step(self, step: int) -> None:
        self.step = step

    def switch(self) -> None:
        """The held-out KL stopped improving: schedule ``switch_on_plateau`` trains on the reward from now on."""
        self.switched = True

    def _keep(self, batch: dict[str, Tensor]) -> Tensor:
        if self.config.drop_zero_variance:
            return ~batch["zero_variance"]
        return torch.ones_like(batch["zero_variance"])

    def units(self, batch: dict[str, Tensor]) -> int:
        return unit_count(batch["loss_mask"].sum(1), self.config.units, keep=self._keep(batch))

    def _teacher_states(self, batch: dict[str, Tensor], rows: Tensor) -> Optional[tuple[Tensor, dict]]:
        """The teacher's final hidden states at the scored positions of ``rows`` only, and that sub-batch."""
        if not bool(rows.any()):
            return None
        index = rows.nonzero().flatten()
        width = int(batch["attention_mask"][index].sum(1).max())  # right-padded: trim the shared padding
        sub = {k: batch[k][index, :width] for k in _ROW_KEYS}
        states = frozen_states(self.teacher, sub)
        self.teacher_tokens += states.shape[0]
        return states, sub

    def _served_logprobs(self, batch: dict[str, Tensor], rows: Tensor, owner: Tensor,
                         dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The rows the served teacher scored as given (the others closed) and log p_T at every scored position."""
        values, scored = self.teacher.token_logprobs(batch, rows)
        opened = rows.clone()
        opened[rows.nonzero().flatten()[~scored.to(rows.device)]] = False
        teacher_logp = torch.zeros(owner.shape[0], dtype=dtype, device=owner.device)
        teacher_logp[rows[owner]] = values.to(device=owner.device, dtype=dtype)
        self.teacher_tokens += int(opened[owner].sum())
        return opened, teacher_logp

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        cfg, kd = self.config, self.config.kd
        mask, rewards = batch["loss_mask"], batch["rewards"]
        grouped = rewards.view(-1, int(batch["group_size"]))
        lengths, keep = mask.sum(1), self._keep(batch)
        owner = mask.nonzero()[:, 0]  # the sequence of each scored token, in the hidden states' order
        hidden = completion_states(model, batch)
        weight, bias = output_head(model)
        targets = next_tokens(batch)
        dtype = torch.promote_types(hidden.dtype, torch.float32)
        weights = sequence_weights(lengths, cfg.units, keep=keep,
                                   max_length=cfg.max_length or int(batch["max_new_tokens"]))
        token_w, advantages = weights[owner].to(dtype), batch["advantages"][owner].to(dtype)
        old = batch.get("old_logprobs")
        beta, pg_w, kd_w = 0.0, torch.ones_like(token_w), torch.zeros_like(token_w)
        teacher_logp = teacher_index = teacher_states = teacher_head = None
        means: dict[str, float] = {}  # per-batch means, reported like the loss terms (see the end)
        if kd is not None:
            beta, pg_scale = kd.at(self.step, self.switched)
            gate = kd.gates(grouped)
            rows = teacher_rows(kd, grouped, self.step, switched=self.switched, keep=keep.view_as(grouped)).flatten()
            kd_w, pg_w = rows[owner].to(dtype), gate.pg.flatten()[owner].to(dtype) * pg_scale
            seen, found = self.teacher_tokens, None
            if self.served:
                rows, teacher_logp = self._served_logprobs(batch, rows, owner, dtype)
                kd_w = rows[owner].to(dtype)
            else:
                found = self._teacher_states(batch, rows)
            if found is not None:
                states, sub = found
                teacher_head = output_head(self.teacher)
                if kd.estimator != "exact":
                    teacher_logp = torch.zeros_like(token_w)
                    teacher_logp[rows[owner]] = sampled_logprobs(states, *teacher_head, next_tokens(sub),
                                                                 cfg.chunk_size).to(dtype)
                elif teacher_head[0].shape[0] != weight.shape[0]:
                    raise ValueError(f"estimator 'exact' compares full distributions, but the teacher's head has "
                                     f"{teacher_head[0].shape[0]} outputs and the student's {weight.shape[0]}; use "
                                     "a sampled estimator (k2)")
                else:  # row i of the teacher's states belongs to the i-th opened position
                    teacher_index = torch.full_like(owner, -1)
                    teacher_index[rows[owner]] = torch.arange(states.shape[0], device=owner.device)
                    teacher_states = states
            means.update(beta=beta, gate_open=float(gate.kd.float().mean()),
                         teacher_tokens=(self.teacher_tokens - seen) / len(rewards))
        ref_logp = None
        if self.reference is not None:
            ref_logp = sampled_logprobs(frozen_states(self.reference, batch), *output_head(self.reference), targets,
                                        cfg.chunk_size).to(dtype)
        sums = {"pg_loss": 0.0, "kd": 0.0, "ref_kl": 0.0}

        def kd_terms(start: int, end: int, logits: Tensor, logp: Tensor) -> KDTerms:
            zeros = torch.zeros_like(logp)
            if teacher_logp is not None:
                opened = kd_w[start:end] > 0  # closed positions get log r = 0: no inf·0 from their k3
                return sampled_kd_terms(kd.estimator, logp, torch.where(opened, teacher_logp[start:end], logp.detach()))
            index = None if teacher_index is None else teacher_index[start:end]
            if index is None or not bool((index >= 0).any()):
                return KDTerms(zeros, zeros, zeros)
            opened = index >= 0
            t_logits = torch.nn.functional.linear(teacher_states[index[opened]], *teacher_head)
            part = exact_kd_terms(logits[opened], t_logits)
            return KDTerms(zeros.masked_scatter(opened, part.loss), zeros, zeros.masked_scatter(opened, part.value))

        def head_loss(start: int, end: int, sel: Tensor, logits: Tensor) -> Tensor:
            logits = logits.to(dtype)
            logp = logits.log_softmax(-1).gather(-1, targets[start:end, None]).squeeze(-1)
            w = token_w[start:end]
            terms = kdrl_token_loss(logp, logp.detach() if old is None else old[start:end].to(dtype),
                                    advantages[start:end], kd_terms(start, end, logits, logp), beta=beta,
                                    kd_open=kd_w[start:end], pg_weight=pg_w[start:end], eps_low=cfg.eps_low,
                                    eps_high=cfg.eps_high)
            total = terms.total
            if ref_logp is not None:
                ref = kl_estimates(logp, ref_logp[start:end], estimator="k3")
                total = total + cfg.reference_kl * ref
                sums["ref_kl"] += float((w * ref.detach()).sum())
            sums["pg_loss"] += float((w * terms.pg.detach()).sum())
            sums["kd"] += float((w * terms.kd).sum())
            return (w * total).sum()

        everything = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
        loss = chunked_head_sum(head_loss, hidden, weight, bias, everything, cfg.chunk_size)
        out = {"pg_loss": sums["pg_loss"]}
        if kd is not None:
            out["kd"] = sums["kd"]
        if ref_logp is not None:
            out["ref_kl"] = sums["ref_kl"]
        means.update(reward=float(rewards.float().mean()), response_length=float(lengths.float().mean()),
                     zero_variance=float(batch["zero_variance"].float().mean()))
        # A per-batch mean times the batch's units: the loop's division by the step's units then gives the
        # units-weighted mean over the step's micro-batches (the plain mean with one micro-batch).
        units = self.units(batch)
        out.update({k: v * units for k, v in means.items()})
        return loss, out
