"""The ``selftrain`` stage: one round of STaR fine-tuning and/or DPO per allocation arm, on the one loop.

For each arm and method a fresh copy of the healed student is trained on that arm's samples (the shared
pre-sample plus its allocated extra samples, :func:`.budget.arm_samples`):

* ``star``: SFT on each problem's distinct correct responses, soundest first, at most ``star_cap`` per
  problem (:func:`.selftrain.star_examples`); responses produced with a hint or few-shot demonstrations are
  trained as answers to the plain question (STaR's rationalisation).
* ``dpo``: HS-STaR's (correct, incorrect) pairs per problem (:func:`.selftrain.dpo_pairs`), the reference
  log-probabilities computed once with the untrained student and carried with the pairs, sigmoid loss with β
  and an optional NLL term on the chosen response.

Every arm's DPO pairs are formed before anything trains, so an arm without a single pair is an error naming
the fix before any compute is spent. Each model is saved under ``artifacts/selftrained/<arm>-<method>/``; a
model already saved is not trained again.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import Field

from protege.core import console
from protege.core.section import Section
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.budget import arm_samples
from protege.tasks.reasoning.estimate import train_problems
from protege.tasks.reasoning.policy import load_model
from protege.tasks.reasoning.selftrain import (
    DPO,
    DPOConfig,
    PairExamples,
    dpo_pairs,
    reference_logprobs,
    star_examples,
)
from protege.tasks.reasoning.task import prompt
from protege.train.lm_data import LMExamples
from protege.train.lm_objectives import SFT
from protege.train.loop import LoopConfig, train
from protege.train.student import save_causal_lm

if TYPE_CHECKING:
    from protege.stage import StageContext


class SelfTrainConfig(Section):
    """One self-training round per arm: which methods, on which arms, how long."""

    methods: list[Literal["star", "dpo"]] = Field(["star"], min_length=1, description="star (SFT on correct "
                                                  "responses) and/or dpo (correct vs incorrect pairs).")
    arms: Optional[list[str]] = Field(None, description="Arms of the allocate stage to train on (all if unset).")
    star_cap: int = Field(4, ge=1, description="star: distinct correct responses kept per problem.")
    loop: LoopConfig = Field(description="Steps, batch and learning rate of each STaR training.")
    dpo: DPOConfig = Field(default_factory=DPOConfig, description="β, the NLL weight on the chosen response.")
    dpo_loop: Optional[LoopConfig] = Field(None, description="The DPO trainings' loop (the STaR loop if unset).")
    max_length: int = Field(256, ge=16, description="Longest prompt + response, in tokens.")


def _data(ctx: "StageContext", arms: list[str], methods: list[str], cap: int) -> dict[tuple[str, str], list]:
    """Training data of every (arm, method), formed before any training so a missing pair fails first."""
    data = {}
    for arm in arms:
        samples = arm_samples(ctx.run, arm)
        for method in methods:
            if method == "star":
                data[(arm, method)] = star_examples(samples, cap)
                if not data[(arm, method)]:
                    raise ValueError(f"selftrain: arm {arm!r} has no correct response to fine-tune on (STaR); "
                                     f"raise allocate.budget, sample nearer the policy's boundary, or drop the arm")
            else:
                try:
                    data[(arm, method)] = dpo_pairs(samples)
                except ValueError as err:
                    raise ValueError(f"selftrain.methods has dpo but arm {arm!r} gives {err}") from None
    return data


def run(ctx: "StageContext") -> dict:
    cfg: SelfTrainConfig = ctx.config
    task = ctx.require_task()
    known = [a.name for a in ctx.section("allocate").arms]
    arms = cfg.arms or known
    unknown = sorted(set(arms) - set(known))
    if unknown:
        raise ValueError(f"selftrain.arms names {unknown}, which the allocate stage does not have; use some of {known}")
    questions = {p["id"]: prompt(task, p["question"]) for p in train_problems(ctx.run)}
    data = _data(ctx, arms, cfg.methods, cfg.star_cap)
    path = ctx.run.artifacts / tables.SELFTRAIN_SUMMARY
    summary = ctx.run.read_json(tables.SELFTRAIN_SUMMARY) if path.exists() else {}
    for (arm, method), items in data.items():
        name = f"{arm}-{method}"
        target = ctx.run.artifacts / tables.SELFTRAINED / name
        if name in summary and (target / "config.json").exists():
            console.info(f"[dim]selftrain: {name} already trained, skipped[/dim]")
            continue
        model, tokenizer = load_model(ctx.run.artifacts / tables.STUDENT, "the student")
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        prompts = [questions[item[0] if method == "star" else item.problem_id] for item in items]
        if method == "star":
            source = LMExamples.from_pairs(tokenizer, prompts, [r for _, r in items], max_length=cfg.max_length)
            objective, loop = SFT(), cfg.loop
        else:
            source = PairExamples.from_pairs(tokenizer, prompts, items, max_length=cfg.max_length)
            reference_logprobs(model, source, chunk_size=cfg.dpo.chunk_size)
            objective, loop = DPO(cfg.dpo), cfg.dpo_loop or cfg.loop
        result = train(model, objective, source, loop.model_copy(update={"seed": ctx.seed}), run=ctx.run,
                       name=f"selftrain-{name}")
        save_causal_lm(result.model.eval(), tokenizer, ctx.run.artifact(tables.SELFTRAINED, name))
        shutil.rmtree(ctx.run.artifacts / "checkpoints" / f"selftrain-{name}", ignore_errors=True)
        summary[name] = {"arm": arm, "method": method, "examples": len(source), "steps": result.steps,
                         "seconds": round(result.seconds, 1), "final_loss": result.metrics.get("loss"),
                         "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))}}
        ctx.run.write_json(tables.SELFTRAIN_SUMMARY, summary)
        console.info(f"selftrain: {name} on {len(source)} {'examples' if method == 'star' else 'pairs'}, "
                     f"{result.steps} steps, loss {summary[name]['final_loss']}")
    return {n: {k: v[k] for k in ("examples", "steps", "final_loss")} for n, v in summary.items()}
