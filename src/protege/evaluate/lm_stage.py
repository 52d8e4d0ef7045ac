"""The ``evaluate_lm`` stage: every trained student LM against the teacher on held-out prompts, and the report.

Writes ``artifacts/lm_metrics.json`` and renders it as the run's report (``artifacts/report.html`` and
``report.md``). Per model: teacher-forced fit to the teacher's held-out answers (NLL, KL to the teacher, top-1
agreement), then greedy answers to the held-out prompts (task accuracy when gold answers are given, tokens per
answer, generation speed on this machine). The student before training (``initial``) is the reference point.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pydantic import Field

from protege import console
from protege.section import Section

if TYPE_CHECKING:
    from pathlib import Path

    from protege.pipeline import StageContext
    from protege.run import Run

METRICS = "lm_metrics.json"
COLUMNS = (("nll", "NLL / token"), ("kl", "KL(teacher‖model) / token"), ("top1_agreement", "top-1 agreement"),
           ("task_accuracy", "task accuracy"), ("tokens_per_answer", "tokens / answer"),
           ("tokens_per_second", "tokens / s"))


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
    from protege.data.sources import load_source

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
    from protege.evaluate.lm_metrics import generation_eval, response_fit
    from protege.models.zoo import load_causal_lm
    from protege.train.lm_data import LMExamples
    from protege.train.lm_stage import load_teacher, trained_students
    from protege.train.student import load_student

    cfg: EvaluateLMConfig = ctx.config
    students = trained_students(ctx.run)
    if not students:
        raise ValueError("evaluate_lm needs trained students: add a 'train_lm' stage before it")
    teacher, teacher_tok = load_teacher(ctx, "float32")
    responses = ctx.run.records.read("responses")
    held = responses[responses["split"] == cfg.split].head(cfg.max_examples) if not responses.empty else responses
    if held.empty:
        raise ValueError(f"no teacher response in split {cfg.split!r} to score against: answer that split in the "
                         f"respond stage (respond.splits: [train, {cfg.split}])")
    prompts = ctx.run.records.read("prompts")
    prompts = prompts[prompts["split"] == cfg.split]["prompt"].astype(str).tolist()[: cfg.generate_examples]
    gold = _gold(cfg) if cfg.answers else {}
    golds = [gold.get(p) for p in prompts] if gold else None
    if golds is not None and any(g is None for g in golds):
        console.warn(f"{sum(g is None for g in golds)} held-out prompts have no gold answer in {cfg.answers}; "
                     "task accuracy is left out")
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
    if cfg.include_initial and ctx.recipe.train_lm is not None:
        initial, tok = load_student(ctx.recipe.train_lm.student,
                                    ctx.recipe.teacher.model if ctx.recipe.teacher else None)
        models["initial"] = judge(initial, tok, True)
    for name, info in students.items():
        model, tok = load_causal_lm(info["path"])
        models[name] = judge(model, tok, True)
        console.info(f"evaluate_lm: {name}: KL {models[name]['kl']:.3f}, NLL {models[name]['nll']:.3f}")
    teacher_speed = models["teacher"].get("tokens_per_second")
    for name, m in models.items():
        if name != "teacher" and teacher_speed and "tokens_per_second" in m:
            m["speedup_vs_teacher"] = m["tokens_per_second"] / teacher_speed
    return {"name": ctx.recipe.name, "split": cfg.split, "examples_scored": len(held),
            "prompts_answered": len(prompts) if cfg.generate else 0, "answers_source": cfg.answers,
            "models": models, "training": students, "headline": _headline(models)}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def report_tables(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the model comparison table (one row per model)."""
    header = ["model", *(label for _, label in COLUMNS)]
    rows = [[name, *(_cell(m.get(key)) for key, _ in COLUMNS)] for name, m in result["models"].items()]
    return header, rows


def training_rows(result: Mapping[str, Any]) -> list[list[str]]:
    return [[name, str(t.get("steps")), _cell(t.get("seconds_per_step")), _cell(t.get("final_loss"))]
            for name, t in result.get("training", {}).items()]


def write_lm_report(run: "Run") -> "Path":
    """Render ``artifacts/lm_metrics.json`` into ``artifacts/report.html`` and ``report.md``; returns the HTML."""
    from protege.evaluate.report import STYLE, _html_table, _md_table

    result = run.read_json(METRICS)
    title = f"protege report: {result.get('name', 'run')}"
    header, rows = report_tables(result)
    train_head = ["student", "steps", "s / step", "final train loss"]
    facts = [["held-out split", str(result["split"])], ["teacher answers scored", str(result["examples_scored"])],
             ["prompts answered by each model", str(result["prompts_answered"])],
             ["gold answers", str(result.get("answers_source") or "none")]]
    samples = [[name, m.get("sample", "")] for name, m in result["models"].items() if "sample" in m]
    page = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
            f"<p class='headline'>{html.escape(result['headline'])}</p>",
            "<h2>Students against the teacher on held-out prompts</h2>", _html_table(header, rows),
            "<h2>Training</h2>", _html_table(train_head, training_rows(result)),
            "<h2>Facts</h2>", _html_table(["fact", "value"], facts),
            "<h2>First held-out answer of each model</h2>", _html_table(["model", "answer"], samples),
            "</body></html>"]
    md = [f"# {title}", "", f"**{result['headline']}**", "", "## Students against the teacher on held-out prompts",
          "", _md_table(header, rows), "", "## Training", "", _md_table(train_head, training_rows(result)), "",
          "## Facts", "", _md_table(["fact", "value"], facts), "", "## First held-out answer of each model", "",
          _md_table(["model", "answer"], [[n, s.replace("\n", " ")] for n, s in samples]), ""]
    run.artifact("report.md").write_text("\n".join(md))
    target = run.artifact("report.html")
    target.write_text("\n".join(page))
    return target


def run(ctx: "StageContext") -> dict[str, Any]:
    result = evaluate(ctx)
    ctx.run.write_json(METRICS, result)
    page = write_lm_report(ctx.run)
    console.info(result["headline"])
    return {"headline": result["headline"], "report": str(page)}
