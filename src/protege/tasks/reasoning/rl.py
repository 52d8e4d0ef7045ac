"""The ``rl`` stage: GRPO, on-policy KD and KDRL arms from the same healed student, at equal steps.

Every arm starts from a fresh copy of the student (``artifacts/student/``) and trains on the one loop with
:class:`~protege.train.grpo.GRPOSource` (G rollouts per training prompt, rewarded by the task's verifier) and
:class:`~protege.train.grpo.PolicyObjective`. An arm's ``objective`` picks the loss:

* ``grpo``: the reward alone (no teacher runs during training);
* ``onpolicy_kd``: the reverse KL to the prepared teacher alone, on the same rollouts (KDRL's schedule
  ``kd_only``: the reward is computed, logged and trains nothing); ``exact`` by default, the full-vocabulary KL;
* ``kdrl``: both, with the arm's estimator, β schedule and gate (:mod:`protege.losses.kdrl`).

The teacher is the prepared one in process (``teacher.backend: hf``); with any other backend (an
OpenAI-compatible server, llama.cpp) it is a :class:`~protege.train.served_teacher.ServedTeacher`: the
sampled-token estimators (k2, k1_reward, k3) score the student's token ids through the run's ledger, ``exact``
and the held-out exact KL need the weights (the first is refused, the second skipped).

Per step the loop logs to ``metrics/rl-<arm>.jsonl`` the policy-gradient loss, the unweighted KD term, β, the
gate-open fraction, teacher tokens, the share of zero-variance groups, mean reward and response length. With
``heldout`` > 0 each evaluation writes the exact KL from the student to the teacher on held-out (dev) prompts
(:mod:`.heldout`) to ``metrics/rl-<arm>-eval.jsonl``; schedule ``switch_on_plateau`` switches to the reward the
first time that KL does not improve. Trained students go to ``artifacts/rl/<arm>/`` and their budgets (steps,
seconds, generated tokens, teacher tokens scored) to ``rl.json``; an arm already saved with the same settings
(its signature) is not trained again.

Refused before any rollout: a teacher whose tokenizer differs from the student's (:func:`check_tokenizers`), a
verifier that gives a problem's own gold answer anything but 1 or no answer anything but 0
(:func:`check_rewards`); when the recipe is read: ``k1`` as a loss and G < 2. A gate or schedule that can never
open the KD term is warned about (code ``kd_never_applies``) when the stage starts, before any arm trains.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from protege.core import console
from protege.core.section import Section
from protege.losses.kdrl import KDRLConfig
from protege.models.compat import compare_tokenizers
from protege.tasks.reasoning import tables
from protege.tasks.reasoning.answers import get_verifier, score_response
from protege.tasks.reasoning.estimate import train_problems
from protege.tasks.reasoning.heldout import heldout_kl
from protege.tasks.reasoning.policy import load_model
from protege.tasks.reasoning.task import ReasoningTask, prompt
from protege.train.grpo import GRPOConfig, GRPOSource, PolicyConfig, PolicyObjective
from protege.train.lm_data import encode_prompt
from protege.train.loop import LoopConfig, train
from protege.train.preflight import TokenizerMismatchError
from protege.train.served_teacher import ServedTeacher
from protege.train.student import save_causal_lm

if TYPE_CHECKING:
    from protege.stage import StageContext

Objective = Literal["grpo", "onpolicy_kd", "kdrl"]


class RLArm(Section):
    """One arm: its name, its objective, and for the teacher's term the estimator, β schedule and gate."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Arm name: the folder artifacts/rl/<name>.")
    objective: Objective = Field(description="grpo (reward only), onpolicy_kd (reverse KL to the teacher only, "
                                 "on the same rollouts) or kdrl (both).")
    kd: Optional[KDRLConfig] = Field(None, description="The teacher term (kdrl: default k2, β 5e-3 constant, no "
                                     "gate; onpolicy_kd: default exact, β 1).")

    @model_validator(mode="after")
    def _teacher_term(self) -> "RLArm":
        if self.objective == "grpo" and self.kd is not None:
            raise ValueError(f"arm {self.name!r}: objective grpo has no teacher term; remove its kd settings or "
                             "use objective kdrl")
        if self.objective == "onpolicy_kd" and self.kd is not None and self.kd.schedule not in ("constant",
                                                                                               "kd_only"):
            raise ValueError(f"arm {self.name!r}: onpolicy_kd trains on the KD term alone throughout, so "
                             f"schedule {self.kd.schedule!r} has nothing to switch to; use objective kdrl")
        return self

    def teacher_term(self) -> Optional[KDRLConfig]:
        """The arm's KDRL settings as the objective takes them (None for GRPO)."""
        if self.objective == "grpo":
            return None
        if self.objective == "onpolicy_kd":
            base = self.kd or KDRLConfig(estimator="exact", beta=1.0)
            return base.model_copy(update={"schedule": "kd_only"})
        return self.kd or KDRLConfig()


