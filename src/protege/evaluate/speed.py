"""Latency and throughput of a model on the same texts and the same machine as the model it is compared with.

Two numbers per model: ``latency_ms``, the median time to answer one example sent alone (what a caller
waiting on a single request sees), and ``throughput``, examples per second when the texts are sent in
batches (what bulk labelling costs). One untimed call first loads lazy weights and warms caches.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

Predict = Callable[[list[str]], Any]


@dataclass(frozen=True)
class Speed:
    examples: int
    latency_ms: float
    throughput: float  # examples per second, batched

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def measure(predict: Predict, texts: Sequence[str], *, batch_size: int, single: int = 8) -> Speed:
    """Time ``predict`` on ``texts``: ``single`` of them one at a time, then all of them in batches."""
    texts = list(texts)
    if not texts:
        raise ValueError("measure needs at least one text to time")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    predict(texts[:1])
    singles = []
    for text in texts[: max(single, 1)]:
        began = time.perf_counter()
        predict([text])
        singles.append(time.perf_counter() - began)
    began = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        predict(texts[start : start + batch_size])
    elapsed = max(time.perf_counter() - began, 1e-9)
    return Speed(examples=len(texts), latency_ms=1000 * statistics.median(singles), throughput=len(texts) / elapsed)


def compare(teacher: Speed, student: Speed) -> dict[str, Any]:
    """Both measurements and how many times faster the student is, by throughput and by latency."""
    return {
        "teacher": teacher.to_dict(),
        "student": student.to_dict(),
        "speedup_throughput": student.throughput / teacher.throughput,
        "speedup_latency": teacher.latency_ms / max(student.latency_ms, 1e-9),
    }
