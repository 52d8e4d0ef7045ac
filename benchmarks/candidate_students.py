"""Soft labels, hard labels or candidate sets: which teacher output makes the best MiniLM student, at equal budget?

One teacher pass (the embedded SmolLM2-135M, hf backend, one template, calibration chosen on gold dev) labels a
pool of SST-2 training phrases, a gold dev split and a gold test split through the recipe stages data ->
annotate. The same annotated pool then trains MiniLM-L6 three ways, each with 3 seeds (init and data order):

* soft: the teacher's distribution (tempered KL, T = 2; ``train.targets: soft``);
* hard: its top label (cross-entropy; ``targets: hard``);
* candidates: its candidate set by the threshold/mass rule, CanDist targets (``targets: candidates``).

The teacher budget is identical: the sets come from the same scored probabilities, so no arm costs one more
teacher token. Early stopping watches the gold dev labels, as the pipeline does by default. Every student is
scored on the same gold test texts; differences are paired over texts (each text's correctness averaged over the
seeds, percentile bootstrap), so the text-to-text variation the arms share cancels.

    python benchmarks/candidate_students.py [--pool 400 --dev 100 --test 400 --seeds 3]

Skips (exit 0) when the SST-2 folder (../shared/data/sst2, or $PROTEGE_SST2_DIR) is absent. Results go to
``benchmarks/results/candidate_students-sst2.json``; ``--summarise`` prints the README table from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from protege.core.run import Run
from protege.evaluate.intervals import paired_bootstrap, wilson
from protege.evaluate.metrics import macro_f1
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.classify import inputs, tables
from protege.tasks.classify.candidates import frame_coverage
from protege.tasks.classify.student import ClassifierTrainConfig, fit, predict_probs
from protege.train.loop import EarlyStopping, LoopConfig

HERE = Path(__file__).parent
OUT = HERE / "results" / "candidate_students-sst2.json"
LABELS = ["negative", "positive"]
ARMS = ("soft", "hard", "candidates")


def sst2_folder() -> Path:
    return Path(os.environ.get("PROTEGE_SST2_DIR", HERE.parent.parent / "shared" / "data" / "sst2"))


def annotate(run_dir: Path, args: argparse.Namespace) -> dict:
    recipe = {
        "name": "candidates-sst2", "run_dir": str(run_dir), "seed": 0,
        "teacher": {"backend": "hf", "model": "smollm2-135m-instruct", "batch_size": 8},
        "task": {"labels": LABELS, "verbalizers": {"negative": ["negative", "Negative"],
                                                   "positive": ["positive", "Positive"]},
                 "instruction": "Classify the sentiment of this movie review as one of: {labels}. Answer with one word.",
                 "templates": ["{instruction}\n\nText: {text}"]},
        "data": {"source": "sst2", "data_dir": str(sst2_folder()), "seed_size": 0, "dev_size": args.dev,
                 "test_size": args.test, "pool_size": args.pool, "max_chars": 300},
        "annotate": {"tables": ["pool", "dev", "test"], "chunk_size": 32, "min_dev": 30,
                     "candidate_threshold": args.threshold, "candidate_mass": args.mass},
    }
    began = time.perf_counter()
    run_recipe(parse_recipe(recipe), only=("data", "annotate"))
    return {"seconds": round(time.perf_counter() - began, 1)}


def train_config(arm: str, args: argparse.Namespace) -> ClassifierTrainConfig:
    loop = LoopConfig(epochs=args.epochs, lr=2e-4, micro_batch_size=32, schedule="linear", warmup_steps=5,
                      weight_decay=0.01, eval_every=10, tracker=None,
                      early_stopping=EarlyStopping(metric="dev_accuracy", mode="max", patience=3))
    return ClassifierTrainConfig(targets=arm, candidate_momentum=args.momentum, max_length=64, loop=loop,
                                 gold_seed_baseline=False, learning_curve=[])


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    d = paired_bootstrap(a, b, resamples=10_000)
    return {"difference": round(d.estimate, 4), "interval": [round(d.low, 4), round(d.high, 4)],
            "separated": not d.inside_noise}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarise", action="store_true", help="print the README table from the results file")
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=float, default=5)
    parser.add_argument("--momentum", type=float, default=0.7)
    parser.add_argument("--threshold", type=float, default=0.6)
    parser.add_argument("--mass", type=float, default=0.9)
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/protege-candidate-students"))
    args = parser.parse_args()
    if args.summarise:
        print(summary(json.loads(OUT.read_text())))
        return
    if not (sst2_folder() / "train.tsv").exists():
        print(f"skipped: no SST-2 data in {sst2_folder()} (set PROTEGE_SST2_DIR)")
        return
    torch.set_num_threads(1)
    began = time.perf_counter()
    teacher = annotate(args.run_dir, args)
    run = Run(args.run_dir)
    pool = inputs.annotated_split(run, tables.POOL)
    dev_texts, dev_labels, _ = inputs.dev_targets(run, "auto")
    test = inputs.gold_test(run)
    gold = test["gold_index"].astype(int).to_numpy()
    teacher_pred = np.stack([np.asarray(p) for p in test["teacher_probs"]]).argmax(1)
    dev = inputs.annotated_split(run, tables.DEV)
    summary_json = run.read_json(tables.ANNOTATE_SUMMARY)
    result: dict = {
        "dataset": "sst2", "teacher": "smollm2-135m-instruct (hf, 1 template)", "student": "minilm-l6",
        "calibration": summary_json["calibration"], "sizes": {"pool": len(pool), "dev": len(dev), "test": len(gold)},
        "settings": vars(args) | {"run_dir": str(args.run_dir)}, "teacher_seconds": teacher["seconds"],
        "teacher_tokens": summary_json["timing"],
        "coverage": {"pool": frame_coverage(pool, LABELS), "dev": frame_coverage(dev, LABELS),
                     "test": frame_coverage(test, LABELS)},
        "teacher_test": {"accuracy": float((teacher_pred == gold).mean()),
                         "macro_f1": macro_f1(gold, teacher_pred, 2)},
        "pool_teacher_accuracy": float((pool["teacher_index"].to_numpy() == pool["gold_index"].to_numpy()).mean()),
        "arms": {},
    }
    correct: dict[str, list[np.ndarray]] = {arm: [] for arm in ARMS}
    for arm in ARMS:
        cfg = train_config(arm, args)
        examples = inputs.teacher_examples(pool, arm, LABELS)
        runs = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            fitted = fit(cfg, examples, dev_texts, dev_labels, LABELS, seed=seed)
            pred = predict_probs(fitted.model, fitted.tokenizer, test["text"].tolist(), max_length=64).argmax(1)
            correct[arm].append((pred == gold).astype(float))
            runs.append({"seed": seed, "accuracy": float((pred == gold).mean()), "macro_f1": macro_f1(gold, pred, 2),
                         "steps": fitted.result.steps, "seconds": round(time.perf_counter() - t0, 1)})
            print(f"{arm} seed {seed}: accuracy {runs[-1]['accuracy']:.3f} ({runs[-1]['seconds']} s)", flush=True)
        accs = [r["accuracy"] for r in runs]
        per_text = np.mean(correct[arm], axis=0)
        result["arms"][arm] = {"runs": runs, "mean_accuracy": float(np.mean(accs)), "sd_accuracy": float(np.std(accs)),
                               "mean_macro_f1": float(np.mean([r["macro_f1"] for r in runs])),
                               "pooled_interval": list(wilson(int(round(per_text.sum() * args.seeds)),
                                                              len(gold) * args.seeds))}
    means = {arm: np.mean(correct[arm], axis=0) for arm in ARMS}
    result["paired"] = {"candidates - soft": paired(means["candidates"], means["soft"]),
                        "candidates - hard": paired(means["candidates"], means["hard"]),
                        "soft - hard": paired(means["soft"], means["hard"])}
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(summary(result))


def summary(r: dict) -> str:
    cov = r["coverage"]
    lines = [f"SST-2, teacher {r['teacher']} (test accuracy {r['teacher_test']['accuracy']:.1%}, pool "
             f"{r['pool_teacher_accuracy']:.1%}), pool {r['sizes']['pool']}, dev {r['sizes']['dev']}, test "
             f"{r['sizes']['test']}; candidate sets hold gold on dev {cov['dev']['coverage']:.1%} / test "
             f"{cov['test']['coverage']:.1%}, mean size {cov['test']['mean_size']:.2f}",
             "", f"| student from | accuracy (mean ± sd, {r['settings']['seeds']} seeds) | macro-F1 "
             "| pooled 95 % interval |", "|---|---|---|---|"]
    for arm, a in r["arms"].items():
        lo, hi = a["pooled_interval"]
        lines.append(f"| {arm} | {a['mean_accuracy']:.1%} ± {a['sd_accuracy']:.1%} | {a['mean_macro_f1']:.3f} "
                     f"| {lo:.1%} – {hi:.1%} |")
    lines += ["", "| paired difference | accuracy points | 95 % interval | separated? |", "|---|---|---|---|"]
    for name, d in r["paired"].items():
        lo, hi = d["interval"]
        lines.append(f"| {name} | {100 * d['difference']:+.1f} | {100 * lo:+.1f} – {100 * hi:+.1f} "
                     f"| {'yes' if d['separated'] else 'no'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
