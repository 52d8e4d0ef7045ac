"""Step time and peak memory of protege's LM distillation against TRL's trainers, side by side in one run.

    python benchmarks/lm_kd.py            # SmolLM2-135M-Instruct -> smollm2-135m-half, batch 4 x 256, fp32
    python benchmarks/lm_kd.py --quick    # tiny random llamas, seconds (the smoke test runs this)

Every variant runs in a fresh child process (``--variant NAME``), so its peak memory is its own ``ru_maxrss``;
variants are interleaved over the repeats, so machine load drifts over all of them alike. A step's time is the
time between the starts of consecutive optimizer steps (the first step, which warms up, is not counted); the
table gives the median over all measured steps of all repeats and the ratio to the TRL trainer it is compared
with. Off-policy: protege online logit KD (teacher forward in bf16, and in fp32) and protege from the
teacher-logit cache vs TRL ``GKDTrainer`` (beta 0.5, lmbda 0: off-policy generalized JSD). On-policy: protege vs
TRL ``DistillationTrainer`` (always on-policy), both sampling ``--new-tokens`` tokens at temperature 1. Also: the
cache's bytes per token at k = 16, 32, 64 and the error of the top-k + tail forward KL against full logits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
GSM8K = HERE.parent.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
BETA = 0.5  # generalized JSD, the GKD paper's and GKDTrainer's default
LR = 1e-5
CACHE_K = 32


@dataclass(frozen=True)
class Setup:
    """What every variant shares: models, data shape, steps."""

    quick: bool
    batch: int
    length: int
    new_tokens: int
    steps: int  # measured steps per run; one warm-up step more is run and not counted
    threads: int
    work: str  # folder holding the prepared data and the cache

    @property
    def total_steps(self) -> int:
        # +1 warm-up, +1 because a step's time is measured from its start to the next step's start.
        return self.steps + 2


# ---------------------------------------------------------------------------------------------- models and data


def _tiny_tokenizer() -> Any:
    """A word-level tokenizer with ChatML markers, built in memory (no download)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(200)]
    specials = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "\n"]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(specials + words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="<|im_end|>", bos_token="<|im_start|>")
    fast.chat_template = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {{ m['content'] }} <|im_end|> "
                          "{% endfor %}{% if add_generation_prompt %}<|im_start|> assistant {% endif %}")
    return fast


def _tiny_llama(vocab: int, layers: int, seed: int, dtype: Any) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return LlamaForCausalLM(config).to(dtype)


def load_models(setup: Setup, teacher_dtype: Optional[str] = "float32") -> tuple[Any, Any, Any]:
    """(teacher, student, tokenizer); the student is fp32 and trainable, the teacher frozen in ``teacher_dtype``.

    ``teacher_dtype=None`` loads no teacher (None in its place): the cached variant's point is never loading it.
    """
    import torch

    if setup.quick:
        tok = _tiny_tokenizer()
        student = _tiny_llama(len(tok), 2, 2, torch.float32)
        teacher = _tiny_llama(len(tok), 4, 1, getattr(torch, teacher_dtype)) if teacher_dtype else None
    else:
        from protege.models.zoo import load_causal_lm

        student, tok = load_causal_lm("smollm2-135m-half", dtype=torch.float32)
        teacher = load_causal_lm("smollm2-135m-instruct", dtype=getattr(torch, teacher_dtype))[0] \
            if teacher_dtype else None
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    return teacher, student.train(), tok


def _texts(setup: Setup, n: int) -> list[tuple[str, str]]:
    """(question, answer) pairs: GSM8K when present, else random words."""
    import random

    if not setup.quick and GSM8K.exists():
        rows = [json.loads(line) for line in GSM8K.read_text().splitlines()[: n * 4]]
        return [(r["question"], r["answer"]) for r in rows]
    rng = random.Random(0)
    words = lambda k: " ".join(f"w{rng.randrange(200)}" for _ in range(k))  # noqa: E731
    return [(words(rng.randint(8, 20)), words(setup.length)) for _ in range(n * 4)]


