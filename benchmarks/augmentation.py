"""Augmentation benchmarks: the report prompt against the one-error prompt at equal teacher budget (PGKD), and
the synthesis strategy against the budget ratio R = budget / seed size (arXiv 2409.19759).

Every cell starts from a copy of one base run per (dataset, seed size, training seed): data -> prepare_teacher
(LoRA on the gold seed) -> annotate (dev and test only: no unlabelled pool) -> train (MiniLM on the gold seed
alone, ``train_table: null``) -> evaluate. A cell adds an ``augment`` section and evaluates again, so the base
run's student is the "no augmentation" row and every cell is scored on the same gold test texts; the cell's
test correctness is kept so arms can be compared pairwise. Budgets are in call units with
``generation_cost: 1`` (one scored prompt or one generated completion = 1 unit; the CPU-time ratio is recorded).

    python benchmarks/augmentation.py compare --datasets sst2 bbc-news --seed-size 100 --budget 80
    python benchmarks/augmentation.py grid --cells sst2:50:1:answer_aug,sst2:50:1:rephrase,sst2:50:1:new
    python benchmarks/augmentation.py grid --datasets sst2 sentiment-laptop --seed-sizes 50 100 --ratios 1 3 10 30
    python benchmarks/augmentation.py table        # summary.json, summary.md and crossover.png from the raw rows
    python benchmarks/augmentation.py grid --quick --cells sst2:20:1:new   # tiny sizes (smoke run, real models)

Units: one per ``compare`` arm (``--arms``) and per ``grid`` cell, ``--jobs`` (2) at a time, each in its own
process at ``--threads`` (1) torch threads (``benchmarks/processes.py``; logs in ``--logs``); ``--jobs 1`` runs
them one after another in this process. A (dataset, seed size)'s ``none`` unit (the compare arm, the grid cell
``dataset:size:0:none``) makes the base run and its other units wait for it.

Raw rows: ``results/augmentation/compare.jsonl`` and ``grid.jsonl`` (one line per cell, appended under a lock;
a cell already there is skipped, so an interrupted run resumes). Intervals: Wilson 95 % on test accuracy per
cell; paired bootstrap (same test texts) for differences between arms.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from processes import Unit, add_options, after_first, append_line, child, run_children  # noqa: E402
OUT = HERE / "results" / "augmentation"
DATASETS = {
    "sst2": (["negative", "positive"],
             "Is the sentiment of this movie review phrase negative or positive? Answer with one word: {labels}.", 64),
    "bbc-news": (["business", "entertainment", "politics", "sports", "tech"],
                 "Which topic is this news article about: {labels}? Answer with one word.", 128),
    "sentiment-laptop": (["negative", "neutral", "positive"],
                         "What is the sentiment toward the aspect in this laptop review sentence: {labels}? "
                         "Answer with one word.", 96),
}
VERBALIZERS = {"sports": ["sport", "Sport", "sports", "Sports"]}
STRATEGIES = ("answer_aug", "rephrase", "new")
ARMS = ("none", "one_error", "report")


def base_recipe(dataset: str, seed_size: int, seed: int, run_dir: Path, quick: bool, dev: int = 80,
                test: int = 250) -> dict:
    labels, instruction, max_length = DATASETS[dataset]
    return {
        "name": f"aug-{dataset}-{seed_size}", "run_dir": str(run_dir), "seed": seed,
        "teacher": {"backend": "hf", "model": "smollm2-135m-instruct", "batch_size": 8},
        "task": {"labels": labels, "instruction": instruction,
                 "verbalizers": {l: VERBALIZERS.get(l, [l, l.capitalize()]) for l in labels}},
        "data": {"source": dataset, "seed_size": seed_size, "dev_size": 20 if quick else dev,
                 "test_size": 40 if quick else test, "pool_size": 1, "max_chars": 300},  # pool unused (not annotated),
        "prepare_teacher": {"loop": {"epochs": 1 if quick else 3, "mixed_precision": "bf16"},
                            "lora": {"last_layers": 10}, "max_length": 128},
        "annotate": {"tables": ["dev", "test"], "calibration": "auto"},
        "train": {"train_table": None, "use_gold": True, "gold_repeats": 2, "gold_seed_baseline": False,
                  "learning_curve": [], "max_length": max_length,
                  "loop": {"epochs": 1 if quick else 4, "lr": 2.0e-4, "micro_batch_size": 16, "schedule": "linear",
                           "warmup_steps": 5, "weight_decay": 0.01, "eval_every": 10,
                           "early_stopping": {"metric": "dev_accuracy", "mode": "max", "patience": 3}}},
        "evaluate": {"measure_speed": False},
    }


def _sizes(args: argparse.Namespace) -> str:
    return "quick" if args.quick else f"d{args.dev_size}-n{args.test_size}"


def base_run(args: argparse.Namespace, dataset: str, seed_size: int, opens: bool = True) -> tuple[Path, dict]:
    """The base run's folder and recipe, the run made (or resumed) first unless this process is a child that
    does not open its (dataset, seed size): that one starts after the opener (its ``none`` unit) has made the
    base, and must not run the base's recipe again, since a run holds its directory's lock while it resumes
    (a sibling child would be refused) and sibling children copy the directory."""
    from protege.pipeline.recipe import parse_recipe
    from protege.pipeline.runner import run_recipe

    folder = args.runs / f"{dataset}-s{seed_size}-t{args.seed}-{_sizes(args)}"
    recipe = base_recipe(dataset, seed_size, args.seed, folder / "base", args.quick, args.dev_size, args.test_size)
    if opens or not args.child:
        began = time.perf_counter()
        run_recipe(parse_recipe(recipe))  # resumes: a finished base costs nothing
        print(f"base {folder.name}: {time.perf_counter() - began:.0f} s")
    return folder, recipe


def test_correct(run: Any) -> list[int]:
    """1/0 per gold test text (in the annotated test order): the run's student right or wrong."""
    from protege.tasks.classify import inputs
    from protege.tasks.classify.student import load_student, predict_probs

    test = inputs.gold_test(run)
    model, tok, card = load_student(run.artifact("student"))
    pred = predict_probs(model, tok, test["text"].tolist(), max_length=card.get("max_length", 128)).argmax(1)
    return (pred == test["gold_index"].to_numpy()).astype(int).tolist()