class RLConfig(Section):
    """Arms trained from the same student at equal steps: rollouts, policy loss, loop, prompts, held-out KL."""

    arms: list[RLArm] = Field(min_length=1, description="The arms, each from a fresh copy of the student.")
    rollouts: GRPOConfig = Field(default_factory=GRPOConfig, description="G, sampling, advantages, reuse.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig, description="Aggregation, clipping, zero-variance "
                                 "groups, reference KL; the teacher term is set per arm.")
    loop: LoopConfig = Field(description="Steps, prompts per step (micro_batch_size) and learning rate of every arm.")
    prompts: Literal["train", "boundary"] = Field("train", description="Training prompts: every training problem, "
                                                  "or those the estimate stage labelled boundary (fewer wasted "
                                                  "rollouts: their groups are rarely all right or all wrong).")
    limit: Optional[int] = Field(None, ge=1, description="Only the first this many training prompts.")
    seed: Optional[int] = Field(None, description="Seed of the arms' rollouts and prompt order (default: the "
                                "recipe's seed); a new one repeats the arms without redoing the stages before.")
    heldout: int = Field(16, ge=0, description="Dev problems on which the exact KL to the teacher is measured at "
                         "each evaluation (0: none).")

    @field_validator("policy")
    @classmethod
    def _no_shared_kd(cls, value: PolicyConfig) -> PolicyConfig:
        if value.kd is not None:
            raise ValueError("rl.policy.kd: the teacher term is chosen per arm; move it to arms[].kd")
        return value

    @model_validator(mode="after")
    def _names(self) -> "RLConfig":
        names = [a.name for a in self.arms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rl.arms: the names {twice} are used twice; give every arm its own name")
        return self


def check_tokenizers(teacher_tokenizer: Any, student_tokenizer: Any, *, served: bool = False) -> None:
    """Refuse token-level KD between different tokenizers, naming what differs and what would work instead.

    A ``served`` teacher scores the student's token ids as given, so it needs only the same id map."""
    report = compare_tokenizers(teacher_tokenizer, student_tokenizer)
    if report.ok or (served and report.same_vocab):
        return
    if report.same_vocab:
        instead = ("The vocabularies match (the same token → id map), so the sampled-token estimators can still "
                   "score the student's own tokens: serve the teacher (teacher.backend: openai, a vLLM / SGLang / "
                   "llama.cpp server) and use estimator k2, k1_reward or k3; 'exact' needs the teacher's weights.")
    else:
        instead = ("The vocabularies differ, so no token-level estimator is sound: distil at the sequence level "
                   "instead (the teacher's answers as STaR data in selftrain, or a respond stage and SFT).")
    raise TokenizerMismatchError("rl: the teacher and the student tokenize differently:\n"
                                 + "\n".join(f"  - {d}" for d in report.differences) + "\n" + instead)


def check_rewards(task: ReasoningTask, problems: list[dict]) -> None:
    """Before any rollout: the verifier gives each problem's own gold answer 1 and no answer 0, nothing else."""
    check = get_verifier(task.verifier)
    for p in problems:
        for given, want, what in ((p["answer"], 1.0, "its own gold answer"), (None, 0.0, "no answer")):
            value = check(given, p["answer"])
            if value not in (0.0, 1.0):
                raise ValueError(f"rl: verifier {task.verifier!r} gives problem {p['id']} {what} the reward "
                                 f"{value!r}; GRPO's group advantages need a binary verdict (0 or 1): threshold a "
                                 f"graded verifier, or pick one of numeric, exact, choice")
            if value != want:
                raise ValueError(f"rl: verifier {task.verifier!r} gives problem {p['id']} {what} the reward "
                                 f"{value}, not {want}: no response could be rewarded correctly. Check the "
                                 f"problem's answer {p['answer']!r} or pick another verifier")


def verdict(task: ReasoningTask, response: str, gold: str) -> float:
    """The verifier's reward of a response: its extracted answer checked against the gold one (1 or 0)."""
    return score_response(response, gold, task.verifier, truncated=False)["reward"]


def _problems(ctx: "StageContext", cfg: RLConfig) -> list[dict]:
    problems = train_problems(ctx.run)
    if cfg.prompts == "boundary":
        stats = ctx.run.records.read(tables.STATS)
        boundary = set(stats[stats["hs_label"] == "boundary"]["problem_id"])
        problems = [p for p in problems if p["id"] in boundary]
        if not problems:
            raise ValueError("rl.prompts: boundary, but the estimate stage labelled no problem boundary; use "
                             "prompts: train, or raise estimate.k so mixed problems show")
    return problems[: cfg.limit] if cfg.limit else problems


def _teacher(ctx: "StageContext") -> tuple[Any, Any]:
    """(teacher, its tokenizer): the weights in process (hf), else the ledgered backend as a served KD teacher."""
    if ctx.route is not None and ctx.route.config.backend != "hf":
        ledgered = ctx.teacher
        tokenizer = getattr(ledgered.inner, "tokenizer", None)
        if tokenizer is None:
            raise ValueError(f"rl: the {ctx.route.config.backend!r} teacher scores the student's tokens for the "
                             "sampled-token estimators, which needs its tokenizer to check it is the student's: "
                             "set teacher.tokenizer (the served model's)")
        return ServedTeacher(ledgered, tokenizer), tokenizer
    return ctx.teacher_weights()


def _signature(cfg: RLConfig, arm: RLArm, seed: int) -> str:
    """What decides an arm's training: a saved arm with another signature is trained again."""
    settings = cfg.model_dump(mode="json", exclude={"arms"})
    return hashlib.sha256(json.dumps({"arm": arm.model_dump(mode="json"), "seed": seed, **settings},
                                     sort_keys=True).encode()).hexdigest()[:16]


def _dev(ctx: "StageContext", n: int) -> list[dict]:
    frame = ctx.run.records.read(tables.PROBLEMS)
    rows = frame[frame["split"] == "dev"].to_dict("records")[:n]
    if n and not rows:
        raise ValueError(f"rl.heldout={n} measures the KL to the teacher on dev problems, and there are none: set "
                         "problems.dev (e.g. 16), or rl.heldout: 0")
    return rows


def _train_arm(ctx: "StageContext", arm: RLArm, objective: PolicyObjective, problems: list[dict],
               dev: list[dict], teacher: Any) -> dict:
    cfg: RLConfig = ctx.config
    task = ctx.require_task()
    model, tokenizer = load_model(ctx.run.artifacts / tables.STUDENT, "the student")
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=True)

    def reward(index: int, text: str) -> float:
        return verdict(task, text, problems[index]["answer"])

    prompts = [encode_prompt(tokenizer, prompt(task, p["question"])) for p in problems]
    source = GRPOSource(prompts, model, reward, cfg.rollouts, decode=decode, eos_id=eos, pad_id=pad,
                        chunk_size=cfg.policy.chunk_size)
    evaluate = None
    if dev and teacher is not None:
        dev_prompts = [encode_prompt(tokenizer, prompt(task, p["question"])) for p in dev]
        best: list[float] = []

        def evaluate(student: Any) -> dict[str, float]:
            found = heldout_kl(student, teacher, dev_prompts, eos_id=eos, pad_id=pad, seed=ctx.seed,
                               max_new_tokens=cfg.rollouts.max_new_tokens, temperature=cfg.rollouts.temperature,
                               reward=lambda i, ids: verdict(task, decode(ids), dev[i]["answer"]),
                               chunk_size=cfg.policy.chunk_size)
            if best and found["heldout_kl"] >= best[0] and not objective.switched:
                objective.switch()  # only schedule switch_on_plateau reads it
                console.info(f"rl: {arm.name}: the held-out KL stopped improving; reward only from now on")
            best[:] = [min(best + [found["heldout_kl"]])]
            return found

    name = f"rl-{arm.name}"
    seed = ctx.seed if cfg.seed is None else cfg.seed
    result = train(model, objective, source, cfg.loop.model_copy(update={"seed": seed}), run=ctx.run,
                   evaluate=evaluate, name=name)
    save_causal_lm(result.model.eval(), tokenizer, ctx.run.artifact(tables.RL, arm.name))
    shutil.rmtree(ctx.run.artifacts / "checkpoints" / name, ignore_errors=True)
    term = arm.teacher_term()
    return {"objective": arm.objective, "kd": None if term is None else term.model_dump(), "seed": seed,
            "steps": result.steps,
            "seconds": round(result.seconds, 1), "prompts": len(prompts), "rollouts": source.rollouts,
            "generated_tokens": source.generated_tokens, "teacher_tokens": objective.teacher_tokens,
            "teacher_unscored": getattr(objective.teacher, "mismatched", 0),
            "generated_tokens_per_step": source.generated_tokens / max(result.steps, 1),
            "final": {k: v for k, v in result.metrics.items() if isinstance(v, (int, float))},
            "evaluations": result.evaluations,
            "heldout_kl": result.evaluations[-1]["heldout_kl"] if result.evaluations else None}


