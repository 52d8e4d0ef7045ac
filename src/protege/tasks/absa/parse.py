"""Reading (term, polarity) pairs out of a teacher's answer, whatever common shape it took. Never raises.

Accepted shapes, tried in this order:

1. a list already decoded (e.g. the ``label`` field of a JSON file);
2. a JSON or Python-literal list found in the text (code fences and chatter around it are ignored), or an
   object holding such a list under ``aspects``/``pairs``/``labels``; items may be ``[term, polarity]``, a
   dict with a term key (``term``, ``aspect``, ``target``, ``aspect_term``) and a polarity key (``polarity``,
   ``sentiment``, ``label``), or a string ``"term, polarity"`` (GPT-3.5 sometimes fuses a pair into one quoted
   string);
3. plain text: ``term | polarity ; term | polarity``, or one pair per line (``term: polarity``,
   ``- term - polarity``, ``(term, polarity)``, …), split at the *last* separator so terms may contain one.

An explicit empty answer (``[]``, ``none``, ``no aspects``) parses to no pairs with ``parsed=True``; blank or
unreadable output gives ``parsed=False``. Items that cannot be read are skipped and counted in ``skipped``.
Polarity words are returned as written: mapping them to the task's polarities is normalisation's job.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

Pair = tuple[str, str]

TERM_KEYS = ("term", "aspect", "target", "aspect_term", "aspect term")
POLARITY_KEYS = ("polarity", "sentiment", "label", "opinion")
LIST_KEYS = ("aspects", "pairs", "labels", "answer", "result")
EMPTY_ANSWERS = {"", "none", "no aspects", "no aspect", "n/a", "nothing", "[]", "null"}

_FENCE = re.compile(r"```[a-zA-Z]*\s*|```")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
# Separators between a term and its polarity in plain text; the last one in a chunk wins.
_SEPARATOR = re.compile(r"\s*(?:\||:|->|=>|=|,|\s-\s|\t)\s*")


@dataclass
class Parsed:
    pairs: list[Pair] = field(default_factory=list)
    parsed: bool = False  # the answer had a recognisable shape (an explicit empty answer counts)
    skipped: int = 0  # items of a recognised list (or chunks of text) that held no readable pair


def _clean(text: Any) -> str:
    return str(text).strip().strip("'\"`").strip()


def _split_last(text: str) -> Optional[Pair]:
    """``term<sep>polarity`` split at the last separator; None when either side is empty."""
    text = text.strip().strip("()[]{}").strip()
    cuts = list(_SEPARATOR.finditer(text))
    if not cuts:
        return None
    cut = cuts[-1]
    term, polarity = _clean(text[: cut.start()]), _clean(text[cut.end():])
    return (term, polarity) if term and polarity else None


def _item(item: Any) -> Optional[Pair]:
    if isinstance(item, dict):
        lower = {str(k).lower(): v for k, v in item.items()}
        term = next((lower[k] for k in TERM_KEYS if lower.get(k) not in (None, "")), None)
        polarity = next((lower[k] for k in POLARITY_KEYS if lower.get(k) not in (None, "")), None)
        if term is None or polarity is None:
            return None
        return _clean(term), _clean(polarity)
    if isinstance(item, (list, tuple)):
        if len(item) == 2 and all(isinstance(x, (str, int, float)) for x in item):
            term, polarity = _clean(item[0]), _clean(item[1])
            return (term, polarity) if term and polarity else None
        if len(item) == 1:
            return _item(item[0])
        return None
    if isinstance(item, str):
        return _split_last(item)
    return None


def _from_list(items: list) -> Parsed:
    out = Parsed(parsed=True)
    if len(items) == 2 and all(isinstance(x, str) for x in items) and _split_last(items[0]) is None \
            and _split_last(items[1]) is None:
        items = [items]  # a single bare pair: ["screen", "positive"]
    for item in items:
        pair = _item(item)
        if pair is None:
            out.skipped += 1
        else:
            out.pairs.append(pair)
    return out


def _literal(text: str) -> Any:
    for load in (json.loads, ast.literal_eval):
        try:
            return load(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return None


def _structured(text: str) -> Optional[Parsed]:
    """A list (or an object holding one) found between the first opening and the last closing bracket."""
    for open_, close in (("[", "]"), ("{", "}")):
        start, end = text.find(open_), text.rfind(close)
        if start < 0 or end <= start:
            continue
        value = _literal(text[start : end + 1])
        if isinstance(value, dict):
            lower = {str(k).lower(): v for k, v in value.items()}
            inner = next((lower[k] for k in LIST_KEYS if isinstance(lower.get(k), list)), None)
            value = inner if inner is not None else [value]
        if isinstance(value, (list, tuple)):
            return _from_list(list(value))
    return None


def _plain(text: str) -> Parsed:
    out = Parsed()
    for chunk in re.split(r"[;\n]+", text):
        chunk = _BULLET.sub("", chunk).strip()
        if not chunk:
            continue
        pair = _split_last(chunk)
        if pair is None:
            out.skipped += 1
        else:
            out.pairs.append(pair)
    out.parsed = bool(out.pairs)
    return out


def parse_pairs(output: Any) -> Parsed:
    """The (term, polarity) pairs in a teacher's answer (text or already-decoded list); see the module doc."""
    try:
        if isinstance(output, (list, tuple)):
            return _from_list(list(output))
        if not isinstance(output, str):
            return Parsed()
        text = _FENCE.sub("", output).strip()
        if text.lower().rstrip(".") in EMPTY_ANSWERS:
            return Parsed(parsed=bool(text))
        return _structured(text) or _plain(text)
    except Exception:  # noqa: BLE001 - a teacher's text must never crash a pipeline that already paid for it
        return Parsed()