def run_cell(folder: Path, recipe: dict, name: str, augment: dict | None) -> dict:
    """Copy the base run, add ``augment`` (None: the base student), evaluate; the cell's row."""
    from protege.core.run import Run
    from protege.pipeline.recipe import parse_recipe
    from protege.pipeline.runner import run_recipe

    target = folder / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(folder / "base", target)
    began = time.perf_counter()
    if augment is not None:
        run_recipe(parse_recipe({**recipe, "run_dir": str(target), "augment": augment}))
    run = Run(target)
    metrics = run.read_json("metrics.json")
    student = metrics["models"]["student"]
    row = {"cell": name, "seconds": round(time.perf_counter() - began, 1), "augment": augment,
           "accuracy": student["accuracy"], "interval": student["accuracy_interval"],
           "macro_f1": student.get("macro_f1"), "teacher_accuracy": metrics["models"]["teacher"]["accuracy"],
           "test_n": metrics["test_examples"], "correct": test_correct(run)}
    if augment is not None:
        summary = run.read_json("augment.json")
        row.update({k: summary[k] for k in ("strategy", "spend", "kept_examples", "dev_before", "dev_after")})
        row["rounds"] = [{k: h.get(k) for k in ("round", "requests", "asked_for", "new_examples", "dev_metric",
                                                "kept", "stopped")} for h in summary["history"]]
        row["teacher_seconds"] = _teacher_seconds(run)
    print(f"{folder.name}/{name}: accuracy {row['accuracy']:.3f} {row['interval']} ({row['seconds']:.0f} s)")
    return row


