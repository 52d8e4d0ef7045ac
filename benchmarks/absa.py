"""Does DS²-ABSA synthetic data beat the seed alone; what do normalisation, refinement, polarity scoring add?

For each setting (a SemEval dataset and its 2 %/5 % seed, with DS²-ABSA's GPT-3.5 instance-stream file written
from that seed) and each training seed, the MiniLM tagger is trained on:

- ``seed``: the seed alone;
- ``raw``: + the GPT-3.5 rows, keeping only pairs whose term occurs verbatim (no normalisation);
- ``normalised``: + the rows normalised (grounding, synonyms, order, de-duplication);
- ``refined``: + the normalised rows after one round of noisy self-training;
- ``subset``: + a random subset of ``--polarity-rows`` normalised rows (the same for every training seed);
- ``polarity``: + the same subset, polarities scored by the embedded SmolLM2-135M teacher (soft targets);
- ``full``: the full training split (the ceiling).

Scoring all ~10k synthetic aspects of a file takes the one-thread teacher about 45 minutes, so the teacher
scores a subset and ``subset`` is its control: the two differ only in who gave the polarities. Synthetic rows weigh ``--weight`` (0.5). Scores are on the whole test split: pair F1 and aspect F1, averaged
over training seeds, with a 95 % percentile bootstrap interval over *test sentences* (each resample scores
every seed's predictions on the same resampled sentences, then averages over seeds). ``--live N`` also runs
the embedded teacher's live instance-stream synthesis on N prompts (laptops 2 %): parse and grounding rates,
and seed + those rows against the seed alone.

Units of work: one tagger (``dataset:pct:variant:seed``), a setting's polarity scoring
(``dataset:pct:polarity-scores``: the aspects of the subset scored once per setting, not per seed,
through the setting's own ledger under ``<out>/absa-ledger/``, and cached there; it runs first in its setting,
beside the other taggers, and the setting's polarity cells wait for it), and ``live:N``. ``--jobs`` (2) units
run at once, each in its own process at ``--threads`` (1) torch threads (``benchmarks/processes.py``), in the
order of ``--settings``, then ``--variants``, then ``--seeds``; ``--deadline HH:MM`` starts no unit that the
mean wall time of its kind in this invocation (before any: ``--guess-minutes`` per tagger) says would end
later. Each tagger appends one JSON line (under a file lock) to ``<out>/absa-runs.jsonl`` (a re-run skips what
is there); the parent summarises them into ``<out>/absa.json`` and ``absa-table.md``;
child logs go to ``--logs``.

    python benchmarks/absa.py --settings lap:2 --seeds 1,2 --jobs 2 --threads 1 --deadline 09:00
    python benchmarks/absa.py --summarise-only
"""

from __future__ import annotations

import argparse
import fcntl
import json
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from protege.core.run import Run
from protege.models.base import SamplingParams
from protege.models.config import TeacherConfig
from protege.models.factory import make_teacher
from protege.models.ledgered import LedgeredTeacher
from protege.tasks.absa import synth_plan
from protege.tasks.absa.data import load_ds2_synthetic, load_semeval
from protege.tasks.absa.ground import normalise
from protege.tasks.absa.metrics import aspect_scores, generation_rates, labels_of, pair_scores
from protege.tasks.absa.polarity import calibrate_polarities, polarity_words, score_aspects
from protege.tasks.absa.prompts import read_written
from protege.tasks.absa.refine import RefineConfig
from protege.tasks.absa.student import raw_aspects, self_train, training_set
from protege.tasks.absa.tagger import TaggerConfig, fit_tagger, predict_aspects
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect
from protege.train.loop import EarlyStopping, LoopConfig

sys.path.insert(0, str(Path(__file__).parent))
from processes import Unit, append_line, late, run_units  # noqa: E402  (shared with sentiment9.py)

HERE = Path(__file__).parent
RESULTS = HERE / "results"
FILES = {
    ("lap", "2"): "lap_all2_instance",
    ("res15", "2"): "res15_all2_instance",
    ("res15", "5"): "res15_all5_instance",
}
VARIANTS = ("seed", "normalised", "raw", "refined", "subset", "polarity", "full")
TASK = AbsaTask()
SCHEME = TagScheme(tuple(TASK.labels))