def prepare_data(setup: Setup, tok: Any, n: int) -> dict:
    """``n`` sequences of exactly ``setup.length`` tokens: a question, then worked answers until the length is full.

    Fixed-length sequences make every step do the same work, on both sides.
    """
    from protege.train.lm_data import encode_pair

    pairs = _texts(setup, n)
    sequences, prompt_lens, prompts = [], [], []
    for i in range(n):
        question = pairs[i][0]
        answers = "\n\n".join(a for _, a in pairs[i : i + 8])
        seq, n_prompt = encode_pair(tok, question, answers, setup.length)
        if len(seq) < setup.length or n_prompt >= setup.length // 2:
            continue
        sequences.append(seq)
        prompt_lens.append(n_prompt)
        prompts.append(question)
    return {"sequences": sequences, "prompt_lens": prompt_lens, "prompts": prompts}


# ---------------------------------------------------------------------------------------------- measuring


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class StepClock:
    """Timestamps of the starts of optimizer steps; a step's time is the gap to the next start."""

    def __init__(self) -> None:
        self.starts: list[float] = []

    def tick(self) -> None:
        self.starts.append(time.perf_counter())

    def measured(self) -> list[float]:
        gaps = [b - a for a, b in zip(self.starts, self.starts[1:])]
        return gaps[1:]  # the first step warms up (allocations, kernels)


class _Timed:
    """An objective that ticks a clock each time the loop calls it (once per step with grad_accum=1)."""

    def __init__(self, objective: Any, clock: StepClock):
        self.objective, self.clock = objective, clock

    def units(self, batch: Any) -> int:
        return self.objective.units(batch)

    def __call__(self, model: Any, batch: Any) -> Any:
        self.clock.tick()
        return self.objective(model, batch)


class CountedSource:
    """A batch source counting the response tokens of its batches (EOS included) and the decode steps they took
    (the longest response of each batch: a batch decodes until its last row stops)."""

    def __init__(self, source: Any):
        self.source, self.tokens, self.decode_steps = source, 0, 0

    def __len__(self) -> int:
        return len(self.source)

    def batch(self, indices: Any) -> Any:
        out = self.source.batch(indices)
        lengths = out["loss_mask"].sum(1)
        self.tokens += int(lengths.sum())
        self.decode_steps += int(lengths.max())
        return out

    def counts(self) -> dict:
        return {"generated_tokens": self.tokens, "decode_steps": self.decode_steps}


def count_generate(model: Any, eos_id: int) -> dict:
    """Wrap ``model.generate`` (a peer trainer's rollouts) to count the same as :class:`CountedSource`: tokens up to
    and including each row's first EOS (all new tokens without one), and the width of each generated block."""
    counts = {"generated_tokens": 0, "decode_steps": 0}
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        prompt = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        new = getattr(out, "sequences", out)[:, prompt.shape[1]:]
        counts["decode_steps"] += new.shape[1]
        counts["generated_tokens"] += sum(row.index(eos_id) + 1 if eos_id in row else len(row) for row in new.tolist())
        return out

    model.generate = generate
    return counts


def _loop_config(setup: Setup) -> Any:
    from protege.train.loop import LoopConfig

    return LoopConfig(steps=setup.total_steps, micro_batch_size=setup.batch, lr=LR, schedule="constant",
                      tracker=None, log_every=10**6, resume=False, max_grad_norm=1.0)


def _examples(data: dict, pad_id: int) -> Any:
    from protege.train.lm_data import LMExamples

    return LMExamples(data["sequences"], data["prompt_lens"], pad_id)


# ---------------------------------------------------------------------------------------------- variants


def protege_online(setup: Setup, data: dict, clock: StepClock, teacher_dtype: str) -> dict:
    from protege.train.lm_objectives import DistillConfig, LogitKD
    from protege.train.loop import train

    teacher, student, tok = load_models(setup, teacher_dtype)
    loaded = rss_mb()
    objective = LogitKD(teacher, DistillConfig(kind="jsd", beta=BETA))
    train(student, _Timed(objective, clock), _examples(data, tok.pad_token_id), _loop_config(setup))
    return {"rss_after_load_mb": loaded}


def protege_cached(setup: Setup, data: dict, clock: StepClock) -> dict:
    from protege.train.cached_source import CachedTeacherSource
    from protege.train.lm_objectives import CachedKD, DistillConfig
    from protege.train.loop import train

    _, student, tok = load_models(setup, teacher_dtype=None)
    loaded = rss_mb()
    source = CachedTeacherSource.open(Path(setup.work) / "cache", tok, student.get_output_embeddings().weight.shape[0],
                                      temperature=1.0)
    train(student, _Timed(CachedKD(DistillConfig(kind="jsd", beta=BETA)), clock), source, _loop_config(setup))
    return {"rss_after_load_mb": loaded}