def _teacher_seconds(run: Any) -> dict:
    """Paid teacher requests and their seconds per method in the run (the base's and the cell's), from the
    ledger: what one generation costs in scoring calls on this machine."""
    return {m: {"requests": t.calls, "seconds": round(t.latency_s, 1), "completion_tokens": t.completion_tokens}
            for m, t in run.ledger.totals_by_method().items()}


def _done(path: Path) -> set:
    return {json.loads(l)["key"] for l in path.read_text().splitlines() if l.strip()} if path.exists() else set()


def _append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    append_line(path, json.dumps(row))  # parallel children append to the same file


def compare_key(args: argparse.Namespace, dataset: str, arm: str) -> str:
    return f"{dataset}:{args.seed_size}:{args.seed}:{_sizes(args)}:{arm}:{args.budget}"


def compare_cmd(args: argparse.Namespace) -> None:
    out = rows_path(args)
    done = _done(out)
    for dataset in args.datasets:
        folder, recipe = base_run(args, dataset, args.seed_size, opens="none" in args.arms)
        arms = {"none": None}
        for prompt in ("one_error", "report"):
            arms[prompt] = {"prompt": prompt, "mine": "dev", "max_rounds": 2, "max_errors": args.budget // 4,
                            "per_error": 1, "max_new_tokens": 48, "early_stop": {"patience": 2},
                            "budget": {"units": args.budget, "generation_cost": 1}}
        for arm, augment in arms.items():
            key = compare_key(args, dataset, arm)
            if key in done or arm not in args.arms:
                continue
            row = run_cell(folder, recipe, arm, augment)
            _append(out, {"key": key, "dataset": dataset, "seed_size": args.seed_size, "seed": args.seed, "arm": arm,
                          "budget": args.budget, **row})


def parse_cells(text: str) -> list[tuple[str, int, float, str]]:
    """'dataset:seed_size:R:strategy,...' -> cells; refuses unknown datasets and strategies by name. Strategy
    ``none`` (R 0) is the base alone: its run and its no-augmentation row."""
    cells = []
    for item in filter(None, text.split(",")):
        dataset, size, ratio, strategy = item.split(":")
        if dataset not in DATASETS or strategy not in (*STRATEGIES, "none"):
            raise SystemExit(f"--cells {item!r}: dataset one of {sorted(DATASETS)}, strategy one of {STRATEGIES}"
                             " (or none: the base alone)")
        cells.append((dataset, int(size), 0.0 if strategy == "none" else float(ratio), strategy))
    return cells


def grid_cells(args: argparse.Namespace) -> list[tuple[str, int, float, str]]:
    return parse_cells(args.cells) if args.cells else [
        (d, s, r, st) for d in args.datasets for s in args.seed_sizes for r in args.ratios for st in STRATEGIES]


def grid_key(args: argparse.Namespace, dataset: str, size: int, ratio: float, strategy: str) -> str:
    tail = "none" if strategy == "none" else f"{ratio:g}:{strategy}"
    return f"{dataset}:{size}:{args.seed}:{_sizes(args)}:{tail}"


def grid_cmd(args: argparse.Namespace) -> None:
    out = rows_path(args)
    done = _done(out)
    for dataset, size, ratio, strategy in grid_cells(args):
        folder, recipe = base_run(args, dataset, size, opens=strategy == "none")
        base_key = grid_key(args, dataset, size, 0, "none")
        if base_key not in done:
            _append(out, {"key": base_key, "dataset": dataset, "seed_size": size, "seed": args.seed, "ratio": 0,
                          "strategy": "none", **run_cell(folder, recipe, "none", None)})
            done.add(base_key)
        key = grid_key(args, dataset, size, ratio, strategy)
        if key in done:
            continue
        units = int(round(ratio * size))
        augment = {"strategy": strategy, "mine": "dev", "max_rounds": 3, "max_errors": 40, "per_error": 2,
                   "max_new_tokens": 48, "early_stop": {"patience": 3},
                   "budget": {"units": units, "generation_cost": 1}}
        row = run_cell(folder, recipe, f"R{ratio:g}-{strategy}", augment)
        _append(out, {"key": key, "dataset": dataset, "seed_size": size, "seed": args.seed, "ratio": ratio,
                      "strategy_name": strategy, **row})
        done.add(key)


