"""Where reasoning problems come from: a built-in generator, GSM8K-format files, any JSONL, reasoning-gym.

Every source yields :class:`Problem` rows: an id, the question, the gold final answer, a worked solution when
one is known (ending in ``<answer>N</answer>``, the format the prompt asks for) and ``meta`` with the
difficulty knobs accuracy is bucketed by.

* ``chain_sum``: "Compute 12 + 34 - 5." with ``terms`` numbers of ``digits`` digits, each after the first added
  or subtracted at random. The solution is one ``a ± b = c`` line per operation (the format
  :mod:`~protege.tasks.reasoning.process` checks). Splits are disjoint by construction: a problem belongs to
  the split its expression's hash falls in (80 / 10 / 10 % train / dev / test), whatever the seed or count.
* ``gsm8k:<path>``: rows ``question`` and ``answer`` whose last line is ``#### N``; calculator marks
  ``<<48/2=24>>`` are stripped from the solution text.
* ``<path>.jsonl``: rows ``question`` and ``answer`` (the final answer), optional ``solution``, ``difficulty``
  and ``id``.
* ``rg:<dataset>``: a reasoning-gym dataset (optional extra ``pip install reasoning-gym``) with its config
  fields; split by question hash like ``chain_sum``. Rewards still come from protege's verifiers.

Bad knobs and malformed files are errors naming the key, file, row and fix, raised before any sampling.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from protege.tasks.reasoning.answers import extract

SPLITS = {"train": (0, 80), "dev": (80, 90), "test": (90, 100)}  # hash buckets out of 100
CHAIN_SUM_RANGES = {"terms": (2, 10), "digits": (1, 6)}
_CALCULATOR = re.compile(r"<<[^<>]*>>")


@dataclass
class Problem:
    id: str
    question: str
    answer: str
    solution: Optional[str] = None
    meta: dict[str, Any] = field(default_factory=dict)


def split_of(key: str) -> str:
    """The split a problem belongs to, from a stable hash of its identifying text."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return next(name for name, (lo, hi) in SPLITS.items() if lo <= bucket < hi)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is unknown: use one of {', '.join(map(repr, SPLITS))}")


def _check_count(count: int) -> None:
    if count < 1:
        raise ValueError(f"count={count} must be at least 1: the number of problems to generate")


def with_answer_tag(solution: str, answer: str) -> str:
    """A worked solution that ends the way the prompt asks: with ``<answer>N</answer>``."""
    solution = solution.rstrip()
    if extract(solution).rule == "answer_tag":
        return solution
    return f"{solution}\n<answer>{answer}</answer>"


# ---------------------------------------------------------------------------------------------- chain_sum


def chain_sum(count: int, *, terms: int = 3, digits: int = 2, split: str = "train", seed: int = 0,
              at_most: bool = False) -> list[Problem]:
    """``count`` distinct chain sums of ``split``, the same for the same arguments on every machine; when the
    split has fewer, an error, or with ``at_most`` all of them (a small cell such as 2 terms of 1 digit)."""
    for key, value in (("terms", terms), ("digits", digits)):
        lo, hi = CHAIN_SUM_RANGES[key]
        if not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"chain_sum {key}={value!r} is out of range: use an integer from {lo} to {hi}")
    _check_split(split)
    _check_count(count)
    rng = random.Random(f"chain_sum/{seed}/{split}/{terms}/{digits}")
    low = 1 if digits == 1 else 10 ** (digits - 1)
    seen: set[str] = set()
    out: list[Problem] = []
    draws = max(20_000, 50 * count)
    for _ in range(draws):
        numbers = [rng.randint(low, 10**digits - 1) for _ in range(terms)]
        ops = [rng.choice("+-") for _ in range(terms - 1)]
        expression = " ".join([str(numbers[0])] + [f"{op} {n}" for op, n in zip(ops, numbers[1:])])
        if expression in seen or split_of(expression) != split:
            continue
        seen.add(expression)
        out.append(_chain_problem(expression, numbers, ops, terms, digits))
        if len(out) == count:
            return out
    if at_most:
        return out
    raise ValueError(f"chain_sum has only {len(out)} distinct {split} problems at terms={terms}, digits={digits}; "
                     f"lower count={count} or raise terms/digits")


def _chain_problem(expression: str, numbers: list[int], ops: list[str], terms: int, digits: int) -> Problem:
    lines, running = [], numbers[0]
    for op, n in zip(ops, numbers[1:]):
        after = running + n if op == "+" else running - n
        lines.append(f"{running} {op} {n} = {after}")
        running = after
    key = hashlib.sha256(expression.encode()).hexdigest()[:12]
    return Problem(id=f"chain_sum-{key}", question=f"Compute {expression}.", answer=str(running),
                   solution=with_answer_tag("\n".join(lines), str(running)),
                   meta={"source": "chain_sum", "terms": terms, "digits": digits})


# ---------------------------------------------------------------------------------------------- files


def _rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(1-based row number, object) of a JSONL file; blank lines skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"problem file {path} does not exist: check the source path")
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} row {number} is not valid JSON ({err.msg}): one object per line") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path} row {number} is not a JSON object: one object per line")
            yield number, row


