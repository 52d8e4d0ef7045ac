"""Converting between the absa value types and table rows (labels as SemEval-shaped JSON text)."""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import pandas as pd

from protege.tasks.absa.task import AbsaExample, Aspect


def dump_aspects(aspects: Iterable[Aspect]) -> str:
    return json.dumps([a.as_dict() for a in aspects], ensure_ascii=False)


def load_aspects(text: Any) -> tuple[Aspect, ...]:
    """Aspects of a stored label; the spans were validated when written."""
    if not isinstance(text, str) or not text:
        return ()
    return tuple(
        sorted(Aspect(int(a["from"]), int(a["to"]), a["target"], a["polarity"]) for a in json.loads(text))
    )


def example_rows(examples: Sequence[AbsaExample], split: str, source: str) -> list[dict]:
    return [
        {
            "id": e.id,
            "sentence": e.sentence,
            "split": split,
            "source": source,
            "aspects": dump_aspects(e.aspects),
        }
        for e in examples
    ]


def examples_of(frame: pd.DataFrame, column: str = "aspects") -> list[AbsaExample]:
    if not len(frame):
        return []
    return [
        AbsaExample(str(i), s, load_aspects(a))
        for i, s, a in zip(frame["id"], frame["sentence"], frame[column])
    ]
