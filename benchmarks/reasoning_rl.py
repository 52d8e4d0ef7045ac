"""GRPO, on-policy KD and KDRL variants at equal steps on chain sums; protege's GRPO step against TRL's.

    python benchmarks/reasoning_rl.py base                              # problems, prepared teacher, healed student
    python benchmarks/reasoning_rl.py arm --arms grpo kdrl_k2 --seeds 0 1 2 --jobs 2 --threads 1  # (arm, seed) runs
    python benchmarks/reasoning_rl.py ingest                            # finished arm runs -> raw results
    python benchmarks/reasoning_rl.py table                             # paired intervals -> reasoning_rl.json
    python benchmarks/reasoning_rl.py parity --seeds 0 1 2 3 4          # estimator gradients vs the exact ones
    python benchmarks/reasoning_rl.py speed --repeats 2 --steps 3       # GRPO step: protege vs TRL GRPOTrainer
    python benchmarks/reasoning_rl.py base --quick && ... arm --quick   # tiny random llamas (the smoke test)

**Route.** ``recipes/reasoning-kdrl.yaml`` (chain sums, 3 terms × 1 digit; SmolLM2-135M-Instruct prepared on the
worked solutions is the teacher, its healed half-depth copy the student). ``base`` runs the stages up to the
student once, and scores teacher and student on the test problems. ``arm`` copies that run directory for every
(arm, seed) (the pipeline's signatures skip the stages already done), runs the ``rl`` stage with that one arm
(``rl.seed``: rollouts and prompt order) and ``evaluate`` (greedy accuracy, pass@1 and pass@4 from 4 samples),
and appends a row to ``results/reasoning_rl-runs.jsonl`` (under a lock); a (arm, seed, steps) already there is
skipped. The (arm, seed) runs go ``--jobs`` (2) at a time, each in its own process at ``--threads`` (1) torch
threads (``benchmarks/processes.py``; logs in ``--logs``), after a ``base`` unit when the base is not made yet;
``--jobs 1`` runs them one after another in this process (the base must exist).
``table`` pairs every arm with GRPO over the same (seed, test problem) items (paired bootstrap) and says "not
distinguishable at this scale" where the 95 % interval contains 0.

**Speed.** The ``speed`` phase (protege's GRPO step against TRL's ``GRPOTrainer``) lives in
``reasoning_rl_speed.py``, whose docstring says what it measures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(HERE))

from processes import Unit, add_options, after_first, append_line, child, run_children  # noqa: E402
from reasoning_rl_speed import speed  # noqa: E402

RECIPE = ROOT / "recipes" / "reasoning-kdrl.yaml"
RUNS = ROOT / "runs" / "reasoning-rl"
RESULTS = HERE / "results"
BETA = 0.1  # the KD coefficient of the KDRL arms (see docs/reasoning.md for why not KDRL's 5e-3 here)

ARMS: dict[str, dict] = {
    "grpo": {"objective": "grpo"},
    "onpolicy_kd": {"objective": "onpolicy_kd", "kd": {"estimator": "exact", "beta": 1.0}},
    "kdrl_k2": {"objective": "kdrl", "kd": {"estimator": "k2", "beta": BETA}},
    "kdrl_k2_linear": {"objective": "kdrl", "kd": {"estimator": "k2", "beta": BETA, "schedule": "linear",
                                                   "beta_min": BETA / 5, "anneal_steps": "STEPS"}},
    "kdrl_switch": {"objective": "kdrl", "kd": {"estimator": "exact", "beta": 1.0, "schedule": "switch",
                                                "switch_step": "HALF"}},
    "kdrl_response": {"objective": "kdrl", "kd": {"estimator": "k2", "beta": BETA, "gate": "response"}},
    "kdrl_exact": {"objective": "kdrl", "kd": {"estimator": "exact", "beta": BETA}},
}


def _arm(name: str, steps: int) -> dict:
    """The rl.arms entry of ``name`` with its step-dependent settings filled in."""
    spec = json.loads(json.dumps(ARMS[name]))
    kd = spec.get("kd", {})
    for key, value in kd.items():
        kd[key] = {"STEPS": steps, "HALF": steps // 2}.get(value, value) if isinstance(value, str) else value
    return {"name": name, **spec}


def _recipe_data(run_dir: Path, quick: bool) -> dict:
    import yaml

    data = yaml.safe_load(RECIPE.read_text())
    data["run_dir"] = str(run_dir)
    if quick:  # tiny random models: every stage for a step or two
        loop = {"steps": 1, "micro_batch_size": 2, "lr": 1e-3, "tracker": None, "log_every": 1}
        data.update(teacher={"backend": "hf", "model": "tiny"}, problems={"train": 8, "dev": 2, "test": 4},
                    prepare_teacher={"loop": loop, "max_length": 128}, student={"loop": loop, "max_length": 128})
        data["rl"].update(rollouts={**data["rl"]["rollouts"], "group_size": 2, "max_new_tokens": 6},
                          loop={**loop, "eval_every": 1}, heldout=2)
        data["evaluate"] = {"max_new_tokens": 6}
    return data


def _quick_teacher() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import build_llama, build_tokenizer

    from protege.models.hf import HFTeacher

    tokenizer = build_tokenizer(("Compute 1 + 2 + 3. <answer>6</answer> 1 + 2 = 3",))
    return HFTeacher(build_llama(len(tokenizer), layers=4, seed=3), tokenizer, model_id="tiny-teacher")


def _run(data: dict, quick: bool) -> Any:
    from protege.pipeline.recipe import parse_recipe
    from protege.pipeline.runner import run_recipe

    return run_recipe(parse_recipe(data, str(RECIPE), RECIPE.parent), teacher=_quick_teacher() if quick else None)


def base(runs: Path, quick: bool) -> dict:
    data = _recipe_data(runs / "base", quick)
    data.pop("rl")
    began = time.perf_counter()
    run = _run(data, quick)
    metrics = run.read_json("reasoning_metrics.json")
    out = {"seconds": round(time.perf_counter() - began, 1), "test_problems": metrics["test_problems"],
           **{f"{m}_accuracy": v["accuracy"] for m, v in metrics["models"].items()},
           "student": metrics.get("student"), "teacher": metrics.get("teacher")}
    (runs / "base.json").write_text(json.dumps(out, indent=2))
    return out


def arm(runs: Path, name: str, seed: int, steps: int, quick: bool) -> dict:
    """Train and evaluate one (arm, seed) in its own copy of the base run; its raw result row."""
    folder = runs / f"{name}-s{seed}-n{steps}"
    if not folder.exists():
        shutil.copytree(runs / "base", folder)
    data = _recipe_data(folder, quick)
    data["rl"].update(arms=[_arm(name, steps)], seed=seed)
    data["rl"]["loop"] = {**data["rl"]["loop"], "steps": steps}
    data["evaluate"] = {**data["evaluate"], "teacher": False, "samples": 4}
    began = time.perf_counter()
    _run(data, quick)
    row = ingest_run(folder, name)
    row["wall_seconds"] = round(time.perf_counter() - began, 1)
    return row


def ingest_run(folder: Path, name: str) -> dict:
    """One finished arm run as a raw result row: accuracy, per-problem verdicts, budgets, curves."""
    from protege.core.run import Run

    run = Run.open_existing(folder)
    metrics = run.read_json("reasoning_metrics.json")
    rl = run.read_json("rl.json")[name]
    model = metrics["models"][f"rl-{name}"]
    results = run.records.read("test_results")
    mine = results[results["model"] == f"rl-{name}"].sort_values("problem_id")
    steps = [json.loads(line) for line in (folder / "artifacts" / "metrics" / f"rl-{name}.jsonl").read_text().splitlines()]
    return {"arm": name, "seed": rl["seed"], "steps": rl["steps"], "objective": rl["objective"], "kd": rl["kd"],
            "accuracy": model["accuracy"], "pass@1": model.get("pass@1"), "pass@4": model.get("pass@4"),
            "student_accuracy": metrics["models"]["student"]["accuracy"],
            "tokens_per_answer": model["generated_tokens"] / model["responses"],
            "problem_ids": mine["problem_id"].tolist(), "correct": [bool(c) for c in mine["correct"]],
            "generated_tokens": rl["generated_tokens"], "teacher_tokens": rl["teacher_tokens"],
            "seconds": rl["seconds"], "heldout_kl": [e["heldout_kl"] for e in rl["evaluations"]],
            "heldout_reward": [e.get("heldout_reward") for e in rl["evaluations"]],
            "reward": [s["reward"] for s in steps], "zero_variance": [s["zero_variance"] for s in steps],
            "gate_open": [s.get("gate_open") for s in steps], "response_length": [s["response_length"] for s in steps]}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def table(rows: list[dict], base_info: dict) -> dict:
    """Per arm: accuracy over seeds, the paired difference with GRPO over the same (seed, problem) items."""
    from protege.evaluate.intervals import paired_bootstrap

    by_arm: dict[str, dict[int, dict]] = {}
    for r in rows:
        by_arm.setdefault(r["arm"], {})[r["seed"]] = r
    out = []
    reference = by_arm.get("grpo", {})
    for name, seeds in by_arm.items():
        rs = [seeds[s] for s in sorted(seeds)]
        entry = {"arm": name, "seeds": sorted(seeds), "steps": rs[0]["steps"],
                 "accuracy": statistics.mean(r["accuracy"] for r in rs),
                 "accuracy_per_seed": [r["accuracy"] for r in rs],
                 "pass@4": statistics.mean(r["pass@4"] for r in rs if r["pass@4"] is not None),
                 "tokens_per_answer": statistics.mean(r["tokens_per_answer"] for r in rs),
                 "heldout_kl": statistics.mean(r["heldout_kl"][-1] for r in rs if r["heldout_kl"]),
                 "generated_tokens": statistics.mean(r["generated_tokens"] for r in rs),
                 "teacher_tokens": statistics.mean(r["teacher_tokens"] for r in rs),
                 "seconds": statistics.mean(r["seconds"] for r in rs),
                 "final_reward": statistics.mean(statistics.mean(r["reward"][-5:]) for r in rs)}
        shared = [s for s in sorted(seeds) if s in reference]
        if name != "grpo" and shared:
            a = [c for s in shared for c in seeds[s]["correct"]]
            b = [c for s in shared for c in reference[s]["correct"]]
            d = paired_bootstrap([float(x) for x in a], [float(x) for x in b], seed=0)
            entry["vs_grpo"] = {"difference": d.estimate, "low": d.low, "high": d.high, "items": d.items,
                                "seeds": shared, "verdict": "not distinguishable at this scale" if d.inside_noise
                                else ("better" if d.estimate > 0 else "worse")}
        out.append(entry)
    return {"base": base_info, "arms": out}


def markdown(result: dict) -> str:
    lines = ["| arm | seeds | greedy accuracy | pass@4 | vs GRPO (95 % interval) | tokens / answer | held-out KL | "
             "generated tokens | teacher tokens | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for a in result["arms"]:
        vs = a.get("vs_grpo")
        diff = f"{vs['difference']:+.1%} [{vs['low']:+.1%}, {vs['high']:+.1%}] {vs['verdict']}" if vs else "–"
        lines.append(f"| {a['arm']} | {len(a['seeds'])} | {a['accuracy']:.1%} | {a['pass@4']:.1%} | {diff} | "
                     f"{a['tokens_per_answer']:.1f} | {a['heldout_kl']:.3f} | {a['generated_tokens']:,.0f} | "
                     f"{a['teacher_tokens']:,.0f} | {a['seconds']:.0f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- parity


def parity(seeds: list[int]) -> list[dict]:
    """The gradient-parity table of ``tests/losses/test_kdrl.py`` over several seeds: per estimator, the cosine of
    its Monte-Carlo gradient (20,000 on-policy draws of an 8-word categorical student) with the exact reverse- and
    forward-KL gradients; ``k1`` as a loss (refused by protege) is computed by hand for comparison."""
    import torch

    sys.path.insert(0, str(ROOT / "tests" / "losses"))
    from test_kdrl import _cos, _exact_gradients, _mc_gradient, _setup

    def k1_loss(seed: int) -> tuple[Any, Any, Any]:
        theta, teacher, draws = _setup(seed)
        t = theta.clone().requires_grad_()
        (grad,) = torch.autograd.grad((t.log_softmax(-1)[draws] - teacher.log_softmax(-1)[draws]).mean(), t)
        return (grad, *_exact_gradients(theta, teacher))

    rows = []
    for name in ("k1 (as a loss)", "k1_reward", "k2", "k3", "exact"):
        found = [k1_loss(s) if name.startswith("k1 ") else _mc_gradient(name, s) for s in seeds]
        rows.append({"estimator": name, "seeds": len(seeds),
                     "cos_reverse": [round(_cos(g, r), 4) for g, r, _ in found],
                     "cos_forward": [round(_cos(g, f), 4) for g, _, f in found],
                     "norm_ratio_to_reverse": [round(float(g.norm() / r.norm()), 4) for g, r, _ in found]})
    return rows


def arm_phase(args: argparse.Namespace, argv: list[str], runs: Path, raw: Path) -> int:
    """Every (arm, seed) not in ``raw`` yet: in this process with ``--jobs 1``, else one child each, the
    children waiting for a ``base`` unit when the base they copy is not made yet."""
    done, todo = {(r["arm"], r["seed"], r["steps"]) for r in _rows(raw)}, []
    for seed in args.seeds:
        for name in args.arms:
            if (name, seed, args.steps) in done:
                print(f"{name} seed {seed}: already in {raw.name}", file=sys.stderr)
            else:
                todo.append((name, seed))
    if args.jobs > 1:
        units = [Unit(f"{name}-s{seed}", child(__file__, argv, "--arms", name, "--seeds", str(seed)))
                 for name, seed in todo]
        if units and not (runs / "base.json").exists():
            made = Unit("base", (__file__, "base", "--runs", str(runs), "--out", str(raw.parent), "--threads",
                                 str(args.threads), *(["--quick"] if args.quick else [])))
            units = after_first([made, *units], lambda unit: "base")
        return run_children(units, args)
    for name, seed in todo:
        row = arm(runs, name, seed, args.steps, args.quick)
        append_line(raw, json.dumps(row))
        print(f"{name} seed {seed}: accuracy {row['accuracy']:.1%}, {row['seconds']} s", file=sys.stderr, flush=True)
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("phase", choices=["base", "arm", "ingest", "table", "parity", "speed"])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=20, help="arm: RL steps; speed: measured steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="speed: runs of each variant, interleaved")
    parser.add_argument("--runs", type=Path, default=None, help="run directories (default runs/reasoning-rl)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--quick", action="store_true", help="tiny random llamas: a smoke run")
    add_options(parser, Path("/tmp/protege-reasoning-rl"), "arm: (arm, seed) pairs")  # speed: --threads per child
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    runs = args.runs or (RUNS.with_name("reasoning-rl-quick") if args.quick else RUNS)
    results = args.out or RESULTS
    runs.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    raw = results / ("reasoning_rl-quick-runs.jsonl" if args.quick else "reasoning_rl-runs.jsonl")
    if args.phase == "base":
        print(json.dumps(base(runs, args.quick)))
    elif args.phase == "arm":
        return arm_phase(args, argv, runs, raw)
    elif args.phase == "ingest":
        done = {(r["arm"], r["seed"], r["steps"]) for r in _rows(raw)}
        for folder in sorted(p for p in runs.iterdir() if p.is_dir() and p.name != "base"):
            name = folder.name.rsplit("-s", 1)[0]
            if not (folder / "artifacts" / "reasoning_metrics.json").exists() or name not in ARMS:
                continue
            row = ingest_run(folder, name)
            if (row["arm"], row["seed"], row["steps"]) not in done:
                append_line(raw, json.dumps(row))
    elif args.phase == "parity":
        rows = parity(args.seeds)
        (results / "reasoning_rl-parity.json").write_text(json.dumps(rows, indent=2))
        print(json.dumps(rows, indent=2))
    elif args.phase == "table":
        base_info = json.loads((runs / "base.json").read_text()) if (runs / "base.json").exists() else {}
        result = table(_rows(raw), base_info)
        (results / ("reasoning_rl-quick.json" if args.quick else "reasoning_rl.json")).write_text(
            json.dumps(result, indent=2))
        print(markdown(result))
    else:
        speed(runs, results, steps=args.steps, repeats=args.repeats, threads=args.threads, quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
