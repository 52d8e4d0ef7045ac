"""The reasoning family's benchmark: where the healed student's boundary is, then equal-budget allocation.

    python benchmarks/reasoning.py grid --run runs/reasoning-quickstart          # the boundary grid
    python benchmarks/reasoning.py compare --terms 3 --digits 1                    # uniform vs HS-STaR vs DAST
    python benchmarks/reasoning.py collect --compare-run runs/reasoning-quickstart  # the table of a finished run
    python benchmarks/reasoning.py grid --quick                                    # tiny random llama, seconds

**Grid.** The healed student of a finished run (its ``artifacts/student``) samples k responses to each of
``--problems`` chain sums per cell of terms × digits (test split, temperature 1; a cell with fewer test problems
gives all it has: 2 × 1 has 18); per cell the mean pass rate, the share of problems HS-STaR would label boundary
(with the process score, as the family labels them), and format / truncation rates. The chosen cell has a mean pass rate in [0.25, 0.6] and the largest boundary share
(else the pass rate nearest 0.4).

**Compare.** ``recipes/reasoning-allocation.yaml`` run at the chosen cell through the pipeline: uniform vs
HS-STaR vs DAST (teacher-written better responses for hard and unsolved problems) at the same budget, one
STaR round and one DPO round per arm, evaluated on the same test problems with paired bootstrap intervals.
The result file gathers the budget table and the accuracy table from the run directory.

Raw results go to ``benchmarks/results/reasoning-grid.json`` and ``reasoning-allocation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))


def grid(student_dir: Path, terms: list[int], digits: list[int], problems: int, k: int, max_new_tokens: int,
         batch_size: int, model=None) -> dict:
    from protege.models.zoo import load_causal_lm
    from protege.tasks.reasoning.difficulty import LabelConfig, estimate
    from protege.tasks.reasoning.sampling import sample_responses
    from protege.tasks.reasoning.sources import chain_sum
    from protege.tasks.reasoning.task import ReasoningTask, prompt, score

    lm, tokenizer = model or load_causal_lm(str(student_dir))
    cells = []
    for t in terms:
        for d in digits:
            began = time.perf_counter()
            task = ReasoningTask(knobs={"terms": t, "digits": d})
            batch = chain_sum(problems, terms=t, digits=d, split="test", seed=0, at_most=True)  # 2 x 1 has 18
            drawn = sample_responses(lm, tokenizer, [prompt(task, p.question) for p in batch], k=k,
                                     temperature=1.0, max_new_tokens=max_new_tokens, seed=0, batch_size=batch_size)
            rows = [{"problem_id": p.id, "tokens": s.tokens, **score(task, s.text, p.answer, truncated=s.truncated)}
                    for p, samples in zip(batch, drawn) for s in samples]
            stats = estimate(rows, LabelConfig())
            cell = {"terms": t, "digits": d, "problems": len(batch), "k": k,
                    "pass_rate": sum(s.pass_rate for s in stats) / len(stats),
                    "boundary_share": sum(s.hs_label == "boundary" for s in stats) / len(stats),
                    "mixed_share": sum(0 < s.correct < s.k for s in stats) / len(stats),
                    "format_rate": sum(r["formatted"] for r in rows) / len(rows),
                    "truncation_rate": sum(r["truncated"] for r in rows) / len(rows),
                    "mean_tokens": sum(r["tokens"] for r in rows) / len(rows),
                    "seconds": round(time.perf_counter() - began, 1)}
            print(json.dumps(cell), flush=True)
            cells.append(cell)
    return {"cells": cells, "chosen": choose(cells)}


def choose(cells: list[dict]) -> dict:
    inside = [c for c in cells if 0.25 <= c["pass_rate"] <= 0.6]
    if inside:
        best = max(inside, key=lambda c: (c["boundary_share"], -abs(c["pass_rate"] - 0.4)))
        return {"terms": best["terms"], "digits": best["digits"], "rule": "pass rate in [0.25, 0.6], largest "
                "boundary share"}
    best = min(cells, key=lambda c: abs(c["pass_rate"] - 0.4))
    return {"terms": best["terms"], "digits": best["digits"], "rule": "no cell in [0.25, 0.6]: pass rate nearest 0.4"}


def compare(recipe_path: Path, terms: int, digits: int, run_dir: Path, start_from: Path | None) -> dict:
    import shutil

    from protege.pipeline.recipe import load_recipe
    from protege.pipeline.runner import run_recipe

    if start_from is not None and not run_dir.exists():
        # A finished run with the same problems, teacher, student and estimate sections: the pipeline's
        # signatures then skip those stages and only allocate, selftrain and evaluate run.
        shutil.copytree(start_from, run_dir)

    recipe = load_recipe(recipe_path, {"task.knobs.terms": terms, "task.knobs.digits": digits,
                                       "run_dir": str(run_dir)})
    began = time.perf_counter()
    run_recipe(recipe)
    return {**collect(run_dir), "seconds": round(time.perf_counter() - began, 1)}


def collect(run_dir: Path) -> dict:
    """The allocation table of a finished run (any reasoning recipe with allocate, selftrain and evaluate)."""
    from protege.core.run import Run

    run = Run.open_existing(run_dir)
    metrics = run.read_json("reasoning_metrics.json")
    alloc = run.read_json("allocate.json")
    trained = metrics["trained"]
    arms = {}
    for name, b in alloc["arms"].items():
        arms[name] = {"boundary_share": b["boundary_share"], "per_hs_label": b["per_hs_label"],
                      "extra_on_solved": b["extra_on_solved"], "teacher_calls": b["teacher_calls"],
                      "samples": b["samples"], "extra_tokens": b["extra_tokens"], "extra_seconds": b["extra_seconds"],
                      **{f"{m}_data": trained.get(f"{name}-{m}", {}).get("examples") for m in ("star", "dpo")},
                      **{f"{m}_accuracy": metrics["models"].get(f"{name}-{m}", {}).get("accuracy")
                         for m in ("star", "dpo")}}
    task = run.records.read("problems")["meta"].iloc[0]
    return {"run": str(run_dir), "cell": json.loads(task), "budget": alloc["budget"], "presamples": alloc["presamples"],
            "estimate": metrics.get("estimate"), "student_accuracy": metrics["models"]["student"]["accuracy"],
            "teacher_accuracy": metrics["models"].get("teacher", {}).get("accuracy"), "arms": arms,
            "comparisons": metrics["comparisons"], "test_problems": metrics["test_problems"],
            "headline": metrics["headline"]}


def _quick_model():
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import build_llama, build_tokenizer

    tokenizer = build_tokenizer()
    return build_llama(len(tokenizer), layers=2), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["grid", "compare", "collect"])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "reasoning-quickstart",
                        help="grid: a finished run whose artifacts/student is measured")
    parser.add_argument("--terms", type=int, nargs="+", default=[2, 3, 4, 5])
    parser.add_argument("--digits", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=72)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "reasoning-allocation.yaml")
    parser.add_argument("--compare-run", type=Path, default=ROOT / "runs" / "reasoning-allocation")
    parser.add_argument("--start-from", type=Path, default=None,
                        help="compare: copy this finished run first (same cell and settings up to estimate)")
    parser.add_argument("--quick", action="store_true", help="grid on a tiny random llama (a smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
           "machine": platform.machine()}
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    if args.what == "grid":
        model = _quick_model() if args.quick else None
        out = grid(args.run / "artifacts" / "student", args.terms, args.digits, args.problems, args.k,
                   args.max_new_tokens, args.batch_size, model)
        out.update(env=env, student=str(args.run), sampling={"temperature": 1.0, "max_new_tokens": args.max_new_tokens})
        target = results / ("reasoning-grid-quick.json" if args.quick else "reasoning-grid.json")
    elif args.what == "collect":
        out = collect(args.compare_run)
        out.update(env=env)
        target = results / f"reasoning-allocation-{args.compare_run.name}.json"
    else:
        out = compare(args.recipe, args.terms[0], args.digits[0], args.compare_run, args.start_from)
        out.update(env=env, recipe=str(args.recipe.relative_to(ROOT)))
        target = results / "reasoning-allocation.json"
    target.write_text(json.dumps(out, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
