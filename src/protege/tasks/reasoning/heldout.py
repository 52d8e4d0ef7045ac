"""The RL stage's evaluation: the exact reverse KL from the student to the teacher on held-out prompts.

At each evaluation the student samples one response per held-out prompt (its own distribution, the one the
KD term of KDRL acts on), and both models score those sequences: the full-vocabulary KL(q‖p_T) at every
response position, summed chunk by chunk through :func:`protege.losses.head_divergence` (no (N, V) logits held),
divided by the response tokens. The draws use their own seed inside a forked RNG, so an evaluation neither moves
the training run's random stream (resume stays exact) nor differs between two evaluations of the same weights.
The verifier's mean reward of the same responses comes along, since they are sampled anyway.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from protege.losses import ProjectedTeacher, head_divergence
from protege.train.lm_data import collate
from protege.train.lm_objectives import completion_states, frozen_states, output_head
from protege.train.rollouts import generate_continuations


@torch.no_grad()
def heldout_kl(student: Any, teacher: Any, prompts: Sequence[list[int]], *, eos_id: int, pad_id: int,
               max_new_tokens: int, temperature: float, seed: int, reward: Optional[Callable[[int, list[int]], float]]
               = None, batch_size: int = 16, chunk_size: int = 32) -> dict[str, float]:
    """``heldout_kl`` (nats per response token), ``heldout_tokens``, ``heldout_length`` and ``heldout_reward``.

    ``reward(i, completion ids)`` judges the response to prompt ``i``; without it no reward is reported.
    """
    if not prompts:
        raise ValueError("heldout_kl needs at least one held-out prompt")
    device = next(student.parameters()).device
    with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
        torch.manual_seed(seed)
        completions = [c for start in range(0, len(prompts), batch_size)
                       for c in generate_continuations(student, prompts[start:start + batch_size], pad_id=pad_id,
                                                       eos_id=eos_id, max_new_tokens=max_new_tokens,
                                                       temperature=temperature)]
    weight, bias = output_head(student)
    t_weight, t_bias = output_head(teacher)
    total, tokens = 0.0, 0
    for start in range(0, len(prompts), batch_size):
        part = list(range(start, min(start + batch_size, len(prompts))))
        batch = collate([list(prompts[i]) + completions[i] for i in part], [len(prompts[i]) for i in part], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        hidden = completion_states(student, batch)
        projected = ProjectedTeacher(frozen_states(teacher, batch), t_weight, t_bias)
        total += float(head_divergence(hidden, weight, projected, bias=bias, kind="reverse_kl", num_tokens=1,
                                       chunk_size=chunk_size))
        tokens += hidden.shape[0]
    out = {"heldout_kl": total / max(tokens, 1), "heldout_tokens": float(tokens),
           "heldout_length": tokens / len(prompts)}
    if reward is not None:
        out["heldout_reward"] = sum(float(reward(i, c)) for i, c in enumerate(completions)) / len(prompts)
    return out