def tagger_config(args: argparse.Namespace, noisy: bool = False) -> TaggerConfig:
    """The quickstart's training settings (recipes/absa-quickstart.yaml), untuned."""
    loop = LoopConfig(
        steps=args.steps,
        lr=2e-4,
        micro_batch_size=16,
        schedule="linear",
        warmup_steps=15,
        weight_decay=0.01,
        eval_every=50,
        tracker=None,
        early_stopping=EarlyStopping(metric="dev_pair_f1", mode="max", patience=2),
    )
    return TaggerConfig(
        student=args.student,
        max_length=96, loop=loop, token_drop=0.1 if noisy else 0.0, dropout=0.2 if noisy else None
    )


def teacher(ledger_dir: Path, args) -> LedgeredTeacher:
    """The embedded teacher through its own ledger folder (one writer per ledger: each teacher unit has one)."""
    run = Run(ledger_dir)
    return LedgeredTeacher(
        make_teacher(TeacherConfig(backend="hf", model=args.teacher, batch_size=16)), run.ledger, batch_size=16
    )


class Setting:
    """One (dataset, seed %) with its seed, dev sample, test split and GPT-3.5 rows (dev/test sentences out)."""

    def __init__(self, dataset: str, pct: str, args):
        self.dataset, self.pct = dataset, pct
        self.seed = load_semeval(dataset, f"sample{pct}", TASK).examples
        dev = load_semeval(dataset, "dev", TASK).examples
        picked = sorted(random.Random(0).sample(range(len(dev)), min(args.dev_size, len(dev))))
        self.dev = [dev[i] for i in picked]
        self.test = load_semeval(dataset, "test", TASK).examples
        held = {e.sentence for e in self.dev + self.test}
        self.synth = [r for r in load_ds2_synthetic(FILES[(dataset, pct)], TASK).rows if r.sentence not in held]

    def raw(self) -> list[AbsaExample]:
        return [AbsaExample(r.id, r.sentence, raw_aspects(r.sentence, r.raw, TASK)) for r in self.synth]

    def normalised(self) -> list[AbsaExample]:
        norm = [AbsaExample(r.id, r.sentence, normalise(r.sentence, r.raw, TASK).aspects) for r in self.synth]
        return [e for e, r in zip(norm, self.synth) if e.aspects or not r.raw]

    def subset(self, n: int) -> list[AbsaExample]:
        """``n`` of the normalised rows, drawn once (seed 0) and kept in file order."""
        norm = self.normalised()
        return [norm[i] for i in sorted(random.Random(0).sample(range(len(norm)), min(n, len(norm))))]


def scores_path(dataset: str, pct: str, args) -> Path:
    return args.out / "absa-ledger" / f"polarity-{dataset}-{pct}-{Path(args.teacher).name}-{args.polarity_rows}.json"


def polarity_scores(setting: Setting, args) -> dict:
    """The teacher's calibrated polarity distribution for every aspect of the subset, once per setting:
    kept in a cache file beside the setting's own ledger (the teacher calls themselves are in the ledger, so an
    interrupted scoring re-pays nothing). A lock file makes a second process wait for the first one's result."""
    path = scores_path(setting.dataset, setting.pct, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    norm = setting.subset(args.polarity_rows)
    with (path.parent / (path.name + ".lock")).open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():
            cached = json.loads(path.read_text())
            if cached["ids"] != [e.id for e in norm]:
                raise RuntimeError(f"{path} was scored for other rows than the {setting.dataset} {setting.pct} % "
                                   f"subset gives now; delete it (the ledger re-answers for free)")
            return cached
        t = teacher(args.out / "absa-ledger" / f"{setting.dataset}-{setting.pct}", args)
        items = [(e.sentence, a.term) for e in norm for a in e.aspects]
        words, logp, began = polarity_words(TASK.labels, {}), [], time.time()
        for i in range(0, len(items), 512):  # chunks only to print progress; the ledger commits every batch
            logp.append(score_aspects(t, items[i : i + 512], words))
            print(f"scored {min(i + 512, len(items))}/{len(items)} aspects in {time.time() - began:.0f} s",
                  flush=True)
        probs = calibrate_polarities(np.concatenate(logp) if logp else np.zeros((0, 3)), "mean")
        dists, k = {}, 0
        for e in norm:
            dists[e.id] = [dict(zip(TASK.labels, map(float, probs[k + j]))) for j in range(len(e.aspects))]
            k += len(e.aspects)
        agree = [a.polarity == max(q, key=q.get) for e in norm for a, q in zip(e.aspects, dists[e.id])]
        cached = {"ids": [e.id for e in norm], "aspects": len(items), "seconds": round(time.time() - began, 1),
                  "agreement_with_gpt35": float(np.mean(agree)) if agree else None, "distributions": dists}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cached))
        tmp.replace(path)
        return cached


