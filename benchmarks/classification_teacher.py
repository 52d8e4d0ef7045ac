"""How good is the embedded teacher as an annotator, and what do calibration, ensembling and preparation recover?

For one dataset, runs the recipe stages data -> [prepare_teacher] -> annotate with the embedded SmolLM2 teacher
and two prompt templates, then prints the accuracy / macro-F1 of every variant on gold dev and test texts
(from ``artifacts/annotate.json``) and the annotation wall time per 100 texts.

    python benchmarks/classification_teacher.py --dataset drug-reviews [--prepared --bf16] [--test 60]

Results go to ``benchmarks/results/classification_teacher-<dataset>[-prepared].json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from protege.data.packaged import PACKAGED
from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import parse_recipe

HERE = Path(__file__).parent
LABELS = {name: list(p.labels) for name, p in PACKAGED.items() if p.labels}  # the classification datasets
SUBJECT = {"drug-reviews": "sentiment of this drug review", "bbc-news": "topic of this news article",
           "sst2": "sentiment of this movie review"}
WORDS = {"sports": ["sport", "Sport", "sports", "Sports"]}


def recipe(dataset: str, run_dir: Path, args: argparse.Namespace) -> dict:
    labels = LABELS[dataset]
    out = {
        "name": f"teacher-{dataset}", "run_dir": str(run_dir), "seed": args.seed,
        "teacher": {"backend": "hf", "model": "smollm2-135m-instruct", "batch_size": 8},
        "task": {
            "labels": labels,
            "verbalizers": {label: WORDS.get(label, [label, label.capitalize()]) for label in labels},
            "instruction": f"Classify the {SUBJECT[dataset]} as one of: {{labels}}. Answer with one word.",
            "templates": ["{instruction}\n\nText: {text}", "{text}\n\n{instruction}"][: args.templates],
        },
        "data": {"source": dataset, "seed_size": args.seed_size, "dev_size": args.dev, "test_size": args.test,
                 "pool_size": args.pool, "max_chars": args.max_chars},
        "annotate": {"tables": ["pool", "dev", "test"], "chunk_size": 16},
    }
    if args.prepared:
        out["prepare_teacher"] = {"loop": {"epochs": args.epochs, "mixed_precision": "bf16" if args.bf16 else "no"},
                                  "max_length": 160, "lora": {"last_layers": args.last_layers}}
    return out


def summary_table(folder: Path) -> str:
    """Markdown rows (dataset, teacher, variant, test accuracy / macro-F1 / largest-class share, s per 100 texts)."""
    lines = ["| dataset (test n, majority) | teacher | variant | accuracy | macro-F1 | one-label share | s / 100 texts |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(folder.glob("classification_teacher-*.json")):
        r = json.loads(path.read_text())
        who = "prepared (LoRA, 100 gold)" if r["prepared"] else "base"
        for variant, scores in r["variants"].items():
            t = scores["test"]
            lines.append(f"| {r['dataset']} ({t['n']}, {r['test_majority']:.1%}) | {who} | {variant} "
                         f"| {t['accuracy']:.1%} | {t['macro_f1']:.2f} | {t['largest_class_share']:.0%} "
                         f"| {r['timing']['seconds_per_100_texts']} ({r['templates']} templates) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarise", action="store_true", help="print the results so far as a markdown table")
    parser.add_argument("--dataset", choices=sorted(LABELS))
    parser.add_argument("--prepared", action="store_true", help="LoRA-prepare the teacher on the seed set first")
    parser.add_argument("--seed-size", type=int, default=100)
    parser.add_argument("--dev", type=int, default=30)
    parser.add_argument("--test", type=int, default=60)
    parser.add_argument("--pool", type=int, default=60)
    parser.add_argument("--max-chars", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--templates", type=int, choices=(1, 2), default=2, help="prompt templates (2 = ensemble)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--last-layers", type=int, default=None, help="adapt only the last N layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--runs", type=Path, default=Path("/tmp/protege-teacher-bench"))
    args = parser.parse_args()
    if args.summarise:
        print(summary_table(HERE / "results"))
        return
    if args.dataset is None:
        parser.error("--dataset is required")
    torch.set_num_threads(args.threads)

    name = args.dataset + ("-prepared" if args.prepared else "")
    run_dir = args.runs / name
    began = time.perf_counter()
    run = run_recipe(parse_recipe(recipe(args.dataset, run_dir, args)))
    report = run.read_json("annotate.json")
    data = run.read_json("data.json")
    result = {
        "dataset": args.dataset, "prepared": args.prepared, "sizes": {k: data[k] for k in ("pool", "seed", "dev", "test")},
        "test_majority": data.get("test_majority"), "max_chars": args.max_chars, "templates": args.templates,
        "chosen": report["calibration"], "variants": report["variants"], "timing": report["timing"],
        "wall_seconds": round(time.perf_counter() - began, 1),
    }
    if args.prepared:
        result["preparation"] = run.read_json("prepare_teacher.json")["history"]
    out = HERE / "results" / f"classification_teacher-{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"{name}: test majority {result['test_majority']:.1%}; chosen {result['chosen']}")
    for variant, scores in report["variants"].items():
        test = scores.get("test", {})
        print(f"  {variant:<22} test acc {test.get('accuracy', float('nan')):.1%} "
              f"macro-F1 {test.get('macro_f1', float('nan')):.2f} one-label share {test.get('largest_class_share')}")
    print(f"  {report['timing']['seconds_per_100_texts']} s per 100 texts ({args.templates} templates); wrote {out}")


if __name__ == "__main__":
    main()
