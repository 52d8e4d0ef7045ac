"""Short arithmetic word problems generated in code, and scoring an answer by the last number it states.

A fully offline instruction set with verifiable answers: the ``arithmetic`` packaged dataset (``text`` = the
problem, ``label`` = the answer), generated from a fixed seed so every recipe sees the same train and test
problems. :func:`number_match` scores free-form answers the GSM8K way: the last number in the text.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd

SEED = 0  # fixed: the test problems must not move between recipes
SIZES = {"train": 400, "test": 100}

# (template, answer) pairs; each draws its numbers from the rng.
_TEMPLATES = (
    ("{name} has {a} apples and buys {b} more. How many apples does {name} have now?", lambda a, b, c: a + b),
    ("A shelf holds {a} books. {b} are taken away. How many books are left on the shelf?", lambda a, b, c: a - b),
    ("{name} reads {a} pages a day for {c} days. How many pages does {name} read in total?", lambda a, b, c: a * c),
    ("A box has {a} pens. {name} adds {b} pens and then gives away {c}. How many pens are in the box?",
     lambda a, b, c: a + b - c),
    ("Each bag holds {c} oranges. How many oranges are in {a} bags?", lambda a, b, c: a * c),
    ("{name} had {a} coins, spent {c} and found {b}. How many coins does {name} have?", lambda a, b, c: a - c + b),
)
_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivo", "Jun")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def problems(count: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(count):
        template, answer = rng.choice(_TEMPLATES)
        a, b, c = rng.randint(10, 60), rng.randint(2, 9), rng.randint(2, 9)
        text = template.format(name=rng.choice(_NAMES), a=a, b=b, c=c)
        out.append((text + " Think step by step, then give the final number.", str(answer(a, b, c))))
    return out


def load_arithmetic(_: Path | None = None) -> dict[str, pd.DataFrame]:
    rng = random.Random(SEED)
    splits: dict[str, pd.DataFrame] = {}
    seen: set[str] = set()
    for split, size in SIZES.items():
        rows = []
        for text, answer in problems(size * 2, rng):
            if text not in seen and len(rows) < size:  # unique, and no test problem also appears in train
                seen.add(text)
                rows.append((text, answer))
        splits[split] = pd.DataFrame(rows, columns=["text", "label"])
    return splits


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def number_match(answer: str, gold: str) -> bool:
    """True when the last number of ``answer`` equals the last number of ``gold`` (e.g. GSM8K's '#### 42')."""
    got, want = last_number(answer), last_number(str(gold))
    return got is not None and want is not None and abs(got - want) < 1e-6
