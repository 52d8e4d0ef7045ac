"""The ``rationales`` stage: a teacher's analyses and rewrites of unlabelled reviews (FSA distillation's corpus).

``mode: live`` sends every review of ``reviews_file`` to the teacher through the run's ledger once per kind in
``kinds`` (``analysis``: one block per opinion target with aspect, five-level sentiment and reasoning;
``rewrite``: a first-person restatement of the reviewer's feelings), under a call budget checked before each
chunk. ``mode: import`` reads a teacher's outputs that already exist in the same file (``response_field``),
such as the Mixtral-8x7B file (``reviews_file: fsa_mixtral``).

Every row is kept as it came (``raw``) and cleaned (:func:`~protege.tasks.absa.rationale_text.clean`: run-on
text cut, ``usable`` False below ``min_chars``); analyses are parsed into opinions and an overall polarity. Text
that does not parse is counted, never an error. Without gold labels the quality measures, per teacher, are the
parse rate of the analyses and the agreement of each parsed analysis's overall polarity with the review's star
rating (1–2 negative, 3 neutral, 4–5 positive), with a Wilson interval, over all rated reviews and over the
polar ones (not 3 stars).

A file whose rows lack the text field (or, for import, the response field) is an error before anything is
spent, naming the file, the field and the fields it has.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, model_validator

from protege.core import console
from protege.core.records import record_id
from protege.core.section import PATH, Section
from protege.data.packaged import shared_data_dir
from protege.evaluate.intervals import wilson
from protege.models.base import SamplingParams
from protege.stage import StageContext
from protege.tasks.absa import tables as t
from protege.tasks.absa.prompts import analysis_prompt, rewrite_prompt
from protege.tasks.absa.rationale_text import KINDS, clean, kind_of, parse_analysis, star_polarity
from protege.tasks.absa.synthesize import Budget

# Named review files: name -> (folder under ../shared/data, environment variable, file in it).
NAMED = {"fsa_mixtral": ("teacher_outputs/fsa_mixtral", "PROTEGE_FSA_DIR", "reviews_500.jsonl")}
PROMPTS = {"analysis": analysis_prompt, "rewrite": rewrite_prompt}


class RationalesConfig(Section):
    """Where the reviews come from, which rationales the teacher writes, and how they are cleaned."""

    mode: Literal["live", "import"] = Field(
        "live", description="live: the teacher writes rationales; import: read them from reviews_file."
    )
    reviews_file: str = Field(
        ...,
        description="JSONL or JSON list of reviews: a path, or fsa_mixtral (500 reviews with star ratings and "
        "Mixtral-8x7B rationales; $PROTEGE_FSA_DIR, else ../shared/data/teacher_outputs/fsa_mixtral).",
        json_schema_extra=PATH,
    )
    text_field: str = Field("Text", description="Field holding the review text.")
    rating_field: Optional[str] = Field(
        "Overall", description="Field holding a 1–5 star rating (the agreement reference); null: none."
    )
    id_field: Optional[str] = Field("ID", description="Field holding a review id; null: the row number.")
    response_field: str = Field(
        "mixtral_response", description="import: the field holding the teacher's rationale."
    )
    import_teacher: str = Field(
        "mixtral-8x7b-instruct", description="import: the teacher recorded on the rows."
    )
    kinds: list[Literal["analysis", "rewrite"]] = Field(
        default_factory=lambda: ["analysis"], min_length=1,
        description="live: what the teacher writes for every review (analysis, rewrite, or both).",
    )
    limit: Optional[int] = Field(None, ge=1, description="Use at most this many reviews (a seeded sample).")
    min_chars: int = Field(40, ge=1, description="A cleaned rationale shorter than this is not usable.")
    max_calls: int = Field(1000, ge=0, description="live: most teacher requests.")
    max_new_tokens: int = Field(256, ge=16, description="live: tokens per rationale.")
    temperature: float = Field(0.0, ge=0, description="live: sampling temperature.")
    chunk_size: int = Field(8, ge=1, description="live: requests per teacher call (and budget check).")

    @model_validator(mode="after")
    def _check(self) -> "RationalesConfig":
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"rationales.kinds has duplicates: {self.kinds}")
        return self


def reviews_path(name: str) -> Path:
    """The file a ``reviews_file`` value names; an error saying how to fix it when it does not exist."""
    if name in NAMED:
        folder, env, file = NAMED[name]
        path = shared_data_dir(folder, env) / file
        hint = f"set ${env} to the folder holding {file}, or give rationales.reviews_file as a path"
    else:
        path, hint = Path(name).expanduser(), "give rationales.reviews_file as an existing path or one of " \
            f"{', '.join(NAMED)}"
    if not path.is_file():
        raise FileNotFoundError(f"rationales.reviews_file: {path} not found; {hint}")
    return path


def read_reviews(cfg: RationalesConfig) -> list[dict]:
    """The file's rows; every row must hold the text field (and for import the response field)."""
    path = reviews_path(cfg.reviews_file)
    text = path.read_text()
    try:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()] if path.suffix == ".jsonl" \
            else json.loads(text)
    except ValueError as exc:
        raise ValueError(f"rationales.reviews_file: {path} is not valid JSON/JSONL ({exc})") from exc
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"rationales.reviews_file: {path} holds no rows (expected a JSON list or JSONL)")
    needed = [("text_field", cfg.text_field)] + ([("response_field", cfg.response_field)]
                                                if cfg.mode == "import" else [])
    for n, row in enumerate(rows):
        for key, name in needed:
            if not isinstance(row, dict) or name not in row:
                have = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise ValueError(f"rationales.reviews_file: row {n} of {path} has no {name!r} field (it has "
                                 f"{have}); set rationales.{key} to the field that holds it")
    return rows


