"""How far sparse teachers move the forward-KL gradient from the exact one.

A synthetic teacher over the SmolLM2 vocabulary (49,152), a student near it, k = 20 (the most an OpenAI-
compatible server returns). For each sparse form we compare the gradient of the loss with respect to the
student's logits with the exact full-vocabulary forward-KL gradient, over all positions: relative L2 error,
and the first-order change of the student's probability mass outside the teacher's top-k per unit step
against the gradient (+ = the step moves mass onto those tail tokens; compare with the exact row). Sparse
Logit Sampling is random: averaging d independent draws shrinks its error like 1/√d (unbiased);
renormalised top-k is deterministic and stays off, with the wrong sign on the tail.

    python benchmarks/sparse_bias.py      # writes benchmarks/results/sparse_bias.json
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from protege.losses import (
    sample_from_logits,
    sampled_logit_kl,
    token_divergence,
    topk_divergence,
    topk_from_logits,
)

OUT = Path(__file__).resolve().parent / "results" / "sparse_bias.json"


def gradient(loss_fn, s: torch.Tensor) -> torch.Tensor:
    leaf = s.clone().requires_grad_()
    return torch.autograd.grad(loss_fn(leaf), leaf)[0]


def main(positions: int = 64, vocab: int = 49_152, k: int = 20, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    # Zipf-like teacher: a few strong tokens and a long tail carrying real mass.
    ranks = torch.arange(1, vocab + 1, dtype=torch.float64)
    base = -1.1 * ranks.log()
    t = torch.stack([base[torch.randperm(vocab, generator=g)] for _ in range(positions)])
    t = t + 0.5 * torch.randn(positions, vocab, generator=g, dtype=torch.float64)
    s = t + 0.7 * torch.randn(positions, vocab, generator=g, dtype=torch.float64)
    mask = torch.ones(positions, dtype=torch.bool)
    exact = gradient(lambda x: token_divergence(x, t, mask, kind="forward_kl"), s)
    top = topk_from_logits(t, k)
    tail_mass = float(top.tail_logprob.exp().mean())
    renorm = top.logprobs - top.logprobs.logsumexp(-1, keepdim=True)
    forms = {
        "renormalised top-k (tail dropped)": gradient(lambda x: topk_divergence(
            x, top.ids, renorm, mask, tail_logprob=torch.full((positions,), -math.inf, dtype=t.dtype)), s),
        "top-k + tail bucket": gradient(lambda x: topk_divergence(x, top.ids, top.logprobs, mask,
                                                                   tail_logprob=top.tail_logprob), s),
    }
    for draws in (1, 10, 100):
        grads = [gradient(lambda x: sampled_logit_kl(x, sample_from_logits(t, k, generator=g), mask), s)
                 for _ in range(draws)]
        forms[f"sampled logits, k={k} draws, mean of {draws}"] = torch.stack(grads).mean(0)

    def tail_shift(grad: torch.Tensor) -> float:
        # d(student tail mass) along −grad, to first order: −Σ_tail q (−grad − Σ q·(−grad)).
        q = torch.softmax(s, -1)
        step = -grad
        dq = q * (step - (q * step).sum(-1, keepdim=True))
        in_top = torch.zeros_like(q, dtype=torch.bool).scatter(-1, top.ids, True)
        return float(dq.masked_fill(in_top, 0).sum(-1).mean() / step.norm(dim=-1).mean())

    rows = [{"form": name, "relative_l2_error": float((gr - exact).norm() / exact.norm()),
             "tail_mass_change_per_unit_step": tail_shift(gr)} for name, gr in forms.items()]
    rows.append({"form": "exact", "relative_l2_error": 0.0,
                 "tail_mass_change_per_unit_step": tail_shift(exact)})
    lines = [f"Forward-KL gradient vs exact, {positions} positions × vocab {vocab:,}, k = {k}, "
             f"teacher tail mass outside top-k = {tail_mass:.3f}", "",
             "| sparse form | relative L2 error | tail-mass change per unit step |", "|---|---:|---:|"]
    lines += [f"| {r['form']} | {r['relative_l2_error']:.3f} | {r['tail_mass_change_per_unit_step']:+.2e} |"
              for r in rows]
    print("\n".join(lines))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"positions": positions, "vocab": vocab, "k": k, "teacher_tail_mass": tail_mass,
                               "results": rows, "table": "\n".join(lines)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
