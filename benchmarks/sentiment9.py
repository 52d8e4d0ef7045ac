"""Teacher without training or a distilled student? Every shared sentiment set, 100 gold labels, one budget.

The issue names nine sets (the feedback-ICL paper's); the shared data holds seven: six in the sentiment collection
plus SST-2. For each set of the shared sentiment collection (``sentiment-<set>``: fin, poem, tweet-emo, emocontext, laptop,
rest; aspect-given sets as ``Aspect: ... Sentence: ...`` texts) and SST-2, with the same recipe stages a user
runs (data -> annotate -> icl -> select -> train -> evaluate -> report, via ``run_recipe``):

* ``data``: ``--seed`` (100) gold labels (stratified), ``--dev`` (100) gold dev texts (the teacher's calibration
  choice, early stopping), ``--pool`` (300) unlabelled texts from the rest of the training split, ``--test`` (150)
  gold test texts (the set's own test split; all of it when smaller);
* arms, all scored on the same gold test texts:
  - ``majority``: the gold seed's most frequent label, always;
  - ``teacher zero-shot`` / ``teacher ICL`` / ``teacher feedback ICL``: the ``icl`` stage's three methods with the
    embedded SmolLM2-135M teacher (hf backend), the gold seed as demonstration pool, 4 shots by BM25, feedback with
    2 wrong-first demonstrations and leave-one-out priors from 4 random shots; label-prior (mean) calibration;
  - ``teacher (annotate)``: the teacher that labels the pool: zero-shot with the calibration chosen on gold dev;
  - ``student soft`` / ``student hard`` / ``student candidates``: MiniLM-L6 on the teacher's labels of the pool
    (distribution, top label, candidate set by the threshold/mass rule) plus the gold seed (x2);
  - ``gold seed only``: MiniLM on the 100 gold labels alone (as many optimizer steps as the soft student);
  - ``all gold (ceiling)``: MiniLM on the gold labels of the seed and the whole pool.

Per arm: accuracy (Wilson 95 % interval) and macro-F1 (95 % percentile bootstrap over test texts), teacher prompt
tokens per text, seconds per text, wall time. Paired bootstrap differences between arms (same texts) say which
gaps are outside the noise. One training seed per student (the budget; the intervals are over test texts).

    python benchmarks/sentiment9.py                      # every set, two at a time at one thread each
    python benchmarks/sentiment9.py --sets fin,sst2      # a subset
    python benchmarks/sentiment9.py --summarise          # the README table from the results

The budget (seed, pool, dev, test, epochs) is what keeps all seven sets under two hours on the 2-core machine:
``--jobs`` (2) sets run at once, each in its own process at ``--threads`` (1) torch threads.

Raw results: ``benchmarks/results/sentiment9/<set>.json`` (a set finished at the same budget is not redone;
``--redo`` forces it; one at another budget is redone and never mixed into the table)
and the soft student's run report ``<set>-report.md``; the table: ``results/sentiment9/table.md``. Run folders
(with their teacher ledgers, so an interrupted run re-pays nothing) go under ``--runs``. A set whose data folder
is absent is skipped with a note (``$PROTEGE_SENTIMENT_DIR``, ``$PROTEGE_SST2_DIR``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from protege.core.run import Run
from protege.data.packaged import PACKAGED, SENTIMENT_DIR, SST2_DIR
from protege.data.splits import clean
from protege.evaluate.intervals import gold_scores, paired_bootstrap
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.classify import inputs, tables
from protege.tasks.classify.candidates import frame_coverage
from protege.tasks.classify.student import ClassifierTrainConfig, Examples, fit, load_student, predict_probs

sys.path.insert(0, str(Path(__file__).parent))
from processes import Unit, late, run_units  # noqa: E402  (shared with absa.py: children at one thread each)

HERE = Path(__file__).parent
OUT = HERE / "results" / "sentiment9"
TEACHER = "smollm2-135m-instruct"
MAX_CHARS = 300
ANSWER = " Answer with one word."
# set -> (source, instruction); {labels} lists the label words. Longest texts first: with --jobs, the slow sets
# start first and the short ones fill the gaps at the end.
SETS: dict[str, tuple[str, str]] = {
    "fin": ("sentiment-fin", "Classify the sentiment of this financial news sentence as one of: {labels}." + ANSWER),
    "laptop": ("sentiment-laptop", "Classify the sentiment expressed about the aspect in this laptop review "
               "sentence as one of: {labels}." + ANSWER),
    "rest": ("sentiment-rest", "Classify the sentiment expressed about the aspect in this restaurant review "
             "sentence as one of: {labels}." + ANSWER),
    "tweet-emo": ("sentiment-tweet-emo", "Which emotion does this tweet express? One of: {labels}." + ANSWER),
    "emocontext": ("sentiment-emocontext", "Which emotion does the writer of this chat message express? One of: "
                   "{labels} (others: none of these)." + ANSWER),
    "sst2": ("sst2", "Classify the sentiment of this movie review phrase as one of: {labels}." + ANSWER),
    "poem": ("sentiment-poem", "Classify the sentiment of this line of poetry as one of: {labels}." + ANSWER),
}
METHODS = {"zero_shot": "teacher zero-shot", "icl": "teacher ICL (4 shots)",
           "feedback": "teacher feedback ICL (2 wrong first)"}
TARGETS = ("soft", "hard", "candidates")
# (a, b): a - b, paired over the same test texts
PAIRS = (("teacher feedback ICL (2 wrong first)", "teacher ICL (4 shots)"),
         ("teacher ICL (4 shots)", "teacher zero-shot"),
         ("student soft", "teacher feedback ICL (2 wrong first)"),
         ("student soft", "gold seed only"),
         ("student candidates", "student soft"),
         ("student hard", "student soft"))


def data_dir(source: str, args: argparse.Namespace) -> Path:
    if source == "sst2":
        return Path(args.sst2_dir) if args.sst2_dir else SST2_DIR
    return Path(args.sentiment_dir) if args.sentiment_dir else SENTIMENT_DIR


def sizes(name: str, args: argparse.Namespace) -> dict[str, int]:
    """The fixed budget, cut to what the set has (poem's test split holds 104 texts), counted as the data stage
    counts: distinct texts after the length cut, test texts out of the training split."""
    splits = PACKAGED[SETS[name][0]].load(data_dir(SETS[name][0], args))
    test = set(clean(splits["test"], MAX_CHARS)["text"])
    train = set(clean(splits["train"], MAX_CHARS)["text"]) - test
    return {"seed_size": args.seed, "dev_size": args.dev, "test_size": min(args.test, len(test)),
            "pool_size": min(args.pool, len(train) - args.seed - args.dev)}


def recipe(name: str, args: argparse.Namespace, targets: str) -> dict[str, Any]:
    source, instruction = SETS[name]
    # Batches of 16 and patience 5: at 300 pool texts, batches of 32 gave 63 steps and the students sat on the
    # majority class when early stopping (patience 3) ended them at step 40; same compute, twice the updates.
    loop = {"epochs": args.epochs, "lr": 2e-4, "micro_batch_size": 16, "schedule": "linear", "warmup_steps": 10,
            "weight_decay": 0.01, "eval_every": 10, "early_stopping": {"metric": "dev_accuracy", "mode": "max",
                                                                        "patience": 5}}
    budget = sizes(name, args)
    return {
        "name": f"sentiment9-{name}", "family": "classification", "run_dir": str(args.runs / name), "seed": 0,
        "teacher": {"backend": "hf", "model": args.teacher, "batch_size": 8},
        "task": {"labels": list(PACKAGED[source].labels), "instruction": instruction},
        "data": {"source": source, "data_dir": str(data_dir(source, args)), "max_chars": MAX_CHARS, **budget},
        "annotate": {"calibration": "auto", "min_dev": min(30, args.dev)},
        "icl": {"methods": list(METHODS), "shots": 4, "wrong_first": 2, "prior_shots": 4, "retrieval": "bm25"},
        "select": {"budget": budget["pool_size"], "strategy": "random"},
        "train": {"student": args.student, "targets": targets, "use_gold": True, "gold_repeats": 2,
                  "gold_seed_baseline": targets == "soft", "learning_curve": [], "max_length": 64, "loop": loop},
        "evaluate": {"speed_examples": 32},
        "report": {},
    }


def scored(gold: np.ndarray, pred: np.ndarray, k: int) -> dict[str, Any]:
    return {**gold_scores(gold, pred, k, seed=0), "correct": (pred == gold).astype(int).tolist()}


def student_predictions(run: Run, folder: str, texts: list[str]) -> np.ndarray:
    model, tokenizer, card = load_student(run.artifacts / folder)
    return predict_probs(model, tokenizer, texts, max_length=card.get("max_length", 64)).argmax(1)


def ceiling(run: Run, cfg: ClassifierTrainConfig, labels: list[str], texts: list[str]) -> tuple[np.ndarray, float]:
    """MiniLM on the gold labels of the seed and the whole pool (the data stage keeps them for measurement)."""
    rows = [run.records.read(t) for t in (tables.SEED, tables.POOL)]
    gold = [r[r["gold_index"].fillna(-1).astype(int) >= 0] for r in rows]
    examples = Examples.from_labels([t for g in gold for t in g["text"]],
                                    [int(i) for g in gold for i in g["gold_index"]], len(labels))
    dev = run.records.read(tables.DEV)
    began = time.perf_counter()
    fitted = fit(cfg, examples, dev["text"].tolist(), dev["gold_index"].astype(int).to_numpy(), labels, seed=0)
    pred = predict_probs(fitted.model, fitted.tokenizer, texts, max_length=cfg.max_length).argmax(1)
    return pred, time.perf_counter() - began


def run_set(name: str, args: argparse.Namespace, teacher: Optional[Callable] = None) -> dict[str, Any]:
    """Every arm on one set; returns (and writes) its result."""
    began = time.perf_counter()
    first = parse_recipe(recipe(name, args, "soft"))
    labels = first.task.labels
    k = len(labels)
    t0 = time.perf_counter()
    run = run_recipe(first, only=("data", "annotate"), teacher=teacher)
    annotate_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_recipe(first, only=("icl",), teacher=teacher)
    icl_wall = time.perf_counter() - t0
    test = inputs.gold_test(run)
    texts, gold = test["text"].tolist(), test["gold_index"].astype(int).to_numpy()
    icl_rows = run.records.read(tables.ICL)
    icl = run.read_json(tables.ICL_SUMMARY)
    annotate = run.read_json(tables.ANNOTATE_SUMMARY)
    data = run.read_json(tables.DATA_SUMMARY)
    seed_gold = run.records.read(tables.SEED)["gold_index"].astype(int).to_numpy()
    zero_tokens = icl["methods"]["zero_shot"]["prompt_tokens_per_text"]
    labelled = annotate["timing"]["texts"]
    arms: dict[str, dict[str, Any]] = {}
    arms["majority"] = scored(gold, np.full(gold.size, np.bincount(seed_gold, minlength=k).argmax()), k)
    position = {text_id: i for i, text_id in enumerate(test["id"])}
    for method, arm in METHODS.items():
        rows = icl_rows[(icl_rows["method"] == method) & icl_rows["text_id"].isin(list(position))]
        pred = np.full(gold.size, -1)
        pred[[position[t] for t in rows["text_id"]]] = rows["teacher_index"].astype(int)
        entry = icl["methods"][method]
        extra = (icl.get("priors") or {}).get("wall_seconds", 0.0) if method == "feedback" else 0.0
        arms[arm] = {**scored(gold, pred, k), "teacher_tokens_per_text": round(entry["prompt_tokens_per_text"], 1),
                     "teacher_seconds_per_text": entry["seconds_per_text"], "fills": entry["fills"],
                     "wall_seconds": round(entry["wall_seconds"] + extra, 1)}
    teacher_pred = np.stack([np.asarray(p) for p in test["teacher_probs"]]).argmax(1)
    seconds_per_100 = annotate["timing"].get("seconds_per_100_texts")
    arms["teacher (annotate)"] = {**scored(gold, teacher_pred, k), "teacher_tokens_per_text": round(zero_tokens, 1),
                                  "teacher_seconds_per_text": seconds_per_100 / 100 if seconds_per_100 else None,
                                  "calibration": annotate["calibration"]}
    one_off = {"teacher_texts": labelled, "teacher_tokens": round(zero_tokens * labelled),
               "teacher_seconds": annotate["timing"]["seconds"], "annotate_wall_seconds": round(annotate_wall, 1)}
    speed = None
    for targets in TARGETS:
        t0 = time.perf_counter()
        run_recipe(parse_recipe(recipe(name, args, targets)), teacher=teacher)
        wall = time.perf_counter() - t0
        metrics = run.read_json(tables.METRICS)
        trained = run.read_json(tables.TRAINED)["students"]
        speed = metrics.get("speed") or speed
        student_s = 1 / speed["student"]["throughput"] if speed else None
        arms[f"student {targets}"] = {**scored(gold, student_predictions(run, tables.STUDENT, texts), k),
                                      "teacher_tokens_per_text": 0, "student_seconds_per_text": student_s,
                                      "train_seconds": trained[tables.STUDENT]["seconds"],
                                      "wall_seconds": round(wall, 1), "one_off": one_off}
        if targets == "soft":
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{name}-report.md").write_text((run.artifacts / "report.md").read_text())
            arms["gold seed only"] = {**scored(gold, student_predictions(run, trained[tables.GOLD_SEED]["path"],
                                                                         texts), k),
                                      "teacher_tokens_per_text": 0, "student_seconds_per_text": student_s,
                                      "train_seconds": trained[tables.GOLD_SEED]["seconds"]}
    pred, seconds = ceiling(run, first.train, labels, texts)
    arms["all gold (ceiling)"] = {**scored(gold, pred, k), "teacher_tokens_per_text": 0,
                                  "student_seconds_per_text": arms["student soft"]["student_seconds_per_text"],
                                  "train_seconds": round(seconds, 1), "gold_labels": int(data["seed"] + data["pool"])}
    differences = {f"{a} - {b}": paired(np.array(arms[a]["correct"], float), np.array(arms[b]["correct"], float))
                   for a, b in PAIRS}
    result = {
        "set": name, "source": SETS[name][0], "labels": labels, "teacher": f"hf:{args.teacher}",
        "student": args.student, "sizes": {s: data[s] for s in tables.SPLITS}, "test_labels": data["test_labels"],
        "settings": {k2: (str(v) if isinstance(v, Path) else v) for k2, v in vars(args).items()},
        "arms": arms, "differences": differences,
        "candidates": annotate.get("candidates", {}) | {
            "pool": frame_coverage(inputs.annotated_split(run, tables.POOL), labels)},
        "priors": icl.get("priors"), "icl_wall_seconds": round(icl_wall, 1),
        "teacher_speed": speed["teacher"] if speed else None, "student_speed": speed["student"] if speed else None,
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1))
    return result


def _cell(a: dict[str, Any]) -> str:
    lo, hi = a["accuracy_interval"]
    flo, fhi = a["macro_f1_interval"]
    return f"{100 * a['accuracy']:.1f} ({100 * lo:.0f}–{100 * hi:.0f}) / {a['macro_f1']:.2f} ({flo:.2f}–{fhi:.2f})"


def overview(results: list[dict[str, Any]]) -> list[str]:
    """One row per set, one column per arm: accuracy % / macro-F1, and the mean over sets."""
    arms = list(results[0]["arms"])
    lines = ["| set (test texts) | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for r in results:
        lines.append(f"| {r['set']} ({r['sizes']['test']}) | " + " | ".join(
            f"{100 * r['arms'][a]['accuracy']:.1f} / {r['arms'][a]['macro_f1']:.2f}" for a in arms) + " |")
    lines.append("| **mean** | " + " | ".join(
        f"**{100 * np.mean([r['arms'][a]['accuracy'] for r in results]):.1f} / "
        f"{np.mean([r['arms'][a]['macro_f1'] for r in results]):.2f}**" for a in arms) + " |")
    return lines


def summary(results: list[dict[str, Any]]) -> str:
    """The README tables: every set at a glance, then accuracy / macro-F1 with intervals per arm and set, tokens,
    coverage and the noisy gaps."""
    names = [r["set"] for r in results]
    arms = list(results[0]["arms"])
    lines = overview(results) + [""]
    lines += ["| arm | " + " | ".join(names) + " | mean acc / F1 |", "|---|" + "---|" * (len(names) + 1)]
    for arm in arms:
        got = [r["arms"][arm] for r in results]
        mean = f"{100 * np.mean([a['accuracy'] for a in got]):.1f} / {np.mean([a['macro_f1'] for a in got]):.2f}"
        lines.append(f"| {arm} | " + " | ".join(_cell(a) for a in got) + f" | **{mean}** |")
    lines += ["", "| set | test | pool | teacher tokens per text: zero-shot / ICL / feedback | teacher s per text: "
              "zero-shot / ICL / feedback | student ms per text | candidate sets: gold covered on test / mean size "
              "| prior accuracy on the seed | feedback fills | wall min |", "|---|" + "---|" * 9]
    for r in results:
        a = r["arms"]
        tok = " / ".join(f"{a[m]['teacher_tokens_per_text']:.0f}" for m in METHODS.values())
        sec = " / ".join(f"{a[m]['teacher_seconds_per_text'] or 0:.3f}" for m in METHODS.values())
        cov = r["candidates"].get("test") or {}
        cov_s = f"{100 * cov['coverage']:.1f} % / {cov['mean_size']:.2f}" if cov.get("n") else "–"
        ms = a["student soft"]["student_seconds_per_text"]
        lines.append(f"| {r['set']} | {r['sizes']['test']} | {r['sizes']['pool']} | {tok} | {sec} | "
                     f"{1000 * ms:.1f} | {cov_s} | {100 * (r['priors'] or {}).get('pool_accuracy', 0):.0f} % | "
                     f"{a[METHODS['feedback']]['fills']} | {r['wall_seconds'] / 60:.1f} |")
    lines += ["", "| set | feedback ICL per 1,000 texts: teacher tokens / teacher s | plain ICL: tokens / s | student "
              "one-off: teacher texts, tokens, teacher s, training s (soft) | student per 1,000 texts: s (batched) |",
              "|---|---|---|---|---|"]
    for r in results:
        a, once = r["arms"], r["arms"]["student soft"]["one_off"]
        per = {m: f"{a[m]['teacher_tokens_per_text']:.0f} k / {1000 * (a[m]['teacher_seconds_per_text'] or 0):.0f}"
               for m in (METHODS["feedback"], METHODS["icl"])}  # tokens per text = thousands per 1,000 texts
        lines.append(f"| {r['set']} | {per[METHODS['feedback']]} | {per[METHODS['icl']]} | {once['teacher_texts']}, "
                     f"{once['teacher_tokens'] / 1e3:.0f} k, {once['teacher_seconds']:.0f}, "
                     f"{a['student soft']['train_seconds']:.0f} | {1000 * a['student soft']['student_seconds_per_text']:.1f} |")
    lines += ["", "| paired difference (accuracy points, 95 % interval; * outside the noise) | " + " | ".join(names)
              + " | all sets' texts pooled |", "|---|" + "---|" * (len(names) + 1)]
    for a, b in PAIRS:
        cells = [difference(r["differences"][f"{a} - {b}"]) for r in results]
        pooled = [np.concatenate([r["arms"][arm]["correct"] for r in results]).astype(float) for arm in (a, b)]
        cells.append(difference(paired(*pooled)))
        lines.append(f"| {a} - {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    d = paired_bootstrap(a, b, resamples=5000)
    return {"accuracy_points": round(100 * d.estimate, 1), "interval": [round(100 * d.low, 1), round(100 * d.high, 1)],
            "inside_noise": d.inside_noise}


def difference(d: dict[str, Any]) -> str:
    lo, hi = d["interval"]
    return f"{d['accuracy_points']:+.1f} ({lo:+.1f}, {hi:+.1f})" + ("" if d["inside_noise"] else " *")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated subset of {', '.join(SETS)}")
    parser.add_argument("--seed", type=int, default=100, help="gold seed labels (also the demonstration pool)")
    parser.add_argument("--pool", type=int, default=300, help="unlabelled texts the teacher labels")
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=150)
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--student", default="minilm-l6")
    parser.add_argument("--sentiment-dir", default=None, help="the collection's folder ($PROTEGE_SENTIMENT_DIR)")
    parser.add_argument("--sst2-dir", default=None, help="SST-2 folder ($PROTEGE_SST2_DIR)")
    parser.add_argument("--out", type=Path, default=OUT, help="results folder")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/protege-sentiment9"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads per set")
    parser.add_argument("--jobs", type=int, default=2, help="sets run at once, each in its own process with "
                        "--threads threads (two sets at one thread each keep a 2-core machine busy without oversubscribing it)")
    parser.add_argument("--deadline", default=None, help="HH:MM (UTC): start no set predicted to end later (the mean "
                        "wall time of the sets this invocation finished is the prediction); a rerun resumes")
    parser.add_argument("--redo", action="store_true", help="rerun sets that have a result file")
    parser.add_argument("--summarise", action="store_true", help="only rebuild the table from the result files")
    args = parser.parse_args(argv)
    unknown = [s for s in args.sets.split(",") if s not in SETS]
    if unknown:
        parser.error(f"--sets: unknown {unknown}; choose from {', '.join(SETS)}")
    if args.jobs < 1 or args.threads < 1:
        parser.error("--jobs and --threads: at least 1")
    return args


BUDGET = ("seed", "pool", "dev", "test", "epochs", "teacher", "student")


def finished(path: Path, args: argparse.Namespace) -> Optional[dict[str, Any]]:
    """The set's result when it was measured at this budget; a result at another budget is redone, not mixed in."""
    if not path.exists() or args.redo:
        return None
    result = json.loads(path.read_text())
    was = {k: result["settings"].get(k) for k in BUDGET}
    if was != {k: getattr(args, k) for k in BUDGET}:
        print(f"{path.name} was measured at another budget ({was}): not mixed into this one", file=sys.stderr)
        return None
    return result


def present(name: str, args: argparse.Namespace) -> bool:
    source = SETS[name][0]
    try:
        PACKAGED[source].load(data_dir(source, args))
    except FileNotFoundError as exc:
        print(f"skipped {name}: {exc}", file=sys.stderr)
        return False
    return True


def in_processes(names: list[str], argv: list[str], args: argparse.Namespace) -> None:
    """Each set in its own ``--jobs 1`` process, ``--jobs`` at a time; a set's output goes to ``<runs>/<set>.log``."""
    walls: list[float] = []

    def skip(unit: Unit) -> Optional[str]:
        if late(args.deadline, np.mean(walls) if walls else 0.0):
            return f"it would end after --deadline {args.deadline} UTC; rerun to add it"
        return None

    def ended(unit: Unit, code: int, seconds: float) -> None:  # the set's own wall time is in its result
        result = args.out / f"{unit.name}.json"
        if code == 0 and result.exists():
            walls.append(json.loads(result.read_text())["wall_seconds"])
            print(f"{unit.name}: done in {walls[-1] / 60:.1f} min", flush=True)

    units = [Unit(name, (__file__, *argv, "--sets", name, "--jobs", "1")) for name in names]
    run_units(units, args.runs, args.jobs, args.threads, skip, ended)


def main(argv: list[str] | None = None, teacher: Optional[Callable] = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch.set_num_threads(args.threads)
    names = args.sets.split(",")
    todo = [n for n in names
            if not args.summarise and finished(args.out / f"{n}.json", args) is None and present(n, args)]
    if args.jobs > 1 and len(todo) > 1 and teacher is None:
        in_processes(todo, argv, args)
        args.redo, todo = False, []  # the children wrote the results: read them back below
    results, walls = [], []
    for name in names:
        if name not in todo:
            if (done := finished(args.out / f"{name}.json", args)) is not None:
                results.append(done)
            continue
        if late(args.deadline, np.mean(walls) if walls else 0.0):
            print(f"skipped {name}: it would end after --deadline {args.deadline} UTC; rerun to add it",
                  file=sys.stderr)
            continue
        try:
            results.append(run_set(name, args, teacher))
            walls.append(results[-1]["wall_seconds"])
        except Exception:  # one broken set must not cost the others in an unattended run; rerun resumes it
            print(f"{name}: failed\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            continue
        print(f"{name}: done in {results[-1]['wall_seconds'] / 60:.1f} min", flush=True)
    if results:
        table = summary(results)
        (args.out / "table.md").write_text(table + "\n")
        print(table)
    return results


if __name__ == "__main__":
    main()
