"""The ``speed`` phase of ``reasoning_rl.py``: protege's GRPO step against TRL's ``GRPOTrainer``.

    python benchmarks/reasoning_rl.py speed --repeats 2 --steps 3       # GRPO step: protege vs TRL GRPOTrainer
    python benchmarks/reasoning_rl.py speed --quick --steps 1 --repeats 1  # on the quick base (the smoke test)

It times the student that ``reasoning_rl.py base`` made (``<runs>/base``). In fresh child processes, interleaved
over the repeats: protege's GRPO step (``GRPOSource`` + ``PolicyObjective`` on the one loop, rollouts from a bf16
copy, and from the fp32 weights) and TRL's ``GRPOTrainer``, on the same student, prompts, G, maximum new tokens,
temperature and learning rate, without a reference model (β = 0) and with token-level loss normalisation on both
sides. Step time is the gap between starts of consecutive optimizer steps (the first is not counted); peak memory
is the process's ``ru_maxrss``; generated tokens and decode steps per optimizer step stand beside every time.
Each child re-runs this file on one variant (``--variant``, ``--setup``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

from lm_kd import (CountedSource, StepClock, _Timed, _trl_clock_callback, count_generate,  # noqa: E402
                   load_average, peak_mb, rss_mb)


def _speed_inputs(setup: dict) -> tuple[Any, Any, list[str], list[str]]:
    """(student, tokenizer, prompts, gold answers): the healed student and the first training problems."""
    import torch

    from protege.core.run import Run
    from protege.models.zoo import load_causal_lm
    from protege.tasks.reasoning.task import ReasoningTask, prompt

    run = Run.open_existing(setup["base"])
    frame = run.records.read("problems")
    train = frame[frame["split"] == "train"].head(setup["prompts"] * setup["total_steps"])
    task = ReasoningTask(knobs={"terms": 3, "digits": 1})
    student, tok = load_causal_lm(str(Path(setup["base"]) / "artifacts" / "student"), dtype=torch.float32)
    student.train().requires_grad_(True)
    return student, tok, [prompt(task, q) for q in train["question"]], list(train["answer"])


def _reward(text: str, gold: str) -> float:
    from protege.tasks.reasoning.rl import verdict
    from protege.tasks.reasoning.task import ReasoningTask

    return verdict(ReasoningTask(), text, gold)


def protege_grpo(setup: dict, clock: StepClock, rollout_dtype: Optional[str]) -> dict:
    from protege.train.grpo import GRPOConfig, GRPOSource, PolicyConfig, PolicyObjective
    from protege.train.lm_data import encode_prompt
    from protege.train.loop import LoopConfig, train

    student, tok, prompts, golds = _speed_inputs(setup)
    loaded = rss_mb()
    config = GRPOConfig(group_size=setup["G"], max_new_tokens=setup["new_tokens"], temperature=1.0,
                        generation_dtype=rollout_dtype)
    source = GRPOSource([encode_prompt(tok, p) for p in prompts], student,
                        lambda i, text: _reward(text, golds[i]), config,
                        decode=lambda ids: tok.decode(ids, skip_special_tokens=True), eos_id=tok.eos_token_id,
                        pad_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    counted = CountedSource(source)
    loop = LoopConfig(steps=setup["total_steps"], micro_batch_size=setup["prompts"], lr=setup["lr"],
                      schedule="constant", tracker=None, log_every=10**6, resume=False, max_grad_norm=1.0)
    train(student, _Timed(PolicyObjective(PolicyConfig(units="token_mean")), clock), counted, loop)
    return {"rss_after_load_mb": loaded, **counted.counts()}


def trl_grpo(setup: dict, clock: StepClock) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    import tempfile

    student, tok, prompts, golds = _speed_inputs(setup)
    loaded = rss_mb()
    counts = count_generate(student, tok.eos_token_id)

    def reward(completions: list, answer: list, **kwargs: Any) -> list[float]:
        return [_reward(c[0]["content"] if isinstance(c, list) else c, a) for c, a in zip(completions, answer)]

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in prompts], "answer": golds})
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(output_dir=out, per_device_train_batch_size=setup["prompts"] * setup["G"],
                          num_generations=setup["G"], max_completion_length=setup["new_tokens"], temperature=1.0,
                          top_p=1.0, top_k=0, beta=0.0, loss_type="dapo", scale_rewards="group",
                          gradient_accumulation_steps=1, max_steps=setup["total_steps"], learning_rate=setup["lr"],
                          lr_scheduler_type="constant", use_cpu=True, report_to="none", save_strategy="no",
                          logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0, max_grad_norm=1.0,
                          bf16=False, seed=0, shuffle_dataset=False)
        trainer = GRPOTrainer(model=student, reward_funcs=[reward], args=args, train_dataset=dataset,
                              processing_class=tok, callbacks=[_trl_clock_callback(clock)])
        trainer.train()
    return {"rss_after_load_mb": loaded, **counts}


SPEED = {"protege_grpo": lambda s, c: protege_grpo(s, c, "bfloat16"),
         "protege_grpo_fp32_rollouts": lambda s, c: protege_grpo(s, c, None),
         "trl_grpo": trl_grpo}


def speed_child(variant: str, setup: dict) -> dict:
    import torch

    torch.set_num_threads(setup["threads"])
    torch.manual_seed(0)
    clock = StepClock()
    counts = SPEED[variant](setup, clock)
    return {"variant": variant, "step_s": clock.measured(), "peak_rss_mb": round(peak_mb(), 1),
            "steps_run": setup["total_steps"], **counts}


def speed_spawn(variant: str, setup: dict) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--setup", json.dumps(setup)]
    env = {**os.environ, "OMP_NUM_THREADS": str(setup["threads"]), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"variant": variant, "error": (proc.stderr or proc.stdout)[-3000:]}
    return json.loads(lines[-1])


def speed_table(runs: list[dict]) -> list[dict]:
    from lm_kd import summarise

    return summarise(runs, {"protege_grpo": "trl_grpo", "protege_grpo_fp32_rollouts": "trl_grpo"})


def speed(runs: Path, results: Path, *, steps: int, repeats: int, threads: int, quick: bool) -> dict:
    """Every variant ``repeats`` times, interleaved, each in a fresh child; the report, also written to
    ``results``. ``steps`` measured optimizer steps per run (two more run: the first is not counted)."""
    setup = {"base": str(runs / "base"), "prompts": 4, "G": 4, "new_tokens": 6 if quick else 40,
             "lr": 1e-5, "threads": threads, "total_steps": steps + 2}
    began, load_before, measured = time.time(), load_average(), []
    for repeat in range(repeats):
        for variant in SPEED:
            result = speed_spawn(variant, setup)
            result.update(repeat=repeat, load_average=load_average())
            measured.append(result)
            print(f"[{repeat + 1}/{repeats}] {variant}: "
                  f"{result.get('error', '').strip().splitlines()[-1:] or statistics.median(result['step_s'])}",
                  file=sys.stderr, flush=True)
    report = {"setup": setup, "load_average_before": load_before, "load_average_after": load_average(),
              "seconds": round(time.time() - began, 1), "table": speed_table(measured), "runs": measured}
    (results / ("reasoning_rl-speed-quick.json" if quick else "reasoning_rl-speed.json")).write_text(
        json.dumps(report, indent=2))
    print(json.dumps(report["table"], indent=2))
    return report


def main(argv: Optional[list[str]] = None) -> int:
    """The child of :func:`speed`: one variant's run, its result as the last line of stdout."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, choices=list(SPEED))
    parser.add_argument("--setup", required=True, help="the setup :func:`speed` made, as JSON")
    args = parser.parse_args(argv)
    print(json.dumps(speed_child(args.variant, json.loads(args.setup))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
