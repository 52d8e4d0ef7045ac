"""The ``synthesize`` stage: synthetic labelled sentences from the teacher (both DS²-ABSA streams) or a file.

``mode: live`` plans the requests (:mod:`protege.tasks.absa.synth_plan`) and sends them through the ledgered
teacher in chunks, under a budget of calls and tokens checked before each chunk (a re-run finds every answer
already paid for in the ledger and counts it against the same budget, so it reproduces the same rows for
nothing). ``mode: import`` reads external synthetic rows instead (DS²-ABSA's GPT-3.5 files, or a file of the
same shape), so the rest of the pipeline can be measured on a large teacher's output.

Every row keeps its ``stream``, ``method``, ``parents`` (seed ids), ``raw_label`` (the teacher's pairs as
parsed), ``aspects`` (our normalised label), ``published`` (a file's own normalised label, when imported),
``teacher`` and ``prompt_hash``. Dropped and counted: answers without a sentence, exact duplicates (also of a
seed sentence), sentences equal to a dev or test sentence, and rows whose every pair failed normalisation.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Literal, Optional

from pydantic import Field, model_validator

from protege.core import console
from protege.core.records import record_id
from protege.core.section import Section
from protege.models.base import SamplingParams
from protege.stage import StageContext
from protege.tasks.absa import synth_plan as plan
from protege.tasks.absa import tables as t
from protege.tasks.absa.data import load_ds2_synthetic
from protege.tasks.absa.ground import normalise
from protege.tasks.absa.metrics import generation_rates
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.prompts import read_written
from protege.tasks.absa.rows import dump_aspects, examples_of
from protege.tasks.absa.task import AbsaTask, Issues


class InstanceConfig(Section):
    """The instance-driven stream: new sentences written from seed sentences."""

    methods: list[Literal["paraphrase_one", "paraphrase_comb", "aspect_mask", "context_mask"]] = Field(
        default_factory=lambda: list(plan.INSTANCE_METHODS), description="Which rewrites to ask for."
    )
    per_seed: int = Field(2, ge=0, description="Requests per seed sentence and per single-seed method.")
    combinations: int = Field(20, ge=0, description="paraphrase_comb requests (random pairs of seeds).")
    context_width: int = Field(3, ge=1, description="Words hidden by context_mask.")


class KeypointConfig(Section):
    """The key-point-driven stream: brainstorm lists, sample attributes, write sentences."""

    domain: str = Field("laptops", description="What the reviews are about, e.g. 'laptops' or 'restaurants'.")
    brainstorm_file: Optional[str] = Field(
        None,
        description="YAML of lists {subjects, aspects, opinions: "
        "{polarity: [...]}}; leave out to ask the teacher.",
    )
    brainstorm_size: int = Field(20, ge=2, description="Items asked for per brainstormed list.")
    sentences: int = Field(40, ge=0, description="Key-point sentences to request.")
    max_aspects: int = Field(3, ge=1, description="Most aspects sampled for one sentence.")
    patterns: dict[Literal["consistent", "mixed", "implicit"], float] = Field(
        default_factory=lambda: {"consistent": 0.5, "mixed": 0.3, "implicit": 0.2},
        description="Sampling weight of each sentiment pattern.",
    )


class SynthesizeConfig(Section):
    """Where synthetic sentences come from and how much the teacher may spend on them."""

    mode: Literal["live", "import"] = Field(
        "live", description="live: ask the teacher; import: read import_file."
    )
    import_file: Optional[str] = Field(
        None,
        description="import: a DS²-ABSA file name (lap_all2_instance, "
        "res15_all2_instance, res15_all5_instance) or a path of the same shape.",
    )
    import_dir: Optional[str] = Field(
        None,
        description="import: folder of the DS²-ABSA files; default "
        "$PROTEGE_DS2_DIR, else ../shared/data/teacher_outputs/ds2_gpt35.",
    )
    import_teacher: str = Field(
        "openai:gpt-3.5-turbo", description="import: the teacher recorded on the rows."
    )
    limit: Optional[int] = Field(None, ge=1, description="Keep at most this many rows (a seeded sample).")
    streams: list[Literal["instance", "keypoint"]] = Field(
        default_factory=lambda: ["instance", "keypoint"], description="live: the streams to run."
    )
    instance: InstanceConfig = Field(default_factory=InstanceConfig, description="The instance stream.")
    keypoint: KeypointConfig = Field(default_factory=KeypointConfig, description="The key-point stream.")
    max_calls: int = Field(500, ge=0, description="live: most teacher requests (brainstorm included).")
    max_tokens: int = Field(400_000, ge=0, description="live: most prompt + completion tokens.")
    temperature: float = Field(0.8, ge=0, description="live: sampling temperature (variety across rewrites).")
    max_new_tokens: int = Field(96, ge=8, description="live: tokens per answer.")
    chunk_size: int = Field(16, ge=1, description="live: requests per teacher call (and budget check).")

    @model_validator(mode="after")
    def _check(self) -> "SynthesizeConfig":
        if self.mode == "import" and not self.import_file:
            raise ValueError(
                "synthesize.mode is import but synthesize.import_file is not set: name a DS²-ABSA file "
                "(lap_all2_instance, ...) or a path"
            )
        if self.mode == "live" and not self.streams:
            raise ValueError("synthesize.streams is empty: list instance and/or keypoint")
        return self


class Budget:
    """Calls and tokens spent, checked before each chunk of requests."""

    def __init__(self, calls: int, tokens: int):
        self.max_calls, self.max_tokens, self.calls, self.tokens = calls, tokens, 0, 0

    def allows(self, n: int) -> int:
        return 0 if self.tokens >= self.max_tokens else max(0, min(n, self.max_calls - self.calls))

    def spend(self, generations: list) -> None:
        self.calls += len(generations)
        self.tokens += sum(g.prompt_tokens + g.completion_tokens for g in generations)

    def as_dict(self) -> dict:
        return {
            "calls": self.calls,
            "tokens": self.tokens,
            "max_calls": self.max_calls,
            "max_tokens": self.max_tokens,
        }


def _ask(
    ctx: StageContext, cfg: SynthesizeConfig, prompts: list, budget: Budget, offset: int
) -> list[Optional[str]]:
    """Answers (None past the budget), chunk by chunk through the ledger.

    A prompt asked again (``per_seed`` > 1) goes out in a later pass with another sampling seed: one prompt
    with the same parameters is one ledger entry, so it would come back as the same sentence.
    """
    seen: Counter = Counter()
    repeat = []
    for prompt in prompts:
        key = json.dumps(prompt, sort_keys=True)
        repeat.append(seen[key])
        seen[key] += 1
    teacher, out = ctx.teacher, [None] * len(prompts)
    for k in range(max(repeat, default=-1) + 1):
        todo = [i for i, r in enumerate(repeat) if r == k]
        for start in range(0, len(todo), cfg.chunk_size):
            allowed = budget.allows(min(cfg.chunk_size, len(todo) - start))
            if not allowed:
                return out
            chunk = todo[start : start + allowed]
            params = SamplingParams(
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                seed=ctx.seed * 1_000_003 + offset + 100_000 * k + start,
            )
            answers = [g[0] for g in teacher.generate([prompts[i] for i in chunk], params)]
            budget.spend(answers)
            for i, answer in zip(chunk, answers):
                out[i] = answer.text
    return out


def _live_requests(
    ctx: StageContext, cfg: SynthesizeConfig, task: AbsaTask, budget: Budget, rng: random.Random
) -> tuple[list[plan.Request], dict]:
    seeds = examples_of(ctx.run.records.read(t.SEED))
    requests, notes = [], {}
    if "instance" in cfg.streams:
        i = cfg.instance
        requests += plan.plan_instance(seeds, i.methods, i.per_seed, i.combinations, i.context_width, rng)
    if "keypoint" in cfg.streams and cfg.keypoint.sentences:
        k = cfg.keypoint
        if k.brainstorm_file:
            brainstorm = plan.read_brainstorm(k.brainstorm_file, task.polarities)
        else:
            asks = plan.brainstorm_prompts(k.domain, task.polarities, k.brainstorm_size)
            answers = _ask(ctx, cfg, list(asks.values()), budget, offset=10_000_000)
            brainstorm = plan.brainstorm_from_answers(
                dict(zip(asks, [a or "" for a in answers])), task.polarities
            )
        if brainstorm is None:
            notes["keypoint"] = "skipped: the brainstorm came back with an empty list"
        else:
            notes["brainstorm"] = {
                "subjects": len(brainstorm.subjects),
                "aspects": len(brainstorm.aspects),
                "opinions": {q: len(v) for q, v in brainstorm.opinions.items()},
            }
            requests += plan.plan_keypoint(
                brainstorm, k.domain, k.sentences, k.patterns, k.max_aspects, task.polarities, rng
            )
    return requests, notes


def _live_rows(
    ctx: StageContext, cfg: SynthesizeConfig, task: AbsaTask, drops: Counter, issues: Issues
) -> tuple:
    budget = Budget(cfg.max_calls, cfg.max_tokens)
    requests, notes = _live_requests(ctx, cfg, task, budget, random.Random(ctx.seed))
    if len(requests) > budget.allows(len(requests)):
        console.warn(
            f"synthesize: {len(requests)} requests planned, the budget allows "
            f"{budget.allows(len(requests))} more (synthesize.max_calls / max_tokens)"
        , code="synthesis_short")
    answers = _ask(ctx, cfg, [r.prompt for r in requests], budget, offset=0)
    teacher = f"{ctx.teacher.backend}:{ctx.teacher.model_id}"
    rows, parsed, normed = [], [], []
    for n, (request, answer) in enumerate(zip(requests, answers)):
        if answer is None:
            drops["over_budget"] += 1
            continue
        written = read_written(answer)
        if written.sentence is None:
            drops["no_sentence"] += 1
            continue
        pairs = written.parsed.pairs
        if not written.parsed.parsed and request.planned:
            pairs = list(request.planned)
            issues.add("label_from_plan", written.sentence[:60])
        norm = normalise(written.sentence, pairs, task, where=request.method)
        parsed.append(written.parsed)
        normed.append(norm)
        issues.merge(norm.issues)
        rows.append(
            {
                "id": record_id(request.prompt, n),
                "sentence": written.sentence,
                "stream": request.stream,
                "method": request.method,
                "parents": list(request.parents),
                "raw_label": json.dumps(pairs),
                "aspects": dump_aspects(norm.aspects),
                "published": "",
                "teacher": teacher,
                "prompt_hash": record_id(request.prompt),
                "had_pairs": bool(pairs),
            }
        )
    summary = {
        "requests": len(requests),
        "budget": budget.as_dict(),
        **notes,
        "generation": generation_rates(parsed, normed) if parsed else {},
    }
    return rows, summary


def _import_rows(cfg: SynthesizeConfig, task: AbsaTask, issues: Issues) -> tuple[list[dict], dict]:
    loaded = load_ds2_synthetic(cfg.import_file, task, cfg.import_dir)
    issues.merge(loaded.issues)
    rows, changed = [], 0
    for r in loaded.rows:
        # parse_pairs splits pairs GPT-3.5 fused into one string ("keyboard, 'negative")
        norm = normalise(r.sentence, parse_pairs(list(r.raw)).pairs, task, where=r.id)
        issues.merge(norm.issues)
        changed += norm.kept_verbatim != len(r.raw) or len(norm.aspects) != len(r.raw)
        rows.append(
            {
                "id": r.id,
                "sentence": r.sentence,
                "stream": "instance",
                "method": r.method,
                "parents": list(r.parents),
                "raw_label": json.dumps([list(x) for x in r.raw]),
                "aspects": dump_aspects(norm.aspects),
                "published": dump_aspects(r.aspects),
                "teacher": cfg.import_teacher,
                "prompt_hash": "",
                "had_pairs": bool(r.raw),
            }
        )
    return rows, {
        "source": loaded.source,
        "rows_read": len(loaded.rows),
        "rows_changed_by_normalisation": changed,
    }


def _filter(ctx: StageContext, rows: list[dict], drops: Counter) -> list[dict]:
    held_out = {
        s.strip() for name in (t.DEV, t.TEST, t.HARD) for s in ctx.run.records.read(name).get("sentence", [])
    }
    seen = {s.strip() for s in ctx.run.records.read(t.SEED).get("sentence", [])}
    kept = []
    for row in rows:
        sentence = row["sentence"].strip()
        if sentence in held_out:
            drops["equals_dev_or_test"] += 1
        elif sentence in seen:
            drops["duplicate"] += 1
        elif row.pop("had_pairs") and row["aspects"] == "[]":
            drops["no_pair_survived_normalisation"] += 1
        else:
            seen.add(sentence)
            kept.append(row)
    return kept


def run(ctx: StageContext) -> dict:
    cfg: SynthesizeConfig = ctx.config
    task: AbsaTask = ctx.task or AbsaTask()
    drops, issues = Counter(), Issues()
    if cfg.mode == "import":
        rows, summary = _import_rows(cfg, task, issues)
    else:
        rows, summary = _live_rows(ctx, cfg, task, drops, issues)
    if cfg.limit is not None and len(rows) > cfg.limit:
        rows = random.Random(ctx.seed).sample(rows, cfg.limit)
    kept = _filter(ctx, rows, drops)
    ctx.run.records.replace(
        t.SYNTHETIC, [{**r, "split": t.SYNTHETIC, "source": cfg.mode} for r in kept], stage=ctx.name
    )
    summary.update(
        {
            "mode": cfg.mode,
            "kept": len(kept),
            "dropped": dict(drops),
            "issues": issues.summary(),
            "methods": dict(Counter(r["method"] for r in kept)),
            "streams": dict(Counter(r["stream"] for r in kept)),
        }
    )
    ctx.run.write_json(t.SYNTH_SUMMARY, summary)
    console.info(f"synthesize: {len(kept)} rows kept, dropped {dict(drops)}")
    return {"kept": len(kept), "dropped": sum(drops.values())}