def _rating(row: dict, field: Optional[str]) -> Optional[float]:
    value = row.get(field) if field else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def rationale_row(review_id: str, review: str, rating: Optional[float], raw: str, kind: Optional[str],
                  teacher: str, prompt_hash: str, min_chars: int) -> dict:
    """One table row: the raw text, its cleaned form, its kind (detected when None), parse and overall."""
    cleaned = clean(raw, min_chars)
    analysis = parse_analysis(cleaned.text)
    return {
        "id": f"{review_id}:{kind or kind_of(cleaned.text)}",
        "review_id": review_id,
        "review": review,
        "rating": rating,
        "kind": kind or kind_of(cleaned.text),
        "raw": raw,
        "text": cleaned.text,
        "cut": cleaned.cut or "",
        "usable": not cleaned.too_short,
        "parsed": analysis.parsed,
        "opinions": json.dumps(analysis.as_dicts()),
        "overall": analysis.overall or "",
        "teacher": teacher,
        "prompt_hash": prompt_hash,
    }


def _live(ctx: StageContext, cfg: RationalesConfig, reviews: list[tuple[str, str, Optional[float]]]) -> tuple:
    budget = Budget(cfg.max_calls, 10**12)
    wanted = [(r, kind) for r in reviews for kind in cfg.kinds]
    if len(wanted) > cfg.max_calls:
        console.warn(f"rationales: {len(wanted)} requests wanted, rationales.max_calls allows {cfg.max_calls}",
                     code="rationales_short")
    teacher, name = ctx.teacher, f"{ctx.teacher.backend}:{ctx.teacher.model_id}"
    params = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=ctx.seed)
    rows, length_cut = [], 0
    for start in range(0, len(wanted), cfg.chunk_size):
        allowed = budget.allows(min(cfg.chunk_size, len(wanted) - start))
        if not allowed:
            break
        chunk = wanted[start: start + allowed]
        prompts = [PROMPTS[kind](review) for (_, review, _), kind in chunk]
        answers = [g[0] for g in teacher.generate(prompts, params)]
        budget.spend(answers)
        for ((rid, review, rating), kind), prompt, answer in zip(chunk, prompts, answers):
            length_cut += answer.finish_reason == "length"
            rows.append(rationale_row(rid, review, rating, answer.text, kind, name, record_id(prompt),
                                      cfg.min_chars))
    return rows, {"budget": budget.as_dict(), "requests": len(wanted), "stopped_at_max_new_tokens": length_cut}


def _agreement(rows: list[dict]) -> dict:
    def rate(pairs: list[tuple[str, str]]) -> dict:
        hits = sum(a == b for a, b in pairs)
        low, high = wilson(hits, len(pairs))
        return {"n": len(pairs), "agree": hits, "rate": hits / len(pairs) if pairs else None,
                "interval": [low, high]}

    rated = [(r["overall"], star_polarity(r["rating"])) for r in rows if r["parsed"] and r["rating"] is not None]
    return {"all": rate(rated), "polar": rate([p for p in rated if p[1] != "neutral"])}


def quality(rows: list[dict]) -> dict:
    """Per teacher: kinds, cuts, usable share, parse rate of the analyses, star agreement of parsed ones."""
    out = {}
    by_teacher: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_teacher[r["teacher"]].append(r)
    for teacher, rs in by_teacher.items():
        analyses = [r for r in rs if r["kind"] == "analysis"]
        parsed = sum(r["parsed"] for r in analyses)
        out[teacher] = {
            "rows": len(rs),
            "kinds": dict(Counter(r["kind"] for r in rs)),
            "usable": sum(r["usable"] for r in rs),
            "cut": dict(Counter(r["cut"] for r in rs if r["cut"])),
            "analyses": len(analyses),
            "parsed": parsed,
            "parse_rate": parsed / len(analyses) if analyses else None,
            "star_agreement": _agreement(analyses),
        }
    return out


def run(ctx: StageContext) -> dict:
    cfg: RationalesConfig = ctx.config
    source = read_reviews(cfg)
    if cfg.limit is not None and len(source) > cfg.limit:
        picked = sorted(random.Random(ctx.seed).sample(range(len(source)), cfg.limit))
        source = [source[i] for i in picked]
    reviews = [(str(r.get(cfg.id_field, n)) if cfg.id_field else str(n), str(r[cfg.text_field]),
                _rating(r, cfg.rating_field)) for n, r in enumerate(source)]
    if cfg.mode == "import":
        rows = [rationale_row(rid, review, rating, str(r[cfg.response_field] or ""), None, cfg.import_teacher,
                              "", cfg.min_chars) for (rid, review, rating), r in zip(reviews, source)]
        summary: dict = {}
    else:
        rows, summary = _live(ctx, cfg, reviews)
    ctx.run.records.replace(t.RATIONALES, [{**r, "split": t.RATIONALES, "source": cfg.mode} for r in rows],
                            stage=ctx.name)
    summary.update({"mode": cfg.mode, "reviews": len(reviews), "teachers": quality(rows)})
    ctx.run.write_json(t.RATIONALE_SUMMARY, summary)
    for teacher, q in summary["teachers"].items():
        rate = q["parse_rate"]
        agree = q["star_agreement"]["all"]["rate"]
        console.info(f"rationales: {teacher}: {q['rows']} rationales ({q['usable']} usable), analyses parsed "
                     f"{'—' if rate is None else f'{rate:.1%}'}, star agreement "
                     f"{'—' if agree is None else f'{agree:.1%}'}")
    return {"rows": len(rows), "usable": sum(r["usable"] for r in rows)}