def polarity_rows(setting: Setting, args) -> tuple[list[AbsaExample], dict, dict]:
    """The subset's rows relabelled with the teacher's most likely polarity, their distributions (soft
    targets) and what to record about the scoring."""
    cached = polarity_scores(setting, args)
    dists = cached["distributions"]
    rows = [
        AbsaExample(e.id, e.sentence, tuple(Aspect(a.start, a.end, a.term, max(q, key=q.get))
                                            for a, q in zip(e.aspects, dists[e.id])))
        for e in setting.subset(args.polarity_rows)
    ]
    return rows, dists, {"agreement_with_gpt35": cached["agreement_with_gpt35"],
                         "scoring_seconds": cached["seconds"]}


def bootstrap(gold, preds: list[dict], score, n: int = 1000) -> tuple[float, float, float]:
    ids = list(gold)
    point = float(np.mean([score(gold, p).f1 for p in preds]))
    rng = np.random.default_rng(0)
    stats = []
    for _ in range(n):
        pick = rng.integers(0, len(ids), len(ids))
        g = {f"{j}": gold[ids[i]] for j, i in enumerate(pick)}
        stats.append(
            np.mean([score(g, {f"{j}": p.get(ids[i], ()) for j, i in enumerate(pick)}).f1 for p in preds])
        )
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return point, float(lo), float(hi)


def run_cell(setting: Setting, variant: str, s: int, args, log: Path) -> None:
    """Train and score one tagger: ``variant`` of ``setting`` at training seed ``s``; appends its record."""
    key = f"{setting.dataset}:{setting.pct}:{variant}:{s}"
    began = time.time()
    extra: dict = {}
    if variant == "seed":
        train = training_set(setting.seed, [], args.weight)
    elif variant == "full":
        train = training_set(load_semeval(setting.dataset, "train", TASK).examples, [], 1.0)
    elif variant == "raw":
        train = training_set(setting.seed, setting.raw(), args.weight)
    elif variant == "normalised":
        train = training_set(setting.seed, setting.normalised(), args.weight)
    elif variant == "subset":
        train = training_set(setting.seed, setting.subset(args.polarity_rows), args.weight)
    elif variant == "refined":
        refined, hist = self_train(tagger_config(args, noisy=True), RefineConfig(), 1, setting.seed,
                                   setting.normalised(), setting.dev, SCHEME, args.weight, random_seed=100 + s)
        extra = {"rounds": [h.__dict__ for h in hist]}
        train = training_set(setting.seed, refined, args.weight)
    else:
        rows, dists, extra = polarity_rows(setting, args)
        train = training_set(setting.seed, rows, args.weight, dists)
    fitted = fit_tagger(tagger_config(args), train, SCHEME, dev=setting.dev, seed=s)
    pred = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, setting.test)
    gold = labels_of(setting.test)
    record = {
        "key": key,
        "dataset": setting.dataset,
        "seed_pct": setting.pct,
        "variant": variant,
        "training_seed": s,
        "train_rows": len(train),
        "pair": pair_scores(gold, pred).as_dict(),
        "aspect": aspect_scores(gold, pred).as_dict(),
        "seconds": round(time.time() - began, 1),
        "steps": fitted.result.steps,
        "pred": {i: [a.as_dict() for a in v] for i, v in pred.items()},
        **extra,
    }
    append_line(log, json.dumps(record, default=str))
    print(f"{key}: pair F1 {record['pair']['f1']:.3f} aspect F1 {record['aspect']['f1']:.3f} "
          f"({record['seconds']} s)", flush=True)