def _require(row: dict, columns: tuple[str, ...], path: str | Path, number: int) -> None:
    for column in columns:
        if row.get(column) is None or str(row[column]).strip() == "":
            raise ValueError(f"{path} row {number} has no {column!r} column: every row needs "
                             f"{' and '.join(map(repr, columns))}")


def _limited(rows: Iterator[tuple[int, dict]], limit: Optional[int]) -> Iterator[tuple[int, dict]]:
    for i, item in enumerate(rows):
        if limit is not None and i >= limit:
            return
        yield item


def read_gsm8k(path: str | Path, limit: Optional[int] = None) -> list[Problem]:
    """GSM8K-format rows; the solution is the answer text without calculator marks, ending in the answer tag."""
    out = []
    for number, row in _limited(_rows(path), limit):
        _require(row, ("question", "answer"), path, number)
        worked, sep, final = str(row["answer"]).rpartition("####")
        if not sep or not final.strip():
            raise ValueError(f"{path} row {number}: 'answer' has no final '#### N' line, so this is not GSM8K "
                             f"format; for rows whose answer is the final answer itself, give the path alone")
        answer = final.strip().replace(",", "")
        steps = _CALCULATOR.sub("", worked).strip()
        out.append(Problem(id=f"gsm8k-{hashlib.sha256(row['question'].encode()).hexdigest()[:12]}",
                           question=row["question"].strip(), answer=answer,
                           solution=with_answer_tag(steps, answer),
                           meta={"source": "gsm8k", "steps": len([s for s in steps.splitlines() if s.strip()])}))
    return out


def read_jsonl(path: str | Path, limit: Optional[int] = None) -> list[Problem]:
    """A user's rows: ``question``, ``answer``; optional ``solution``, ``difficulty``, ``id``."""
    out = []
    for number, row in _limited(_rows(path), limit):
        _require(row, ("question", "answer"), path, number)
        answer = str(row["answer"]).strip()
        solution = row.get("solution")
        meta: dict[str, Any] = {"source": Path(path).name}
        if row.get("difficulty") is not None:
            meta["difficulty"] = row["difficulty"]
        out.append(Problem(id=str(row.get("id", f"{Path(path).stem}-{number}")), question=str(row["question"]),
                           answer=answer, solution=with_answer_tag(str(solution), answer) if solution else None,
                           meta=meta))
    return out


# ---------------------------------------------------------------------------------------------- reasoning-gym


def reasoning_gym(dataset: str, count: int, *, split: str = "train", seed: int = 0,
                  config: Optional[dict[str, Any]] = None) -> list[Problem]:
    """``count`` problems of a reasoning-gym dataset that hash into ``split``."""
    _check_split(split)
    _check_count(count)
    try:
        import reasoning_gym as rg
    except ImportError:
        raise ModuleNotFoundError(f"source 'rg:{dataset}' needs reasoning-gym, an optional extra: "
                                  f"pip install reasoning-gym") from None
    config = dict(config or {})
    lo, hi = SPLITS[split]
    size = count * 100 // (hi - lo) * 2 + 20  # enough draws for the split's share of hashes, twice over
    out, seen = [], set()
    for item in rg.create_dataset(dataset, size=size, seed=seed, **config):
        question = str(item["question"])
        if question in seen or split_of(question) != split:
            continue
        seen.add(question)
        out.append(Problem(id=f"rg-{dataset}-{hashlib.sha256(question.encode()).hexdigest()[:12]}",
                           question=question, answer=str(item["answer"]).strip(),
                           meta={"source": f"rg:{dataset}", **config}))
        if len(out) == count:
            return out
    if at_most:
        return out
    raise ValueError(f"rg:{dataset} gave only {len(out)} distinct {split} problems from {size} draws; "
                     f"lower count={count} or widen the dataset's config")


def load_problems(source: str, *, split: str = "train", count: Optional[int] = None, seed: int = 0,
                  **knobs: Any) -> list[Problem]:
    """Problems from a source spec: ``chain_sum``, ``gsm8k:<path>``, ``rg:<dataset>`` or ``<path>.jsonl``.

    ``knobs`` are the generator's (``terms``, ``digits``) or reasoning-gym's config fields; ``count`` is
    required for generated sources and caps file sources.
    """
    if source == "chain_sum" or source.startswith("rg:"):
        if count is None:
            raise ValueError(f"source={source!r} generates problems: give count, e.g. count: 64")
        if source == "chain_sum":
            unknown = sorted(set(knobs) - set(CHAIN_SUM_RANGES))
            if unknown:
                raise ValueError(f"chain_sum has no knob {', '.join(unknown)}: its knobs are "
                                 f"{', '.join(CHAIN_SUM_RANGES)}")
            return chain_sum(count, split=split, seed=seed, **knobs)
        return reasoning_gym(source[3:], count, split=split, seed=seed, config=knobs)
    if knobs:
        raise ValueError(f"source={source!r} is a file and takes no generator knobs ({', '.join(knobs)})")
    if source.startswith("gsm8k:"):
        return read_gsm8k(source[6:], limit=count)
    if source.endswith(".jsonl"):
        return read_jsonl(source, limit=count)
    raise ValueError(f"source={source!r} is unknown: use chain_sum, gsm8k:<path>, rg:<dataset> or a path to a "
                     f".jsonl file")