def protege_on_policy(setup: Setup, data: dict, clock: StepClock, rollout_dtype: Optional[str] = "bfloat16") -> dict:
    from protege.train.lm_objectives import DistillConfig, LogitKD
    from protege.train.loop import train
    from protege.train.rollouts import OnPolicyConfig, OnPolicySource

    teacher, student, tok = load_models(setup, "bfloat16")
    loaded = rss_mb()
    rollouts = OnPolicyConfig(fraction=1.0, temperature=1.0, max_new_tokens=setup.new_tokens,
                              generation_dtype=rollout_dtype)
    source = CountedSource(OnPolicySource(_examples(data, tok.pad_token_id), student, rollouts,
                                          eos_id=tok.eos_token_id))
    train(student, _Timed(LogitKD(teacher, DistillConfig(kind="jsd", beta=BETA)), clock), source,
          _loop_config(setup))
    return {"rss_after_load_mb": loaded, **source.counts()}


def _trl_clock_callback(clock: StepClock) -> Any:
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            clock.tick()

    return Clock()


def _trl_common(setup: Setup, out: str) -> dict:
    return dict(output_dir=out, per_device_train_batch_size=setup.batch, gradient_accumulation_steps=1,
                max_steps=setup.total_steps, learning_rate=LR, lr_scheduler_type="constant", use_cpu=True,
                report_to="none", save_strategy="no", logging_steps=10**6, disable_tqdm=True,
                dataloader_num_workers=0, max_grad_norm=1.0, bf16=False, seed=0)


def trl_gkd(setup: Setup, data: dict, clock: StepClock) -> dict:
    import torch
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    teacher, student, tok = load_models(setup)
    loaded = rss_mb()

    def collate(rows: list[dict]) -> dict:
        # The same pre-tokenised, fixed-length sequences as protege's side; labels -100 on prompt tokens.
        ids = torch.tensor([r["input_ids"] for r in rows])
        labels = ids.clone()
        for row, r in enumerate(rows):
            labels[row, : r["prompt_len"]] = -100
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    dataset = Dataset.from_dict({"input_ids": data["sequences"], "prompt_len": data["prompt_lens"]})
    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(**_trl_common(setup, out), beta=BETA, lmbda=0.0, seq_kd=False, temperature=1.0,
                         max_length=setup.length)
        trainer = GKDTrainer(model=student, teacher_model=teacher, args=args, train_dataset=dataset,
                             processing_class=tok, data_collator=collate, callbacks=[_trl_clock_callback(clock)])
        trainer.train()
    return {"rss_after_load_mb": loaded}


def trl_distillation(setup: Setup, data: dict, clock: StepClock) -> dict:
    from datasets import Dataset
    from trl import DistillationConfig, DistillationTrainer

    teacher, student, tok = load_models(setup)
    loaded = rss_mb()
    counts = count_generate(student, tok.eos_token_id)
    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in data["prompts"]]})
    with tempfile.TemporaryDirectory() as out:
        args = DistillationConfig(**_trl_common(setup, out), beta=BETA, temperature=1.0, top_k=0, top_p=1.0,
                                  max_completion_length=setup.new_tokens)
        trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args, train_dataset=dataset,
                                      processing_class=tok, callbacks=[_trl_clock_callback(clock)])
        trainer.train()
    return {"rss_after_load_mb": loaded, **counts}


VARIANTS: dict[str, Callable[..., dict]] = {
    "trl_gkd": trl_gkd,
    "protege_online_bf16_teacher": lambda s, d, c: protege_online(s, d, c, "bfloat16"),
    "protege_online_fp32_teacher": lambda s, d, c: protege_online(s, d, c, "float32"),
    "protege_cached": protege_cached,
    "trl_distillation_on_policy": trl_distillation,
    "protege_on_policy": protege_on_policy,
    "protege_on_policy_fp32_rollouts": lambda s, d, c: protege_on_policy(s, d, c, None),
}
BASELINE = {
    "protege_online_bf16_teacher": "trl_gkd", "protege_online_fp32_teacher": "trl_gkd", "protege_cached": "trl_gkd",
    "protege_on_policy": "trl_distillation_on_policy", "protege_on_policy_fp32_rollouts": "trl_distillation_on_policy",
}