def live(n: int, args, log: Path) -> None:
    seed = load_semeval("lap", "sample2", TASK).examples
    planned = synth_plan.plan_instance(seed, synth_plan.INSTANCE_METHODS, 2, 40, 3, random.Random(0))
    requests = random.Random(0).sample(planned, min(n, len(planned)))  # a mix of the four methods
    t = teacher(args.out / "absa-ledger" / "live", args)
    began = time.time()
    answers = [
        g[0].text
        for g in t.generate(
            [r.prompt for r in requests], SamplingParams(max_new_tokens=96, temperature=0.8, seed=0)
        )
    ]
    written = [read_written(a) for a in answers]
    usable = [(w, r) for w, r in zip(written, requests) if w.sentence]
    normed = [normalise(w.sentence, w.parsed.pairs, TASK) for w, _ in usable]
    rates = generation_rates([w.parsed for w, _ in usable], normed)
    rows = [
        AbsaExample(f"live{i}", w.sentence, nm.aspects)
        for i, ((w, _), nm) in enumerate(zip(usable, normed))
        if nm.aspects
    ]
    record = {
        "key": f"live:{n}",
        "prompts": len(requests),
        "with_sentence": len(usable),
        "rows_with_label": len(rows),
        "rates": rates,
        "generation_seconds": round(time.time() - began, 1),
        "examples": [a[:300] for a in answers[:5]],
    }
    append_line(log, json.dumps(record, default=str))  # the rates survive even if the training is cut short
    print(f"live: {rates}", flush=True)
    record = {"key": f"live-train:{n}", "rows": len(rows)}
    if not rows:  # seed + nothing is the seed alone: not trained again
        record["note"] = "no usable live row: the tagger would be the seed alone"
    else:
        lap = Setting("lap", "2", args)
        train = training_set(seed, rows, args.weight)
        fitted = fit_tagger(tagger_config(args), train, SCHEME, dev=lap.dev, seed=0)
        pred = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, lap.test)
        record["pair"] = pair_scores(labels_of(lap.test), pred).as_dict()
        record["aspect"] = aspect_scores(labels_of(lap.test), pred).as_dict()
    append_line(log, json.dumps(record, default=str))
    print(f"live-train: {record.get('pair', record.get('note'))}", flush=True)


