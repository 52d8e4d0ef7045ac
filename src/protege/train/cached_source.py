"""Micro-batches for logit KD from the teacher-logit cache: the student trains without the teacher in memory.

A :class:`~protege.train.loop.BatchSource` over a :class:`~protege.data.logit_cache.LogitCache`. Each batch is
the usual LM batch (:func:`protege.train.lm_data.collate`) plus the cached teacher, aligned with the student's
positions as :class:`~protege.train.lm_objectives.CachedKD` reads it: ``teacher_topk_ids`` and
``teacher_topk_logprobs`` (B, L, k) and ``teacher_tail_logprob`` (B, L), row ``i`` describing token ``i + 1``.
Rows outside ``loss_mask`` are padding (log-probabilities −inf, tail 0) that the loss never reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from protege.data.logit_cache import CacheMismatchError, LogitCache
from protege.train.lm_data import collate


class CachedTeacherSource:
    def __init__(self, cache: LogitCache, pad_id: int):
        self.cache = cache
        self.pad_id = pad_id

    @classmethod
    def open(cls, root: str | Path, student_tokenizer: Any, student_vocab_size: int, *,
             temperature: float) -> "CachedTeacherSource":
        """Open a cache for this student, refusing one whose tokenizer or temperature does not match."""
        cache = LogitCache(root)
        cache.check_student(student_tokenizer, student_vocab_size)
        if cache.stamp.temperature != temperature:
            raise CacheMismatchError(
                f"the teacher-logit cache at {cache.root} holds the teacher at temperature "
                f"{cache.stamp.temperature}, the loss asks for {temperature}: a top-k cache cannot be re-tempered "
                "(its tail is unknown at another temperature). Set the loss temperature to "
                f"{cache.stamp.temperature}, or rebuild the cache (cache_logits.temperature)."
            )
        pad = student_tokenizer.pad_token_id
        return cls(cache, pad if pad is not None else student_tokenizer.eos_token_id)

    def __len__(self) -> int:
        return len(self.cache)

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        seqs = [self.cache.sequence(i) for i in indices]
        out = collate([s.input_ids.tolist() for s in seqs], [s.prompt_len for s in seqs], self.pad_id)
        mask = out["loss_mask"]
        k = self.cache.stamp.k
        ids = torch.zeros((*mask.shape, k), dtype=torch.long)
        logprobs = torch.full((*mask.shape, k), float("-inf"))
        tail = torch.zeros(mask.shape)
        # collate marks each sequence's response positions as one run, in order: the cached rows fill them.
        ids[mask] = torch.cat([s.teacher.ids for s in seqs])
        logprobs[mask] = torch.cat([s.teacher.logprobs for s in seqs])
        tail[mask] = torch.cat([s.teacher.tail_logprob for s in seqs])
        out.update(teacher_topk_ids=ids, teacher_topk_logprobs=logprobs, teacher_tail_logprob=tail)
        return out
