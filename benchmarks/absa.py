"""Does DS²-ABSA synthetic data beat the seed alone; what do normalisation, refinement, polarity scoring add?

For each setting (a SemEval dataset and its 2 %/5 % seed, with DS²-ABSA's GPT-3.5 instance-stream file written
from that seed) and each training seed, the MiniLM tagger is trained on:

- ``seed``: the seed alone;
- ``raw``: + the GPT-3.5 rows, keeping only pairs whose term occurs verbatim (no normalisation);
- ``normalised``: + the rows normalised (grounding, synonyms, order, de-duplication);
- ``refined``: + the normalised rows after one round of noisy self-training;
- ``polarity``: + the normalised rows, polarities scored by the embedded SmolLM2-135M teacher (soft targets);
- ``full``: the full training split (the ceiling).

Synthetic rows weigh ``--weight`` (0.5). Scores are on the whole test split: pair F1 and aspect F1, averaged
over training seeds, with a 95 % percentile bootstrap interval over *test sentences* (each resample scores
every seed's predictions on the same resampled sentences, then averages over seeds). ``--live N`` also runs
the embedded teacher's live instance-stream synthesis on N prompts (laptops 2 %): parse and grounding rates,
and seed + those rows against the seed alone.

Results are appended one JSON line per trained tagger to ``benchmarks/results/absa-runs.jsonl`` (a re-run
skips what is there) and summarised into ``benchmarks/results/absa.json``.

nohup python benchmarks/absa.py --settings lap:2 --seeds 0 &
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

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

HERE = Path(__file__).parent
RESULTS = HERE / "results"
FILES = {
    ("lap", "2"): "lap_all2_instance",
    ("res15", "2"): "res15_all2_instance",
    ("res15", "5"): "res15_all5_instance",
}
VARIANTS = ("seed", "normalised", "raw", "refined", "polarity", "full")
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
        max_length=96, loop=loop, token_drop=0.1 if noisy else 0.0, dropout=0.2 if noisy else None
    )


def teacher(run_dir: Path) -> LedgeredTeacher:
    run = Run(run_dir)
    return LedgeredTeacher(
        make_teacher(TeacherConfig(backend="hf", model="smollm2-135m-instruct", batch_size=16)),
        run.ledger,
        batch_size=16,
    )


def polarity_scored(rows: list[AbsaExample], args) -> tuple[list[AbsaExample], dict]:
    t = teacher(RESULTS / "absa-ledger")
    items = [(e.sentence, a.term) for e in rows for a in e.aspects]
    logp = score_aspects(t, items, polarity_words(TASK.labels, {}))
    probs = calibrate_polarities(logp, "mean")
    out, dists, k = [], {}, 0
    for e in rows:
        d = [dict(zip(TASK.labels, map(float, probs[k + j]))) for j in range(len(e.aspects))]
        dists[e.id] = d
        out.append(
            AbsaExample(
                e.id,
                e.sentence,
                tuple(Aspect(a.start, a.end, a.term, max(q, key=q.get)) for a, q in zip(e.aspects, d)),
            )
        )
        k += len(e.aspects)
    agree = float(
        np.mean([a.polarity == b.polarity for x, y in zip(rows, out) for a, b in zip(x.aspects, y.aspects)])
    )
    return out, {"distributions": dists, "agreement_with_gpt35": agree}


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


def run_setting(dataset: str, pct: str, args, done: set, log: Path) -> None:
    seed = load_semeval(dataset, f"sample{pct}", TASK).examples
    dev = load_semeval(dataset, "dev", TASK).examples
    dev = [dev[i] for i in sorted(random.Random(0).sample(range(len(dev)), min(args.dev_size, len(dev))))]
    test = load_semeval(dataset, "test", TASK).examples
    synth = load_ds2_synthetic(FILES[(dataset, pct)], TASK).rows
    held = {e.sentence for e in dev + test}
    synth = [r for r in synth if r.sentence not in held]
    cache: dict = {}

    def rows(variant: str, s: int):
        if variant == "raw":
            return [AbsaExample(r.id, r.sentence, raw_aspects(r.sentence, r.raw, TASK)) for r in synth], None
        norm = [AbsaExample(r.id, r.sentence, normalise(r.sentence, r.raw, TASK).aspects) for r in synth]
        norm = [e for e, r in zip(norm, synth) if e.aspects or not r.raw]
        if variant == "normalised":
            return norm, None
        if variant == "refined":
            refined, hist = self_train(
                tagger_config(args, noisy=True),
                RefineConfig(),
                1,
                seed,
                norm,
                dev,
                SCHEME,
                args.weight,
                random_seed=100 + s,
            )
            return refined, {"rounds": [h.__dict__ for h in hist]}
        if "polarity" not in cache:
            cache["polarity"] = polarity_scored(norm, args)
        return cache["polarity"]

    for variant in args.variants:
        for s in args.seeds:
            key = f"{dataset}:{pct}:{variant}:{s}"
            if key in done:
                continue
            began = time.time()
            extra: dict = {}
            if variant == "seed":
                train = training_set(seed, [], args.weight)
            elif variant == "full":
                train = training_set(load_semeval(dataset, "train", TASK).examples, [], 1.0)
            else:
                synthetic, info = rows(variant, s)
                dists = (info or {}).pop("distributions", None) if variant == "polarity" else None
                extra = {k: v for k, v in (info or {}).items()}
                train = training_set(seed, synthetic, args.weight, dists)
            fitted = fit_tagger(tagger_config(args), train, SCHEME, dev=dev, seed=s)
            pred = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, test)
            gold = labels_of(test)
            record = {
                "key": key,
                "dataset": dataset,
                "seed_pct": pct,
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
            with log.open("a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")
            print(
                f"{key}: pair F1 {record['pair']['f1']:.3f} aspect F1 {record['aspect']['f1']:.3f} "
                f"({record['seconds']} s)",
                flush=True,
            )


def live(n: int, args, log: Path) -> None:
    seed = load_semeval("lap", "sample2", TASK).examples
    planned = synth_plan.plan_instance(seed, synth_plan.INSTANCE_METHODS, 2, 40, 3, random.Random(0))
    requests = random.Random(0).sample(planned, min(n, len(planned)))  # a mix of the four methods
    t = teacher(RESULTS / "absa-ledger")
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
        "key": "live",
        "prompts": len(requests),
        "with_sentence": len(usable),
        "rows_with_label": len(rows),
        "rates": rates,
        "generation_seconds": round(time.time() - began, 1),
        "examples": [a[:300] for a in answers[:5]],
    }
    with log.open("a") as fh:  # the rates survive even if the training below is cut short
        fh.write(json.dumps(record, default=str) + "\n")
    print(f"live: {rates}", flush=True)
    record = {"key": "live-train", "rows": len(rows)}
    dev = load_semeval("lap", "dev", TASK).examples
    dev = [dev[i] for i in sorted(random.Random(0).sample(range(len(dev)), min(args.dev_size, len(dev))))]
    test = load_semeval("lap", "test", TASK).examples
    fitted = fit_tagger(tagger_config(args), training_set(seed, rows, args.weight), SCHEME, dev=dev, seed=0)
    pred = predict_aspects(fitted.model, fitted.tokenizer, SCHEME, test)
    record["pair"] = pair_scores(labels_of(test), pred).as_dict()
    record["aspect"] = aspect_scores(labels_of(test), pred).as_dict()
    with log.open("a") as fh:
        fh.write(json.dumps(record, default=str) + "\n")
    print(f"live-train: pair F1 {record['pair']['f1']:.3f}", flush=True)


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
        with log.open("a") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
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
        if r["key"] in ("live", "live-train"):
            out[r["key"]] = r
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
                "pair_f1": pair,
                "aspect_f1": aspect,
                "pair_f1_per_seed": [r["pair"]["f1"] for r in rs],
                "seconds": [r["seconds"] for r in rs],
                **{k: rs[0][k] for k in ("agreement_with_gpt35", "rounds") if k in rs[0]},
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="lap:2,res15:2,res15:5")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--weight", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--dev-size", type=int, default=150)
    ap.add_argument("--live", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--from-run", type=Path, help="take lap 2 %% seed/refined (seed 0) from a quickstart run")
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.variants = args.variants.split(",")
    torch.set_num_threads(args.threads)  # a busy shared CPU: extra intra-op threads spin instead of helping
    RESULTS.mkdir(exist_ok=True)
    log = RESULTS / "absa-runs.jsonl"
    done = (
        {json.loads(line)["key"] for line in log.read_text().splitlines() if line.strip()}
        if log.exists()
        else set()
    )
    if args.from_run:
        from_run(args.from_run, log, done)
    elif not args.summarise_only:
        for setting in args.settings.split(","):
            dataset, pct = setting.split(":")
            run_setting(dataset, pct, args, done, log)
        if args.live and "live" not in done:
            live(args.live, args, log)
    (RESULTS / "absa.json").write_text(json.dumps(summarise(log), indent=2))


if __name__ == "__main__":
    main()
