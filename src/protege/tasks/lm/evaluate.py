"""The ``evaluate_lm`` stage: every trained student LM against the teacher on held-out prompts.

Writes ``artifacts/lm_metrics.json`` (the ``report`` stage renders it). Per model: teacher-forced fit to the teacher's held-out answers (NLL, KL to the teacher, top-1
agreement), then greedy answers to the held-out prompts (task accuracy when gold answers are given, tokens per
answer, generation speed on this machine). The student before training (``initial``) is the reference point.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from pydantic import Field

from protege.core.errors import UserError
from protege.core import console
from protege.core.section import Section
from protege.tasks.lm import tables
from protege.data.sources import load_source
from protege.evaluate.lm_metrics import generation_eval, response_fit
from protege.models.zoo import load_causal_lm
from protege.train.lm_data import LMExamples
from protege.tasks.lm.train import trained_students
from protege.train.student import load_student

if TYPE_CHECKING:

    from protege.stage import StageContext


class EvaluateLMConfig(Section):
    """What the student LMs are judged on."""

    split: str = Field("test", description="Held-out split of the prompts and responses tables.")
    max_examples: int = Field(64, ge=1, description="Held-out teacher answers scored teacher-forced.")
    generate: bool = Field(True, description="Also let each model answer the held-out prompts (task, speed).")
    generate_examples: int = Field(32, ge=1, description="Held-out prompts each model answers.")
    max_new_tokens: int = Field(128, ge=1, description="Longest generated answer.")
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass or generate call.")
    answers: Optional[str] = Field(
        None, description="Source of gold answers (packaged name, file or hf:...), matched to prompts by text; "
        "answers are scored by their last number (arithmetic, GSM8K).")
    answers_text_column: str = Field("text", description="Column of the answers source holding the prompt.")
    answers_column: str = Field("label", description="Column of the answers source holding the gold answer.")
    include_initial: bool = Field(True, description="Also score the student before training, for reference.")


def _gold(cfg: EvaluateLMConfig) -> dict[str, str]:
    splits = load_source(cfg.answers, text_column=cfg.answers_text_column, label_column=cfg.answers_column)
    return {t: str(y) for frame in splits.values() for t, y in zip(frame["text"], frame["label"])}


def _headline(models: Mapping[str, Mapping[str, Any]]) -> str:
    kd = [n for n in models if n.endswith("kd")]
    if kd and "sft" in models and "kl" in models["sft"]:
        name = kd[0]
        a, b = models[name], models["sft"]
        verdict = "beats" if a["kl"] < b["kl"] and a["nll"] < b["nll"] else "does not beat"
        return (f"{name} {verdict} SFT-only at equal steps: held-out KL to the teacher {a['kl']:.3f} vs "
                f"{b['kl']:.3f}, NLL of the teacher's answers {a['nll']:.3f} vs {b['nll']:.3f}.")
    trained = [n for n in models if n not in ("teacher", "initial")]
    if trained and "kl" in models[trained[0]]:
        m = models[trained[0]]
        start = f" (from {models['initial']['kl']:.3f} before training)" if "initial" in models else ""
        return f"{trained[0]}: held-out KL to the teacher {m['kl']:.3f}{start}, NLL {m['nll']:.3f}."
    return "No trained student to compare."


def evaluate(ctx: "StageContext") -> dict[str, Any]:
    cfg: EvaluateLMConfig = ctx.config
    students = trained_students(ctx.run)
    if not students:
        raise UserError("evaluate_lm needs trained students: add a 'train_lm' stage before it")
    teacher, teacher_tok = ctx.teacher_weights("float32")
    responses = ctx.run.records.read(tables.RESPONSES)
    held = responses[responses["split"] == cfg.split].head(cfg.max_examples) if not responses.empty else responses
    if held.empty:
        raise UserError(f"no teacher response in split {cfg.split!r} to score against: answer that split in the "
                         f"respond stage (respond.splits: [train, {cfg.split}])")
    prompts = ctx.run.records.read(tables.PROMPTS)
    prompts = prompts[prompts["split"] == cfg.split]["prompt"].astype(str).tolist()[: cfg.generate_examples]
    gold = _gold(cfg) if cfg.answers else {}
    golds = [gold.get(p) for p in prompts] if gold else None
    if golds is not None and any(g is None for g in golds):
        console.warn(f"{sum(g is None for g in golds)} held-out prompts have no gold answer in {cfg.answers}; "
                     "task accuracy is left out", code="no_gold_answers")
        golds = None

    def judge(model: Any, tokenizer: Any, with_teacher: bool) -> dict[str, Any]:
        examples = LMExamples.from_pairs(tokenizer, held["prompt"].astype(str).tolist(),
                                         held["response"].astype(str).tolist())
        out = response_fit(model, teacher if with_teacher else None, examples, batch_size=cfg.batch_size)
        if cfg.generate and prompts:
            gen = generation_eval(model, tokenizer, prompts, golds=golds, max_new_tokens=cfg.max_new_tokens,
                                  batch_size=cfg.batch_size)
            out.update({k: v for k, v in gen.items() if k != "texts"}, sample=gen["texts"][0])
        return out

    models: dict[str, dict[str, Any]] = {"teacher": judge(teacher, teacher_tok, False)}
    train_lm = ctx.section("train_lm")
    if cfg.include_initial and train_lm is not None:
        initial, tok = load_student(train_lm.student, ctx.teacher_model)
        models["initial"] = judge(initial, tok, True)
    for name, info in students.items():
        model, tok = load_causal_lm(info["path"])
        models[name] = judge(model, tok, True)
        console.info(f"evaluate_lm: {name}: KL {models[name]['kl']:.3f}, NLL {models[name]['nll']:.3f}")
    teacher_speed = models["teacher"].get("tokens_per_second")
    for name, m in models.items():
        if name != "teacher" and teacher_speed and "tokens_per_second" in m:
            m["speedup_vs_teacher"] = m["tokens_per_second"] / teacher_speed
    return {"name": ctx.recipe_name, "split": cfg.split, "examples_scored": len(held),
            "prompts_answered": len(prompts) if cfg.generate else 0, "answers_source": cfg.answers,
            "models": models, "training": students, "headline": _headline(models)}


def run(ctx: "StageContext") -> dict[str, Any]:
    result = evaluate(ctx)
    ctx.run.write_json(tables.METRICS, result)
    console.info(result["headline"])
    return {"headline": result["headline"]}