def run(ctx: "StageContext") -> dict:
    cfg: RLConfig = ctx.config
    task = ctx.require_task()
    problems = _problems(ctx, cfg)
    check_rewards(task, problems)
    dev = _dev(ctx, cfg.heldout)
    _, student_tokenizer = load_model(ctx.run.artifacts / tables.STUDENT, "the student")
    teacher, teacher_tokenizer = _teacher(ctx)
    served = isinstance(teacher, ServedTeacher)
    check_tokenizers(teacher_tokenizer, student_tokenizer, served=served)
    if served and dev:
        console.info("rl: the held-out exact KL needs the teacher's weights; with a served teacher it is skipped")
        dev = []
    path = ctx.run.artifacts / tables.RL_SUMMARY
    summary = ctx.run.read_json(tables.RL_SUMMARY) if path.exists() else {}
    todo = [a for a in cfg.arms if summary.get(a.name, {}).get("signature") != _signature(cfg, a, ctx.seed)
            or not (ctx.run.artifacts / tables.RL / a.name / "config.json").exists()]
    for arm in cfg.arms:
        if arm not in todo:
            console.info(f"[dim]rl: {arm.name} already trained, skipped[/dim]")
    # Every objective before any rollout: each warns (kd_never_applies) at the start, not after the arms before it.
    objectives = {}
    for arm in todo:
        term = arm.teacher_term()
        objectives[arm.name] = PolicyObjective(
            cfg.policy.model_copy(update={"kd": term}), teacher=None if term is None else teacher,
            student_tokenizer=student_tokenizer, teacher_tokenizer=teacher_tokenizer,
            group_size=cfg.rollouts.group_size, label=f"rl: the KD term of arm {arm.name!r}")
    for arm in todo:
        summary[arm.name] = {**_train_arm(ctx, arm, objectives[arm.name], problems, dev, teacher),
                             "signature": _signature(cfg, arm, ctx.seed)}
        ctx.run.write_json(tables.RL_SUMMARY, summary)
        s = summary[arm.name]
        console.info(f"rl: {arm.name} ({arm.objective}): {s['steps']} steps in {s['seconds']} s, "
                     f"{s['generated_tokens']} tokens generated, {s['teacher_tokens']} scored by the teacher, "
                     f"reward {s['final'].get('reward', float('nan')):.2f}")
    return {n: {k: v[k] for k in ("objective", "steps", "generated_tokens", "teacher_tokens", "heldout_kl")}
            for n, v in summary.items()}