def from_run(run_dir: Path, log: Path, done: set) -> None:
    """The quickstart's two taggers (same settings as here) as the ``seed`` and ``refined`` cells of lap 2 %,
    seed 0: re-predicted on the test split so their intervals are computed like every other cell's."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    test = load_semeval("lap", "test", TASK).examples
    trained = json.loads((run_dir / "artifacts" / "train.json").read_text())
    for folder, variant in (("seed_student", "seed"), ("student", "refined")):
        key = f"lap:2:{variant}:0"
        if key in done:
            continue
        path = run_dir / "artifacts" / folder
        model, tokenizer = (
            AutoModelForTokenClassification.from_pretrained(path),
            AutoTokenizer.from_pretrained(path),
        )
        pred = predict_aspects(model, tokenizer, SCHEME, test)
        gold = labels_of(test)
        record = {
            "key": key,
            "dataset": "lap",
            "seed_pct": "2",
            "variant": variant,
            "training_seed": 0,
            "source": f"quickstart run {run_dir}",
            "train_rows": trained[folder]["rows"],
            "pair": pair_scores(gold, pred).as_dict(),
            "aspect": aspect_scores(gold, pred).as_dict(),
            "seconds": trained[folder]["seconds"],
            "pred": {i: [a.as_dict() for a in v] for i, v in pred.items()},
        }
        append_line(log, json.dumps(record, default=str))
        print(f"{key} (from {run_dir}): pair F1 {record['pair']['f1']:.3f}", flush=True)


def summarise(log: Path) -> dict:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    out: dict = {
        "interval": "95 % percentile bootstrap over test sentences (1000 resamples) of the mean over "
        "training seeds",
        "rows": [],
    }
    groups: dict = {}
    for r in records:
        if r["key"].startswith("live"):  # live:N (rates), live-train:N (seed + live rows)
            out.setdefault("live", {})[r["key"]] = r
            continue
        groups.setdefault((r["dataset"], r["seed_pct"], r["variant"]), []).append(r)
    for (dataset, pct, variant), rs in groups.items():
        test = load_semeval(dataset, "test", TASK).examples
        gold = labels_of(test)
        preds = [
            {
                i: tuple(Aspect(a["from"], a["to"], a["target"], a["polarity"]) for a in v)
                for i, v in r["pred"].items()
            }
            for r in rs
        ]
        pair, aspect = bootstrap(gold, preds, pair_scores), bootstrap(gold, preds, aspect_scores)
        out["rows"].append(
            {
                "dataset": dataset,
                "seed_pct": pct,
                "variant": variant,
                "seeds": [r["training_seed"] for r in rs],
                "train_rows": sorted({r["train_rows"] for r in rs}),  # differ only where a cell came --from-run
                "pair_f1": pair,
                "aspect_f1": aspect,
                "pair_f1_per_seed": [r["pair"]["f1"] for r in rs],
                "seconds": [r["seconds"] for r in rs],
                **{k: rs[0][k] for k in ("agreement_with_gpt35", "scoring_seconds", "rounds") if k in rs[0]},
            }
        )
    return out


LABELS = {"seed": "seed alone", "raw": "+ raw GPT-3.5 rows (verbatim terms only)", "normalised": "+ normalised rows",
          "refined": "+ refined rows (1 noisy self-training round)",
          "subset": "+ a random subset of the normalised rows (control of the next line)",
          "polarity": "+ the same subset, polarities scored by SmolLM2-135M (soft)", "full": "full training split (ceiling)"}


def table(summary: dict) -> str:
    """The markdown table of ``summarise``: one line per (setting, variant), settings and variants in order."""
    lines = ["| setting | tagger trained on | train rows | seeds | pair F1 [95 % CI] | aspect F1 [95 % CI] | "
             "pair F1 per seed |", "|---|---|---|---|---|---|---|"]
    order = list(FILES)
    rows = sorted(summary["rows"], key=lambda r: (order.index((r["dataset"], r["seed_pct"])),
                                                   list(LABELS).index(r["variant"])))
    for r in rows:
        pair, aspect = r["pair_f1"], r["aspect_f1"]
        per_seed = ", ".join(f"{s}: {f:.3f}" for s, f in sorted(zip(r["seeds"], r["pair_f1_per_seed"])))
        rows_ = " / ".join(f"{n:,}" for n in r["train_rows"])
        lines.append(f"| {r['dataset']} {r['seed_pct']} % | {LABELS[r['variant']]} | {rows_} | "
                     f"{len(r['seeds'])} | {pair[0]:.3f} [{pair[1]:.3f}, {pair[2]:.3f}] | "
                     f"{aspect[0]:.3f} [{aspect[1]:.3f}, {aspect[2]:.3f}] | {per_seed} |")
    return "\n".join(lines) + "\n"


def units(args, done: set) -> list[str]:
    """What is left to run, most valuable first: settings in ``--settings`` order, within one variants in
    ``--variants`` order and seeds in ``--seeds`` order; the live synthesis last. A setting's polarity scoring
    (its longest unit) comes first in the setting, so it runs beside the setting's other taggers and its
    polarity cells (which wait for it) are not left for the end."""
    todo = []
    for setting in args.settings.split(","):
        dataset, pct = setting.split(":")
        cells = [f"{dataset}:{pct}:{v}:{s}" for v in args.variants for s in args.seeds]
        cells = [c for c in cells if c not in done]
        if any(scores_first(c) for c in cells) and not scores_path(dataset, pct, args).exists():
            todo.append(f"{dataset}:{pct}:polarity-scores")
        todo += cells
    if args.live and f"live-train:{args.live}" not in done:
        todo.append(f"live:{args.live}")
    return todo


def run_unit(unit: str, args, log: Path) -> None:
    """One unit in this process: ``dataset:pct:variant:seed``, ``dataset:pct:polarity-scores`` or ``live:N``."""
    parts = unit.split(":")
    if parts[0] == "live":
        live(int(parts[1]), args, log)
    elif parts[2] == "polarity-scores":
        polarity_scores(Setting(parts[0], parts[1], args), args)
    else:
        run_cell(Setting(parts[0], parts[1], args), parts[2], int(parts[3]), args, log)


def kind(unit: str) -> str:
    """Units of one kind take about as long as each other (the deadline's prediction)."""
    parts = unit.split(":")
    return "live" if parts[0] == "live" else parts[2]


def scores_first(unit: str) -> tuple[str, ...]:
    """A polarity cell waits for its setting's scoring unit (when that is in the list)."""
    parts = unit.split(":")
    return (f"{parts[0]}:{parts[1]}:polarity-scores",) if parts[2:3] == ["polarity"] else ()


def run_all(todo: list[str], argv: list[str], args, log: Path) -> None:
    """Every unit, ``--jobs`` at a time (each its own ``--only`` process at ``--threads`` threads when
    ``--jobs`` > 1); none starts that its predicted wall time says would end past ``--deadline``."""
    walls: dict[str, list[float]] = {}
    # The live rate as recorded (a conservative guess: the first live run was on a loaded machine); tagger
    # times recorded by earlier invocations are not used (they may come from another load).
    live_rate = [r["generation_seconds"] / max(1, r["prompts"]) for r in
                 (json.loads(line) for line in (log.read_text().splitlines() if log.exists() else []))
                 if r["key"].startswith("live:")]

    def predicted(unit: str) -> float:
        same = walls.get(kind(unit))
        cells = [w for k, ws in walls.items() if k in VARIANTS for w in ws]
        tagger = float(np.mean(same or cells)) if same or cells else 60 * args.guess_minutes
        parts = unit.split(":")
        if kind(unit) == "live" and not same and live_rate:
            return live_rate[-1] * int(parts[1]) + tagger
        scored = [json.loads(f.read_text()) for f in (args.out / "absa-ledger").glob("polarity-*.json")]
        if kind(unit) == "polarity-scores" and scored:  # per aspect, from the settings already scored
            rate = sum(c["seconds"] for c in scored) / max(1, sum(c["aspects"] for c in scored))
            return rate * sum(len(e.aspects) for e in Setting(parts[0], parts[1], args).subset(args.polarity_rows))
        return tagger * (2 if kind(unit) == "refined" and not same else 1)  # refined trains twice

    def skip(unit: Unit) -> Optional[str]:
        parts = unit.name.split(":")
        if scores_first(unit.name) and not scores_path(parts[0], parts[1], args).exists():
            return "its setting's polarity scores are missing (their unit was skipped or failed)"
        if late(args.deadline, predicted(unit.name)):
            return f"it would end after --deadline {args.deadline} UTC; rerun to add it"
        return None

    def ended(unit: Unit, code: int, seconds: float) -> None:
        if code == 0:
            walls.setdefault(kind(unit.name), []).append(seconds)
            print(f"{unit.name}: done in {seconds / 60:.1f} min", flush=True)

    if args.jobs > 1:
        jobs = [Unit(u, (__file__, *argv, "--only", u, "--jobs", "1"), scores_first(u)) for u in todo]
        run_units(jobs, args.logs, args.jobs, args.threads, skip, ended)
        return
    for unit in todo:
        if (reason := skip(Unit(unit, ()))) is not None:
            print(f"skipped {unit}: {reason}", file=sys.stderr, flush=True)
            continue
        began = time.time()
        try:
            run_unit(unit, args, log)
        except Exception:  # one broken unit must not cost the others in an unattended run; rerun resumes it
            print(f"{unit}: failed\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        ended(Unit(unit, ()), 0, time.time() - began)


def main(argv: Optional[list[str]] = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="lap:2,res15:2,res15:5")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--polarity-rows", type=int, default=1000, help="the synthetic rows the teacher scores "
                    "(a random subset; ``subset`` trains on the same rows with GPT-3.5's polarities)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--dev-size", type=int, default=150)
    ap.add_argument("--live", type=int, default=0, help="also the live embedded-teacher synthesis on N prompts")
    ap.add_argument("--student", default="minilm-l6")
    ap.add_argument("--teacher", default="smollm2-135m-instruct", help="the embedded teacher (hf backend)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=2, help="units run at once, each in its own process with "
                    "--threads threads (two at one thread each keep a 2-core machine busy without "
                    "oversubscribing it)")
    ap.add_argument("--deadline", default=None, help="HH:MM (UTC): start no unit predicted to end later (the "
                    "mean wall time of this invocation's finished units of its kind); a rerun resumes")
    ap.add_argument("--guess-minutes", type=float, default=2.0, help="--deadline's prediction for a tagger "
                    "before this invocation has finished one")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (runs, summary, teacher ledgers)")
    ap.add_argument("--logs", type=Path, default=Path("/tmp/protege-absa"), help="one log per child process")
    ap.add_argument("--only", default=None, help=argparse.SUPPRESS)  # a child's unit; no summary
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--from-run", type=Path, help="take lap 2 %% seed/refined (seed 0) from a quickstart run")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.variants = args.variants.split(",")
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if args.jobs < 1 or args.threads < 1:
        ap.error("--jobs and --threads: at least 1")
    torch.set_num_threads(args.threads)  # a busy shared CPU: extra intra-op threads spin instead of helping
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "absa-runs.jsonl"
    done = (
        {json.loads(line)["key"] for line in log.read_text().splitlines() if line.strip()}
        if log.exists()
        else set()
    )
    if args.only:
        if args.only not in done:
            run_unit(args.only, args, log)
        return {}
    if args.from_run:
        from_run(args.from_run, log, done)
    elif not args.summarise_only:
        run_all(units(args, done), argv, args, log)
    summary = summarise(log) if log.exists() else {"rows": []}
    (args.out / "absa.json").write_text(json.dumps(summary, indent=2))
    (args.out / "absa-table.md").write_text(table(summary))
    return summary


if __name__ == "__main__":
    main()
