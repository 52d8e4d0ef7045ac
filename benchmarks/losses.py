"""Time and extra peak memory of protege's distillation losses, chunked vs unchunked, and against TRL.

Each variant runs forward + backward of a generalized JSD (β = 0.5, T = 1) at batch × length × vocab in a
fresh subprocess, so one variant's freed memory cannot hide another's peak. Extra peak memory is the rise of
the process's resident-set high-water mark (VmHWM, reset through /proc/self/clear_refs) over its resident set
once the inputs exist; glibc is told to serve large blocks with mmap so freed memory leaves the process.
The gradient of whatever the loss is differentiated against (logits, or hidden states and head weight) is part
of every variant's peak.

    python benchmarks/losses.py                 # 8 × 256 × 49,152, writes benchmarks/results/losses.json
    python benchmarks/losses.py --length 64     # quicker
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "losses.json"

VARIANTS = {
    "token_divergence, unchunked": "logits from (B, L, V) tensors, plain autograd",
    "token_divergence, chunked": "same inputs, chunk_size positions at a time, gradients per chunk",
    "TRL generalized_jsd_loss": "trl.experimental.gkd GKDTrainer.generalized_jsd_loss on the same tensors",
    "head_divergence, unchunked": "student hidden (N, H) @ weight (V, H)ᵀ all at once, then the plain loss",
    "head_divergence, chunked": "logits made chunk by chunk from hidden states; (N, V) never exists",
}


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status (Linux only)")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _build(variant: str, args: argparse.Namespace) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
    """Inputs of one variant and a closure computing its loss; returns (loss_fn, leaves to clear)."""
    from protege.losses import head_divergence, token_divergence

    g = torch.Generator().manual_seed(0)
    b, length, vocab, hidden = args.batch, args.length, args.vocab, args.hidden
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[:, : length // 4] = False  # a prompt quarter the loss ignores
    if variant.startswith("head"):
        n = int(mask.sum())
        h = (torch.randn(n, hidden, generator=g) / hidden**0.5).requires_grad_()
        w = (torch.randn(vocab, hidden, generator=g)).requires_grad_()
        teacher = torch.randn(n, vocab, generator=g)
        chunk = args.chunk_size if variant.endswith(", chunked") else None
        return (lambda: head_divergence(h, w, teacher, kind="jsd", beta=0.5, chunk_size=chunk)), [h, w]
    s = torch.randn(b, length, vocab, generator=g).requires_grad_()
    t = torch.randn(b, length, vocab, generator=g)
    if variant.startswith("TRL"):
        from trl.experimental.gkd.gkd_trainer import GKDTrainer

        labels = torch.where(mask, 0, -100)
        return (lambda: GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=0.5)), [s]
    chunk = args.chunk_size if variant.endswith(", chunked") else None
    return (lambda: token_divergence(s, t, mask, kind="jsd", beta=0.5, chunk_size=chunk)), [s]


def measure(variant: str, args: argparse.Namespace) -> dict:
    """In the child: one warm-up, then repeats × (forward + backward); peak over all, median time.

    The warm-up pages in the kernels' code and thread pools, which would otherwise count in the first peak.
    """
    loss_fn, leaves = _build(variant, args)
    loss_fn().backward()
    peaks, seconds, value = [], [], float("nan")
    for _ in range(args.repeats):
        for leaf in leaves:
            leaf.grad = None
        gc.collect()
        base = _status("VmRSS")
        _reset_peak()
        start = time.perf_counter()
        loss = loss_fn()
        loss.backward()
        seconds.append(time.perf_counter() - start)
        peaks.append(_status("VmHWM") - base)
        value = loss.item()
        del loss
    return {"variant": variant, "loss": value, "seconds": statistics.median(seconds),
            "extra_peak_mib": max(peaks) / 2**20}


def run_child(variant: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT.parent / "src"), env.get("PYTHONPATH")]))
    cmd = [sys.executable, __file__, "--child", variant, *sys.argv[1:]]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict], args: argparse.Namespace) -> str:
    plain = {r["variant"].split(",")[0]: r for r in rows if r["variant"].endswith("unchunked")}
    lines = [f"Generalized JSD (β = 0.5), forward + backward, batch {args.batch} × length {args.length} × "
             f"vocab {args.vocab:,} (hidden {args.hidden}, chunk {args.chunk_size}), float32, "
             f"{torch.get_num_threads()} threads, median of {args.repeats}.", "",
             "| variant | loss | time (s) | extra peak (MiB) | time vs unchunked | memory vs unchunked |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = plain.get(r["variant"].split(",")[0], plain["token_divergence"])
        time_ratio, memory_ratio = r["seconds"] / ref["seconds"], r["extra_peak_mib"] / ref["extra_peak_mib"]
        lines.append(f"| {r['variant']} | {r['loss']:.6f} | {r['seconds']:.2f} | {r['extra_peak_mib']:.0f} | "
                     f"{time_ratio:.2f} | {memory_ratio:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=49_152)
    parser.add_argument("--hidden", type=int, default=576, help="student hidden size (SmolLM2-135M: 576)")
    parser.add_argument("--chunk-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    rows = []
    for variant in VARIANTS:
        try:
            rows.append(run_child(variant, args))
        except subprocess.CalledProcessError as err:
            if "trl" not in (err.stderr or "") or not variant.startswith("TRL"):
                raise
            print(f"skipped {variant}: trl is not importable", file=sys.stderr)
    text = table(rows, args)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "child")}
    args.out.write_text(json.dumps({"config": config, "variants": VARIANTS, "results": rows, "table": text},
                                   indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