# ---------------------------------------------------------------------------------------------- preparation


def prepare(setup: Setup, n: int) -> dict:
    """Data for every variant, the cache for ``protege_cached`` (timed), and the cache-quality table."""
    import torch

    from protege.data.logit_cache import CacheStamp, LogitCache, LogitCacheWriter
    from protege.tasks.lm.cache_logits import response_topk

    teacher, student, tok = load_models(setup)
    data = prepare_data(setup, tok, n)
    Path(setup.work, "data.json").write_text(json.dumps(data))
    pairs = list(zip(data["sequences"], data["prompt_lens"]))
    vocab = teacher.get_output_embeddings().weight.shape[0]
    began = time.perf_counter()
    stamp = CacheStamp.make("benchmark-teacher", tok, vocab_size=vocab, temperature=1.0, k=CACHE_K)
    with LogitCacheWriter(Path(setup.work) / "cache", stamp) as writer:
        for start in range(0, len(pairs), setup.batch):
            batch = pairs[start : start + setup.batch]
            tops = response_topk(teacher, batch, k=CACHE_K, temperature=1.0, pad_token_id=tok.pad_token_id)
            for i, ((seq, p), top) in enumerate(zip(batch, tops)):
                writer.add(str(start + i), seq, p, top)
    seconds = time.perf_counter() - began
    cache = LogitCache(Path(setup.work) / "cache")
    build = {"k": CACHE_K, "sequences": len(cache), "response_tokens": cache.num_response_tokens,
             "seconds": round(seconds, 2), "tokens_per_second": round(cache.num_response_tokens / seconds, 1),
             "bytes_per_token": round(cache.bytes_per_token(), 1)}
    with torch.no_grad():
        quality = cache_quality(setup, teacher, student, tok, pairs[: 2 * setup.batch])
    return {"sequences": len(data["sequences"]), "cache_build": build, "cache_quality": quality}


def cache_quality(setup: Setup, teacher: Any, student: Any, tok: Any, pairs: list) -> list[dict]:
    """Per k: bytes/token of a real cache, and forward KL(teacher‖student) from the cached top-k + tail form vs
    from full logits, mean per response token (the student is the untrained one: a realistic starting gap)."""
    import torch

    from protege.data.logit_cache import CacheStamp, LogitCache, LogitCacheWriter
    from protege.losses.teachers import TopKTeacher, row_divergence
    from protege.losses.divergences import DivergenceSpec

    spec = DivergenceSpec(kind="forward_kl")
    rows_t, rows_s = [], []
    for start in range(0, len(pairs), setup.batch):
        batch = pairs[start : start + setup.batch]
        ids = torch.tensor([seq for seq, _ in batch])
        t_logits, s_logits = teacher(input_ids=ids).logits.float(), student(input_ids=ids).logits.float()
        for row, (seq, p) in enumerate(batch):
            rows_t.append(t_logits[row, p - 1 : len(seq) - 1])
            rows_s.append(s_logits[row, p - 1 : len(seq) - 1])
    teacher_logits, student_logits = torch.cat(rows_t).double(), torch.cat(rows_s).double()
    full = row_divergence(student_logits, teacher_logits, spec)
    out = []
    vocab = teacher_logits.shape[-1]
    for k in (16, 32, 64):
        with tempfile.TemporaryDirectory() as folder:
            stamp = CacheStamp.make("benchmark-teacher", tok, vocab_size=vocab, temperature=1.0, k=k)
            with LogitCacheWriter(folder, stamp) as writer:
                offset = 0
                for i, (seq, p) in enumerate(pairs):
                    n = len(seq) - p
                    writer.add_logits(str(i), seq, p, teacher_logits[offset : offset + n])
                    offset += n
            cache = LogitCache(folder)
            stored = [cache.sequence(i).teacher for i in range(len(cache))]
            cached = TopKTeacher(torch.cat([s.ids for s in stored]), torch.cat([s.logprobs for s in stored]).double(),
                                 torch.cat([s.tail_logprob for s in stored]).double())
            bucketed = row_divergence(student_logits, cached, spec)
            renormalised = row_divergence(
                student_logits, TopKTeacher(cached.ids, cached.logprobs - cached.logprobs.logsumexp(-1, keepdim=True),
                                            torch.full_like(cached.tail_logprob, float("-inf"))), spec)
            out.append({
                "k": k, "bytes_per_token": round(cache.bytes_per_token(), 1),
                "teacher_mass_in_top_k": round(float(cached.logprobs.exp().sum(-1).mean()), 4),
                "kl_full": round(float(full.mean()), 4), "kl_top_k_tail": round(float(bucketed.mean()), 4),
                "kl_abs_error": round(float((full - bucketed).abs().mean()), 4),
                "kl_rel_error": round(float((full - bucketed).abs().mean() / full.mean()), 4),
                "kl_top_k_renormalised_rel_error": round(float((full - renormalised).abs().mean() / full.mean()), 4),
            })
    return out


