"""Reasoning metrics over scored responses: accuracy, pass@k, maj@n, buckets, tokens, truncation and format.

* ``pass@k`` is the unbiased estimator of Chen et al. (2021): from n samples of which c are correct, the chance
  that k drawn without replacement hold at least one correct, 1 − C(n−c, k)/C(n, k), computed as a product
  1 − Π_{i=n−c+1..n} (1 − k/i) that never forms the large binomials.
* ``maj@n`` takes the most frequent extracted answer among n samples, answers grouped by the verifier's
  equivalence (so "1,000" and "1000.0" vote together); ties go to the answer seen first; samples without an
  answer do not vote. The problem counts as solved when that answer verifies against the gold one.
* ``correct per 1k tokens`` is correct responses per 1,000 generated tokens: accuracy for the compute spent.
"""

from __future__ import annotations

from typing import Any, Hashable, Optional, Sequence, Union

from protege.tasks.reasoning.answers import Verifier, get_verifier


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if len(values) else float("nan")


def accuracy(correct: Sequence[bool]) -> float:
    """Share of correct responses (greedy accuracy when there is one greedy response per problem)."""
    return mean([float(bool(c)) for c in correct])


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    miss = 1.0
    for i in range(n - c + 1, n + 1):
        miss *= 1.0 - k / i
    return 1.0 - miss


def majority_answer(answers: Sequence[Optional[str]], verifier: Union[str, Verifier] = "numeric") -> Optional[str]:
    """The most voted answer (first seen of its group, and of the groups on a tie); None when nobody answered."""
    same = get_verifier(verifier) if isinstance(verifier, str) else verifier
    groups: list[list[str]] = []  # answers that verify against their group's first one
    for answer in answers:
        if answer is None:
            continue
        for group in groups:
            if same(answer, group[0]) == 1.0:
                group.append(answer)
                break
        else:
            groups.append([answer])
    if not groups:
        return None
    return max(groups, key=len)[0]  # max keeps the first of equal lengths: the group seen first


def maj_at_n(answers: Sequence[Optional[str]], gold: str, verifier: Union[str, Verifier] = "numeric") -> bool:
    check = get_verifier(verifier) if isinstance(verifier, str) else verifier
    winner = majority_answer(answers, check)
    return winner is not None and check(winner, gold) == 1.0


def accuracy_by_bucket(correct: Sequence[bool], buckets: Sequence[Hashable]) -> dict[Hashable, dict[str, float]]:
    """Accuracy and count per bucket (a difficulty knob, an estimate label, …), buckets in first-seen order."""
    if len(correct) != len(buckets):
        raise ValueError(f"{len(correct)} results but {len(buckets)} bucket keys: give one key per result")
    grouped: dict[Hashable, list[bool]] = {}
    for c, b in zip(correct, buckets):
        grouped.setdefault(b, []).append(bool(c))
    return {b: {"accuracy": accuracy(v), "n": float(len(v))} for b, v in grouped.items()}


def response_summary(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Rates over scored responses (``correct``, ``formatted``, ``truncated``, ``tokens`` per record)."""
    right = [r["tokens"] for r in records if r["correct"]]
    wrong = [r["tokens"] for r in records if not r["correct"]]
    total_tokens = sum(r["tokens"] for r in records)
    return {
        "responses": float(len(records)),
        "accuracy": accuracy([r["correct"] for r in records]),
        "format_rate": mean([float(r["formatted"]) for r in records]),
        "truncation_rate": mean([float(r["truncated"]) for r in records]),
        "tokens_correct": mean(right),
        "tokens_wrong": mean(wrong),
        "generated_tokens": float(total_tokens),
        "correct_per_1k_tokens": 1000.0 * len(right) / total_tokens if total_tokens else float("nan"),
    }


def problem_summary(samples: Sequence[Sequence[dict[str, Any]]], golds: Sequence[str], ks: Sequence[int] = (1,),
                    verifier: Union[str, Verifier] = "numeric") -> dict[str, float]:
    """pass@k for each k (mean over problems) and maj@n over problems' samples (``correct``, ``answer``)."""
    if len(samples) != len(golds):
        raise ValueError(f"{len(samples)} problems' samples but {len(golds)} gold answers")
    out = {f"pass@{k}": mean([pass_at_k(len(s), sum(bool(r["correct"]) for r in s), k) for s in samples])
           for k in ks}
    out["maj@n"] = accuracy([maj_at_n([r["answer"] for r in s], g, verifier) for s, g in zip(samples, golds)])
    return out