def _paired(a: dict, b: dict) -> dict:
    from protege.evaluate.intervals import paired_bootstrap

    d = paired_bootstrap(a["correct"], b["correct"], resamples=5000)
    return {"difference": round(d.estimate, 4), "interval": [round(d.low, 4), round(d.high, 4)],
            "inside_noise": d.inside_noise}


def _rows(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()] if path.exists() else []


def _fmt(row: dict) -> str:
    low, high = row["interval"]
    return f"{row['accuracy']:.3f} [{low:.3f}, {high:.3f}]"


def _spent(row: dict) -> str:
    s = row.get("spend")
    return "–" if not s else f"{s['units']:g} ({s['generated']} gen + {s['scored']} scored)"


def _same_base(a: dict, b: dict) -> bool:
    """Rows scored on the same test texts: same dataset, seed size, training seed and split sizes."""
    return all(a.get(k) == b.get(k) for k in ("dataset", "seed_size", "seed", "test_n"))


def _points(diff: dict | None) -> str:
    if diff is None:
        return "–"
    low, high = diff["interval"]
    return f"{100 * diff['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def table_cmd(args: argparse.Namespace) -> None:
    out = args.out
    lines, summary = [], {"compare": [], "grid": []}
    compare = _rows(out / "compare.jsonl")
    if compare:
        lines += ["| dataset (seed) | arm | budget spent (units) | kept rows | dev agreement before -> after | "
                  "test accuracy [95 % CI] | vs one_error (paired, points) |", "|---|---|---|---|---|---|---|"]
        for row in compare:
            ref = next((r for r in compare if _same_base(r, row) and r["arm"] == "one_error"), None)
            diff = _paired(row, ref) if ref is not None and row["arm"] == "report" else None
            summary["compare"].append({k: row.get(k) for k in ("dataset", "seed", "arm", "accuracy", "interval",
                                                                "spend", "kept_examples")} | {"vs_one_error": diff})
            dev = (f"{row['dev_before']:.3f} -> {row['dev_after']:.3f}" if row.get("spend") else "–")
            lines.append(f"| {row['dataset']} ({row['seed_size']}) | {row['arm']} | {_spent(row)} | "
                         f"{row.get('kept_examples', '–')} | {dev} | {_fmt(row)} | {_points(diff)} |")
        lines.append("")
    grid = _rows(out / "grid.jsonl")
    if grid:
        lines += ["| dataset | seed | R | strategy | budget spent (units) | kept rows | test accuracy [95 % CI] | "
                  "vs no augmentation (paired, points) |", "|---|---|---|---|---|---|---|---|"]
        for row in sorted(grid, key=lambda r: (r["dataset"], r["seed_size"], r["ratio"], r["cell"])):
            base = next(r for r in grid if _same_base(r, row) and r["strategy"] == "none")
            diff = None if row is base else _paired(row, base)
            strategy = (row.get("strategy") or {}).get("strategy", "none") if row is not base else "none"
            summary["grid"].append({"dataset": row["dataset"], "seed_size": row["seed_size"], "ratio": row["ratio"],
                                    "strategy": strategy, "accuracy": row["accuracy"], "interval": row["interval"],
                                    "spend": row.get("spend"), "vs_none": diff})
            lines.append(f"| {row['dataset']} | {row['seed_size']} | {row['ratio']:g} | {strategy} | {_spent(row)} | "
                         f"{row.get('kept_examples', '–')} | {_fmt(row)} | {_points(diff)} |")
        crossover_plot(summary["grid"], out / "crossover.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def crossover_plot(rows: list[dict], path: Path) -> None:
    """Test accuracy against R per strategy (one panel per dataset and seed size), with 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dataset"], r["seed_size"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (dataset, size) in zip(axes[0], panels):
        mine = [r for r in rows if (r["dataset"], r["seed_size"]) == (dataset, size)]
        for r in (r for r in mine if r["strategy"] == "none"):
            ax.axhline(r["accuracy"], color="grey", linestyle="--", linewidth=1, label="no augmentation")
        for strategy in STRATEGIES:
            pts = sorted((r["ratio"], r["accuracy"], *r["interval"]) for r in mine if r["strategy"] == strategy)
            if pts:
                x, y, lo, hi = map(np.array, zip(*pts))
                ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=strategy)
        ax.set_xscale("log")
        ax.set_xlabel("R = teacher budget / seed size (call units)")
        ax.set_ylabel("student test accuracy")
        ax.set_title(f"{dataset}, seed {size}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def rows_path(args: argparse.Namespace) -> Path:
    return args.out / f"{args.command}{'-quick' if args.quick else ''}.jsonl"


def units(args: argparse.Namespace, argv: list[str], done: set) -> list[Unit]:
    """The pending compare arms or grid cells as child processes, in the order the loops above run them, each
    (dataset, seed size) opened by its ``none`` unit: it makes the base run the others copy (a finished base
    costs nothing, a finished row is not redone), and they wait for it."""
    plan: list[tuple[str, str, tuple[str, ...]]] = []  # (dataset-size, unit name, the child's selection)
    if args.command == "compare":
        for dataset in args.datasets:
            group = f"{dataset}-{args.seed_size}"
            arms = [a for a in args.arms if compare_key(args, dataset, a) not in done]
            if arms:
                plan += [(group, f"compare-{group}-{a}", ("--datasets", dataset, "--arms", a))
                         for a in dict.fromkeys(("none", *arms))]
    else:
        groups: dict[str, list] = {}  # dataset-size -> its cells, the base ("none") first
        for dataset, size, ratio, strategy in grid_cells(args):
            cells = groups.setdefault(f"{dataset}-{size}", [(dataset, size, 0.0, "none")])
            if (dataset, size, ratio, strategy) not in cells:
                cells.append((dataset, size, ratio, strategy))
        for group, (base, *cells) in groups.items():
            pending = [c for c in cells if grid_key(args, *c) not in done]
            if pending or grid_key(args, *base) not in done:
                plan += [(group, f"grid-{group}-" + ("none" if st == "none" else f"R{r:g}-{st}"),
                          ("--cells", f"{d}:{size}:{r:g}:{st}")) for d, size, r, st in (base, *pending)]
    group_of = {name: group for group, name, _ in plan}
    return after_first([Unit(name, child(__file__, argv, *sel)) for _, name, sel in plan], lambda u: group_of[u.name])


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("compare", "grid", "table"))
    parser.add_argument("--datasets", nargs="+", default=["sst2", "bbc-news"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="compare: the arms to run")
    parser.add_argument("--seed-size", type=int, default=100, help="compare: gold seed size")
    parser.add_argument("--budget", type=int, default=80, help="compare: call units per arm")
    parser.add_argument("--seed-sizes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1, 3, 10, 30])
    parser.add_argument("--cells", default="", help="grid: only these cells, 'dataset:seed_size:R:strategy,...'")
    parser.add_argument("--dev-size", type=int, default=80, help="gold dev texts (teacher-labelled for the rounds)")
    parser.add_argument("--test-size", type=int, default=250, help="gold test texts every cell is scored on")
    parser.add_argument("--quick", action="store_true", help="tiny splits and one epoch (a smoke run)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data split too)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the raw rows and the summary")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/protege-augmentation-bench"))
    add_options(parser, Path("/tmp/protege-augmentation-logs"), "arms or cells")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.command == "table":
        table_cmd(args)
        return 0
    if args.jobs > 1:
        return run_children(units(args, argv, _done(rows_path(args))), args)
    import torch

    torch.set_num_threads(args.threads)
    (compare_cmd if args.command == "compare" else grid_cmd)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