# ---------------------------------------------------------------------------------------------- driver


def child(variant: str, setup: Setup) -> dict:
    import torch

    torch.set_num_threads(setup.threads)
    torch.manual_seed(0)
    if variant == "prepare":
        return prepare(setup, n=setup.batch * setup.total_steps)
    data = json.loads(Path(setup.work, "data.json").read_text())
    clock = StepClock()
    extra = VARIANTS[variant](setup, data, clock)
    steps = clock.measured()
    return {"variant": variant, "step_s": steps, "peak_rss_mb": round(peak_mb(), 1), "steps_run": setup.total_steps,
            **extra}


def spawn(variant: str, setup: Setup) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--setup", json.dumps(setup.__dict__)]
    env = {**os.environ, "OMP_NUM_THREADS": str(setup.threads), "TOKENIZERS_PARALLELISM": "false",
           "TRL_EXPERIMENTAL_SILENCE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"variant": variant, "error": (proc.stderr or proc.stdout)[-3000:]}
    return json.loads(lines[-1])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def summarise(runs: list[dict], baseline: Optional[dict[str, str]] = None) -> list[dict]:
    """Per variant: median step time, its range, peak memory, rollout work per step, and ratios to the variant
    ``baseline`` (default :data:`BASELINE`) names."""
    baseline = BASELINE if baseline is None else baseline
    table = []
    by_variant: dict[str, list[dict]] = {}
    for run in runs:
        by_variant.setdefault(run["variant"], []).append(run)
    for name, results in by_variant.items():
        ok = [r for r in results if "error" not in r]
        if not ok:
            table.append({"variant": name, "error": results[-1]["error"].strip().splitlines()[-1]})
            continue
        steps = [s for r in ok for s in r["step_s"]]
        table.append({"variant": name, "runs": len(ok), "steps": len(steps),
                      "step_s_median": round(statistics.median(steps), 3),
                      "step_s_min": round(min(steps), 3), "step_s_max": round(max(steps), 3),
                      "peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in ok), 1),
                      "rss_after_load_mb": round(statistics.median(r["rss_after_load_mb"] for r in ok), 1)})
        if all("generated_tokens" in r for r in ok):  # rollouts: the work a step did, beside its time
            per_step = lambda key: statistics.median(r[key] / r["steps_run"] for r in ok)  # noqa: E731
            table[-1].update(generated_tokens_per_step=round(per_step("generated_tokens"), 1),
                             decode_steps_per_step=round(per_step("decode_steps"), 1),
                             s_per_1k_generated=round(1000 * table[-1]["step_s_median"]
                                                      / per_step("generated_tokens"), 3))
    rows = {row["variant"]: row for row in table}
    for row in table:
        base = rows.get(baseline.get(row["variant"], ""))
        if base and "error" not in base and "error" not in row:
            row["time_ratio"] = round(row["step_s_median"] / base["step_s_median"], 3)
            row["memory_ratio"] = round(row["peak_rss_mb"] / base["peak_rss_mb"], 3)
            row["vs"] = base["variant"]
            if "s_per_1k_generated" in row and "s_per_1k_generated" in base:
                row["time_ratio_equal_tokens"] = round(row["s_per_1k_generated"] / base["s_per_1k_generated"], 3)
    return table


def markdown(table: list[dict], quality: list[dict]) -> str:
    lines = ["| variant | step s (median) | min–max | peak RSS MB | time ratio | memory ratio | vs | generated "
             "tokens / step | decode steps / step | s / 1k generated | ratio at equal tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'][:80]} | | | | | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['step_s_median']} | {r['step_s_min']}–{r['step_s_max']} | "
                     f"{r['peak_rss_mb']} | {r.get('time_ratio', '')} | {r.get('memory_ratio', '')} | "
                     f"{r.get('vs', '')} | {r.get('generated_tokens_per_step', '')} | "
                     f"{r.get('decode_steps_per_step', '')} | {r.get('s_per_1k_generated', '')} | "
                     f"{r.get('time_ratio_equal_tokens', '')} |")
    lines += ["", "| k | bytes/token | teacher mass in top-k | KL full | KL top-k+tail | abs error | rel error | "
              "rel error, top-k renormalised |", "|---|---|---|---|---|---|---|---|"]
    for q in quality:
        lines.append(f"| {q['k']} | {q['bytes_per_token']} | {q['teacher_mass_in_top_k']} | {q['kl_full']} | "
                     f"{q['kl_top_k_tail']} | {q['kl_abs_error']} | {q['kl_rel_error']} | "
                     f"{q['kl_top_k_renormalised_rel_error']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny random models: a smoke run of every variant")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each variant (interleaved)")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run")
    parser.add_argument("--new-tokens", type=int, default=None, help="on-policy: tokens sampled per prompt")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="variants to run (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default benchmarks/results/lm_kd.json; "
                        "quick runs are not saved unless given)")
    parser.add_argument("--in-process", action="store_true", help="run the variants in this process: one import "
                        "instead of one per variant, but peak memory is then the process's, not the variant's")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(child(args.variant, Setup(**json.loads(args.setup)))), flush=True)
        return 0

    quick = args.quick
    with tempfile.TemporaryDirectory(prefix="protege-lm-kd-") as work:
        setup = Setup(quick=quick, batch=4, length=64 if quick else 256,
                      new_tokens=args.new_tokens or (16 if quick else 128),
                      steps=args.steps or (2 if quick else 4), threads=args.threads, work=work)
        repeats = args.repeats or (1 if quick else 3)
        variants = args.only or list(VARIANTS)
        began, load_before = time.time(), load_average()
        run_variant = child if args.in_process else spawn
        prep = run_variant("prepare", setup)
        if "error" in prep:
            print(prep["error"], file=sys.stderr)
            return 1
        runs = []
        for repeat in range(repeats):
            for name in variants:
                result = run_variant(name, setup)
                result["repeat"], result["load_average"] = repeat, load_average()
                runs.append(result)
                if args.out is not None or not quick:  # a run killed part-way still leaves what it measured
                    partial = (args.out or HERE / "results" / "lm_kd.json").with_suffix(".partial.json")
                    partial.parent.mkdir(parents=True, exist_ok=True)
                    partial.write_text(json.dumps({"prepare": prep, "runs": runs}, indent=2))
                status = result.get("error", "").strip().splitlines()[-1:] or [
                    f"median {statistics.median(result['step_s']):.3f} s/step, peak {result['peak_rss_mb']} MB"]
                print(f"[{repeat + 1}/{repeats}] {name}: {status[0]}", file=sys.stderr, flush=True)
        table = summarise(runs)
        report = {
            "setup": {**setup.__dict__, "work": None, "repeats": repeats, "in_process": args.in_process, "beta": BETA, "lr": LR,
                      "student_dtype": "float32", "cache_k": CACHE_K},
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "load_average_before": load_before, "load_average_after": load_average(),
                        "seconds": round(time.time() - began, 1)},
            "versions": _versions(),
            "table": table, "cache_build": prep["cache_build"], "cache_quality": prep["cache_quality"], "runs": runs,
        }
    print(markdown(table, report["cache_quality"]))
    out = args.out or (None if quick else HERE / "results" / "lm_kd.json")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2))
    failed = [r["variant"] for r in table if "error" in r]
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


def _versions() -> dict:
    from importlib.metadata import version

    return {name: version(name) for name in ("torch", "transformers", "trl", "accelerate")}


if __name__ == "__main__":
    sys.exit(main())
