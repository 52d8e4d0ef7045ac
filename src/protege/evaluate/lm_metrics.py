"""How close a student LM is to its teacher: fit to the teacher's answers, and answers the student writes itself.

* :func:`response_fit` — over the response tokens of held-out teacher answers: the student's negative
  log-likelihood per token, the forward KL(teacher ‖ student) per token, and top-1 agreement (share of
  positions where both put their highest probability on the same token). Teacher-forced, no sampling.
* :func:`generation_eval` — the model answers prompts greedily: tokens per answer, generation speed, and the
  task metric (last-number match) where gold answers exist.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

import torch

from protege.losses import token_divergence
from protege.models.base import SamplingParams
from protege.models.hf import HFTeacher
from protege.data.arithmetic import number_match
from protege.train.lm_data import LMExamples
from protege.train.lm_objectives import completion_states, next_tokens, output_head


def _completion_logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    weight, bias = output_head(model)
    hidden = completion_states(model, batch)
    return torch.nn.functional.linear(hidden.to(weight.dtype), weight, bias).float()


@torch.no_grad()
def response_fit(student: Any, teacher: Optional[Any], examples: LMExamples, *,
                 batch_size: int = 8) -> dict[str, float]:
    """Per-token NLL of the student on the responses, and (with a teacher) KL to it and top-1 agreement."""
    if len(examples) == 0:
        raise ValueError("response_fit needs at least one held-out example")
    was = student.training
    student.eval()
    nll = kl = agree = 0.0
    tokens = 0
    device = next(student.parameters()).device
    try:
        for start in range(0, len(examples), batch_size):
            indices = range(start, min(start + batch_size, len(examples)))
            batch = {k: v.to(device) for k, v in examples.batch(indices).items()}
            s = _completion_logits(student, batch)
            nll += float(torch.nn.functional.cross_entropy(s, next_tokens(batch), reduction="sum"))
            tokens += s.shape[0]
            if teacher is not None:
                t = _completion_logits(teacher, batch)
                mask = torch.ones(s.shape[0], dtype=torch.bool, device=s.device)
                kl += float(token_divergence(s, t, mask, kind="forward_kl", num_tokens=1))
                agree += float((s.argmax(-1) == t.argmax(-1)).sum())
    finally:
        student.train(was)
    out = {"nll": nll / tokens, "tokens": float(tokens)}
    if teacher is not None:
        out.update(kl=kl / tokens, top1_agreement=agree / tokens)
    return out


def generation_eval(model: Any, tokenizer: Any, prompts: Sequence[str], *, golds: Optional[Sequence[str]] = None,
                    max_new_tokens: int = 128, batch_size: int = 8) -> dict[str, Any]:
    """Greedy answers to ``prompts``: tokens per answer, tokens per second, and accuracy against ``golds``."""
    was = model.training
    generator = HFTeacher(model, tokenizer, model_id="evaluated", batch_size=batch_size)
    chats = [[{"role": "user", "content": p}] for p in prompts]
    began = time.perf_counter()
    try:
        answers = [g[0] for g in generator.generate(chats, SamplingParams(max_new_tokens=max_new_tokens))]
    finally:
        model.train(was)
    seconds = time.perf_counter() - began
    generated = sum(a.completion_tokens for a in answers)
    out: dict[str, Any] = {
        "answers": len(answers),
        "tokens_per_answer": generated / max(len(answers), 1),
        "truncated_share": sum(a.finish_reason == "length" for a in answers) / max(len(answers), 1),
        "tokens_per_second": generated / max(seconds, 1e-9),
        "seconds": seconds,
        "texts": [a.text for a in answers],
    }
    if golds is not None:
        right = sum(number_match(a.text, g) for a, g in zip(answers, golds, strict=True))
        out["task_accuracy"] = right / max(len(answers), 1)
    return out
