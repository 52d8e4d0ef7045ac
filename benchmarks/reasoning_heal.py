"""Healing the reasoning family's pruned student: which recipe gives it a non-zero accuracy, at what cost.

    python benchmarks/reasoning_heal.py run --teacher-steps 30 --variants kd20 kd60_lr1e3 --jobs 2 --threads 1
    python benchmarks/reasoning_heal.py table            # results/reasoning_heal-runs.jsonl -> reasoning_heal.json
    python benchmarks/reasoning_heal.py probe --run runs/heal/3x1-t30/kd20   # layer choices before any healing
    python benchmarks/reasoning_heal.py run --quick --variants kd20 --runs /tmp/heal   # tiny random llama, seconds

**What runs.** ``recipes/reasoning-quickstart.yaml``'s ``problems``, ``prepare_teacher``, ``student`` and
``evaluate`` sections, nothing after. One run directory per (cell, teacher steps) prepares the teacher once;
every healing variant runs in a copy of it (the pipeline's signatures skip the stages already done, and the
teacher's greedy answers come back from the ledger), so variants of one teacher differ only in the healing.
Each (cell, teacher steps, variant) appends a row to ``results/reasoning_heal-runs.jsonl``: greedy accuracy of
the teacher and the student on the test problems, their format rates, the student's final training loss, the
seconds of teacher preparation and of healing, and why the teacher's wrong answers are wrong (unformatted,
truncated, a wrong ``a ± b = c`` step, or every written step right but the wrong numbers chained). A row
already there is skipped, so an interrupted run resumes.

**Processes.** ``run`` heals the variants ``--jobs`` (2) at a time, each in its own process at ``--threads`` (1)
torch threads (``benchmarks/processes.py``; logs in ``--logs``), rows appended under a lock; while no finished
variant holds the prepared teacher, the first variant prepares it and the others wait for it. Copies are taken
from finished variants only (not from one another while they heal). ``--jobs 1`` heals them one after another
in this process.

**Probe.** Which 15 layers to keep, before any healing: each candidate cut of a finished run's prepared teacher
(``PROBE_CUTS``) is scored teacher-forced on training solutions (the tokenisation the healing uses): mean
cross-entropy of the solution tokens, and how often every digit token of an ``a ± b = c`` result is the cut
model's argmax (until 2026-12-02 only the token right after "=" was scored: a space or a minus sign, not a
digit). Forward passes only, a few CPU-minutes; written to ``results/reasoning_heal-probe.json``.

**Variants** (``VARIANTS``): the student section's ``loop`` and ``distill`` overrides and its ``keep``. The
student stays the layer-pruned half-depth copy of the prepared teacher, healed by its logit KD; variants change
the steps, learning rate, the cross-entropy mixed in and which 15 of the 30 layers are kept.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from processes import Unit, add_options, after_first, append_line, child, run_children  # noqa: E402
from reasoning_rl import _quick_teacher  # noqa: E402  (the same tiny teacher as the RL benchmark's smoke runs)

RECIPE = ROOT / "recipes" / "reasoning-quickstart.yaml"
RESULTS = HERE / "results"
ROWS = "reasoning_heal-runs.jsonl"
EVERY_OTHER = "every_other"
KEEP_LAST = [*range(0, 28, 2), 29]  # every other layer, but the last one kept instead of layer 28
ENDS = [*range(8), *range(23, 30)]  # the first 8 and the last 7: one contiguous block of 15 removed

VARIANTS: dict[str, dict] = {
    "kd20": {"loop": {"steps": 20, "lr": 3e-4, "warmup_steps": 2}, "keep": EVERY_OTHER},  # the default until 2026-12-02
    "kd60_lr1e3": {"loop": {"steps": 60, "lr": 1e-3, "warmup_steps": 5}, "keep": EVERY_OTHER},
    "kd60_lr1e3_last": {"loop": {"steps": 60, "lr": 1e-3, "warmup_steps": 5}, "keep": KEEP_LAST},
    "kd40_lr5e4": {"loop": {"steps": 40, "lr": 5e-4, "warmup_steps": 5}, "keep": EVERY_OTHER},
    "kd40_lr5e4_ends": {"loop": {"steps": 40, "lr": 5e-4, "warmup_steps": 5}, "keep": ENDS},  # the new default
    "kd40_lr5e4_ends_ce0": {"loop": {"steps": 40, "lr": 5e-4, "warmup_steps": 5}, "keep": ENDS,
                            "distill": {"ce_weight": 0.0}},
}

PROBE_CUTS: dict[str, Optional[list[int]]] = {
    "teacher (30 layers)": None, "every_other": list(range(0, 30, 2)), "every_other_last": KEEP_LAST,
    "first_15": list(range(15)), "first_14_last": [*range(14), 29], "first_12_last_3": [*range(12), 27, 28, 29],
    "first_10_last_5": [*range(10), *range(25, 30)], "first_8_last_7": ENDS,
    # deeper students, for scale: how many layers a cut must keep before the arithmetic survives it
    "18: first_10_last_8": [*range(10), *range(22, 30)], "20: first_10_last_10": [*range(10), *range(20, 30)],
    "20: first_14_last_6": [*range(14), *range(24, 30)], "22: first_10_last_12": [*range(10), *range(18, 30)],
    "24: first_12_last_12": [*range(12), *range(18, 30)],
}
QUICK_CUTS: dict[str, Optional[list[int]]] = {"teacher (4 layers)": None, "every_other": [0, 2], "first_2": [0, 1]}


def recipe_data(run_dir: Path, terms: int, digits: int, teacher_steps: int, variant: str, quick: bool,
                counts: Optional[dict] = None) -> dict:
    import yaml

    data = yaml.safe_load(RECIPE.read_text())
    for section in ("estimate", "allocate", "selftrain", "report"):
        data.pop(section, None)
    data["run_dir"] = str(run_dir)
    data["task"]["knobs"] = {"terms": terms, "digits": digits}
    data["problems"].update(counts or {})
    data["prepare_teacher"]["loop"]["steps"] = teacher_steps
    spec = VARIANTS[variant]
    student = data["student"]
    student["loop"] = {**student["loop"], **spec.get("loop", {})}
    student["distill"] = {**student["distill"], **spec.get("distill", {})}
    student["keep"] = spec["keep"]
    if quick:  # tiny random models: every stage for a step or two
        loop = {"steps": 2, "micro_batch_size": 2, "lr": 1e-3, "tracker": None, "log_every": 1}
        data.update(teacher={"backend": "hf", "model": "tiny"}, problems={"train": 8, "test": 4})
        data["prepare_teacher"]["loop"] = loop
        student["loop"] = {**loop, "steps": max(1, student["loop"]["steps"] // 20)}  # variants still differ
        student["keep"] = "every_other"
        data["evaluate"] = {"max_new_tokens": 6}
    return data


def why_wrong(rows: list[dict]) -> dict[str, int]:
    """The wrong greedy answers of one model by cause, each counted once, first cause first."""
    out = {"unformatted": 0, "truncated": 0, "wrong_step": 0, "steps_right_answer_wrong": 0}
    for r in rows:
        if r["correct"]:
            continue
        if r["truncated"]:
            out["truncated"] += 1
        elif not r["formatted"]:
            out["unformatted"] += 1
        elif r["process_score"] is not None and r["process_score"] < 1:
            out["wrong_step"] += 1
        else:
            out["steps_right_answer_wrong"] += 1
    return out


def teacher_source(base: Path, finished: set[str]) -> Optional[Path]:
    """The variant run of ``base`` to copy the prepared teacher from: a finished variant's (one with a row: no
    other process writes it any more) when there is one, else any run that got as far as its evaluation."""
    evaluated = [p for p in sorted(base.glob("*")) if (p / "artifacts" / "reasoning_metrics.json").exists()]
    return next((p for p in evaluated if p.name in finished), next(iter(evaluated), None))


def run_one(runs: Path, terms: int, digits: int, teacher_steps: int, variant: str, quick: bool,
            counts: Optional[dict] = None, finished: frozenset[str] = frozenset()) -> dict:
    """Heal one variant from the (cell, teacher steps) teacher, preparing that teacher first if needed
    (``finished``: the variants of this cell and teacher with a row, see :func:`teacher_source`)."""
    from protege.core.run import Run
    from protege.pipeline.recipe import parse_recipe
    from protege.pipeline.runner import run_recipe

    base = runs / f"{terms}x{digits}-t{teacher_steps}"
    folder = base / variant
    first = teacher_source(base, finished)
    if first is not None and not folder.exists():
        shutil.copytree(first, folder)  # the prepared teacher and its ledger; the student and evaluate rerun
    data = recipe_data(folder, terms, digits, teacher_steps, variant, quick, counts)
    began = time.perf_counter()
    run_recipe(parse_recipe(data, str(RECIPE), RECIPE.parent), teacher=_quick_teacher() if quick else None)
    run = Run.open_existing(folder)
    metrics = run.read_json("reasoning_metrics.json")
    results = run.records.read("test_results").to_dict("records")
    models = metrics["models"]
    teacher, student = metrics.get("teacher") or {}, metrics.get("student") or {}
    return {"cell": f"{terms}x{digits}", "teacher_steps": teacher_steps, "variant": variant,
            "settings": VARIANTS[variant], "test_problems": metrics["test_problems"],
            "teacher_accuracy": models["teacher"]["accuracy"], "student_accuracy": models["student"]["accuracy"],
            "teacher_format": models["teacher"]["format_rate"], "student_format": models["student"]["format_rate"],
            "teacher_loss": teacher.get("final_loss"), "student_loss": student.get("final_loss"),
            "teacher_seconds": teacher.get("seconds"), "heal_seconds": student.get("seconds"),
            "wall_seconds": round(time.perf_counter() - began, 1),
            "teacher_wrong": why_wrong([r for r in results if r["policy"] == "teacher"]),
            "student_wrong": why_wrong([r for r in results if r["policy"] == "student"])}


def units(variants: list[str], argv: list[str], prepared: bool) -> list[Unit]:
    """One child per variant; unless a finished variant holds the prepared teacher, the first variant prepares
    it and the others wait for it (rather than each preparing its own)."""
    todo = [Unit(v, child(__file__, argv, "--variants", v)) for v in variants]
    return todo if prepared else after_first(todo, lambda unit: "teacher")


def result_spans(pieces: list[str]) -> list[list[int]]:
    """Positions of the digit tokens of each ``a ± b = c`` result in a solution's decoded tokens: what comes
    after a token ending in "=" up to the line break. SmolLM2 splits "= 16" into " =", " ", "1", "6" (and
    "= -3" into " =", " -", "3"), so the token right after "=" is only the space or the sign."""
    spans, current = [], None
    for i, piece in enumerate(pieces):
        if piece.strip().endswith("="):
            current = []
            spans.append(current)
        elif current is not None:
            if "\n" in piece or "<" in piece:
                current = None
            elif any(ch.isdigit() for ch in piece):
                current.append(i)
    return [span for span in spans if span]


def probe(run_dir: Path, examples: int, cuts: dict[str, Optional[list[int]]]) -> list[dict]:
    """Teacher-forced cross-entropy and result accuracy of every cut (``PROBE_CUTS``), untrained: a result is
    right when each of its digit tokens is the cut model's argmax (:func:`result_spans`)."""
    import copy

    import torch

    from protege.core.run import Run
    from protege.models.prune import prune_layers
    from protege.models.zoo import load_causal_lm
    from protege.pipeline.recipe import load_recipe
    from protege.tasks.reasoning.prepare import solution_examples

    run = Run.open_existing(run_dir)
    recipe = load_recipe(run_dir / "recipe.yaml", {"run_dir": str(run_dir)})
    teacher, tokenizer = load_causal_lm(str(run.artifacts / "teacher"))
    data = solution_examples(run, recipe.task, tokenizer, recipe.student.max_length)
    rows = []
    for name, keep in cuts.items():
        model = (teacher if keep is None else prune_layers(copy.deepcopy(teacher), keep)).eval()
        losses, right, results = [], 0, 0
        for ids, n_prompt in list(zip(data.sequences, data.prompt_lengths))[:examples]:
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, n_prompt - 1:-1].float()
            targets = torch.tensor(ids[n_prompt:])
            losses.append(torch.nn.functional.cross_entropy(logits, targets).item())
            hits = (logits.argmax(-1) == targets).tolist()
            spans = result_spans([tokenizer.decode([t]) for t in ids[n_prompt:]])
            right += sum(all(hits[i] for i in span) for span in spans)
            results += len(spans)
        rows.append({"cut": name, "layers": keep or list(range(teacher.config.num_hidden_layers)),
                     "solution_ce": round(sum(losses) / len(losses), 3), "results": results,
                     "result_accuracy": round(right / max(results, 1), 3)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(rows: list[dict]) -> str:
    head = "| cell | teacher steps | variant | teacher % | student % | student loss | teacher s | heal s |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['teacher_steps']} | {r['variant']} | {100 * r['teacher_accuracy']:.1f} | "
                     f"{100 * r['student_accuracy']:.1f} | {r['student_loss']:.3f} | {r['teacher_seconds']} | "
                     f"{r['heal_seconds']} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["run", "table", "probe"])
    parser.add_argument("--run", type=Path, help="probe: a finished run directory (its artifacts/teacher)")
    parser.add_argument("--examples", type=int, default=24, help="probe: training solutions scored")
    parser.add_argument("--variants", nargs="+", default=["kd20"], choices=list(VARIANTS))
    parser.add_argument("--teacher-steps", type=int, default=30)
    parser.add_argument("--terms", type=int, default=3)
    parser.add_argument("--digits", type=int, default=1)
    parser.add_argument("--train", type=int, default=None, help="training problems (default: the recipe's)")
    parser.add_argument("--test", type=int, default=None, help="test problems (default: the recipe's)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "reasoning-heal")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--quick", action="store_true", help="tiny random llamas: a smoke run")
    add_options(parser, Path("/tmp/protege-reasoning-heal"), "run: variants")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / (ROWS.replace("-runs", "-quick-runs") if args.quick else ROWS)
    if args.phase == "table":
        rows = _rows(path)
        (args.out / path.name.replace("-runs.jsonl", ".json")).write_text(json.dumps({"rows": rows}, indent=2))
        print(table(rows))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    if args.phase == "probe":
        rows = probe(args.run, args.examples, QUICK_CUTS if args.quick else PROBE_CUTS)
        target = args.out / f"reasoning_heal-probe{'-quick' if args.quick else ''}.json"
        target.write_text(json.dumps({"run": str(args.run), "rows": rows}, indent=2))
        return 0
    cell = f"{args.terms}x{args.digits}"
    finished = frozenset(r["variant"] for r in _rows(path)
                         if (r["cell"], r["teacher_steps"]) == (cell, args.teacher_steps))
    for variant in (v for v in args.variants if v in finished):
        print(f"{(cell, args.teacher_steps, variant)} already in {path}, skipped")
    todo = [v for v in dict.fromkeys(args.variants) if v not in finished]
    if args.jobs > 1:
        source = teacher_source(args.runs / f"{cell}-t{args.teacher_steps}", finished)
        return run_children(units(todo, argv, prepared=source is not None and source.name in finished), args)
    counts = {k: v for k, v in (("train", args.train), ("test", args.test)) if v is not None}
    for variant in todo:
        row = run_one(args.runs, args.terms, args.digits, args.teacher_steps, variant, args.quick, counts, finished)
        append_line(path, json.dumps(row))
        print(json.dumps(row), flush=True)
        finished |= {variant}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
