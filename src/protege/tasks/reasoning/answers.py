"""Final answers: extraction from a free-form response, and binary verifiers against the gold answer.

Extraction tries these rules in order and takes the *last* match of the first rule that matches, so a response
that restates the format instruction before answering is still read at its answer:

==============  ==============================  =========
rule            reads                           formatted
==============  ==============================  =========
``answer_tag``  ``<answer>42</answer>``         yes
``boxed``       ``\\boxed{42}`` (nested braces)  yes
``hashes``      ``#### 42`` (GSM8K)              yes
``answer_is``   "the answer is 42." / "Answer: 42"  yes
``last_number`` the last number of the text      no
==============  ==============================  =========

Special tokens a chat template leaves in decoded text (``<|im_end|>``, ``</s>``, …) are removed first; a
response with none of the above and no number has no answer. Extraction never raises: an unparsable response
is data (unformatted, wrong).

Verifiers take the extracted answer (or None) and the gold answer and return a binary reward, 1.0 or 0.0; there
is no partial credit. ``numeric`` ignores ``$``, ``%``, thousands commas, a trailing period and LaTeX wrappers,
compares integers exactly and decimals or fractions within 1e-6 relative; an answer that is not a number by
itself ("42 apples", "x = 5") counts by its only number, and by none when it holds several. ``exact`` compares
case-folded text with collapsed whitespace. ``choice`` compares option letters ("B", "(B)", "B) 42", "Option B").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Union

FORMAT_INSTRUCTION = "Show the steps, then give the final answer as <answer>N</answer>."

_SPECIAL = re.compile(r"<\|[^|<>]*\|>|</?s>|<eos>|<bos>|<pad>")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"\banswer(?:\s+is\b\s*:?|\s*:)\s*(.+?)(?:\.(?=\s|$)|\n|$)", re.I)
# A number as written in prose: optional sign and currency, thousands commas, decimals, a fraction.
NUMBER = re.compile(r"[-−]?\$?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)(?:/\d+)?")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INT = re.compile(r"[-+]?\d+")
_DECIMAL = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)")
_RATIO = re.compile(r"[-+]?\d+/\d+")
_FRAC = re.compile(r"\\d?frac\{([^{}]*)\}\{([^{}]*)\}")
RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Extraction:
    """The answer read from a response: its text (None when there is none), and which rule found it."""

    answer: Optional[str]
    formatted: bool
    rule: Optional[str]


def _braced(text: str, start: int) -> Optional[str]:
    """The content of the brace group opening at ``text[start] == '{'``, or None when it never closes."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def _last_boxed(text: str) -> Optional[str]:
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        content = _braced(text, match.end() - 1)
        if content is not None:
            return content
    return None


def _last(pattern: re.Pattern, text: str) -> Optional[str]:
    found = [m.strip() for m in pattern.findall(text)]
    return found[-1] if found else None


def _last_number(text: str) -> Optional[str]:
    found = NUMBER.findall(text)
    return found[-1] if found else None


_RULES: tuple[tuple[str, Callable[[str], Optional[str]], bool], ...] = (
    ("answer_tag", lambda t: _last(_TAG, t), True),
    ("boxed", _last_boxed, True),
    ("hashes", lambda t: _last(_HASHES, t) or None, True),
    ("answer_is", lambda t: _last(_ANSWER_IS, t), True),
    ("last_number", _last_number, False),
)


def extract(response: str) -> Extraction:
    """Read the final answer of ``response`` by the first rule that finds one (see the module notes)."""
    text = _SPECIAL.sub("", response or "")
    for name, rule, formatted in _RULES:
        found = rule(text)
        if found is not None:
            return Extraction(found.strip().strip("*_").strip(), formatted, name)
    return Extraction(None, False, None)


# ---------------------------------------------------------------------------------------------- numbers


def _clean(text: str) -> str:
    s = text.strip().replace("−", "-")
    boxed = _last_boxed(s)
    if boxed is not None:
        s = boxed
    s = _FRAC.sub(r"\1/\2", s)
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    for token in ("\\$", "\\%", "\\!", "\\,", "\\;", "$", "%"):
        s = s.replace(token, "")
    s = s.strip().strip("*_").strip()
    while s.endswith("."):
        s = s[:-1].rstrip()
    return s


def parse_number(text: Optional[str]) -> Optional[tuple[Fraction, bool]]:
    """(exact value, written as an integer) of a string that is a number by itself, else None."""
    if text is None:
        return None
    s = _clean(text)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    try:
        if _INT.fullmatch(s):
            return Fraction(int(s)), True
        if _DECIMAL.fullmatch(s):
            return Fraction(s), False
        if _RATIO.fullmatch(s):
            return Fraction(s), False
    except (ValueError, ZeroDivisionError):
        return None
    return None


def read_number(text: Optional[str]) -> Optional[tuple[Fraction, bool]]:
    """:func:`parse_number`, or the only number inside a longer answer ("42 apples"); None when ambiguous."""
    value = parse_number(text)
    if value is not None or text is None:
        return value
    found = NUMBER.findall(_clean(text))
    return parse_number(found[0]) if len(found) == 1 else None


def numbers_equal(a: tuple[Fraction, bool], b: tuple[Fraction, bool]) -> bool:
    (x, x_int), (y, y_int) = a, b
    if x_int and y_int:
        return x == y
    return abs(x - y) <= RELATIVE_TOLERANCE * max(abs(x), abs(y))


# ---------------------------------------------------------------------------------------------- verifiers


def numeric(predicted: Optional[str], gold: str) -> float:
    got, want = read_number(predicted), read_number(gold)
    if got is None or want is None:
        return 0.0
    return 1.0 if numbers_equal(got, want) else 0.0


def _normal_text(text: str) -> str:
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", text).strip().strip("*_\"'`").strip()
    while s.endswith("."):
        s = s[:-1].rstrip()
    return " ".join(s.casefold().split())


def exact(predicted: Optional[str], gold: str) -> float:
    if predicted is None:
        return 0.0
    return 1.0 if _normal_text(predicted) == _normal_text(gold) else 0.0


_CHOICE = re.compile(r"(?:(?:option|choice)\s+)?(?:\(([A-Za-z])\)|([A-Z])[).:]|([A-Z])$)", re.I)


def choice_letter(text: Optional[str]) -> Optional[str]:
    """The option letter an answer names: "B", "(b)", "B) 42", "Option B"; None for anything else."""
    if text is None:
        return None
    s = text.strip().strip("*_").strip()
    if len(s) == 1 and s.isalpha():
        return s.upper()
    m = _CHOICE.match(s)
    if m is None:
        return None
    letter = next(g for g in m.groups() if g)
    return letter.upper() if (m.group(1) or letter.isupper()) else None


def choice(predicted: Optional[str], gold: str) -> float:
    got, want = choice_letter(predicted), choice_letter(gold)
    return 1.0 if got is not None and got == want else 0.0


Verifier = Callable[[Optional[str], str], float]
VERIFIERS: dict[str, Verifier] = {"numeric": numeric, "exact": exact, "choice": choice}


def get_verifier(name: str) -> Verifier:
    if name not in VERIFIERS:
        raise ValueError(f"verifier={name!r} is unknown: use one of {', '.join(map(repr, VERIFIERS))}")
    return VERIFIERS[name]


def score_response(response: str, gold: str, verifier: Union[str, Verifier] = "numeric", *,
                   truncated: bool) -> dict:
    """The per-response record fields: answer, rule, formatted, correct, truncated and the binary reward.

    ``truncated`` is the caller's flag: no end-of-sequence within ``max_new_tokens``.
    """
    check = get_verifier(verifier) if isinstance(verifier, str) else verifier
    found = extract(response)
    reward = float(check(found.answer, gold))
    return {"answer": found.answer, "rule": found.rule, "formatted": found.formatted, "correct": reward == 1.0,
            "truncated": bool(truncated), "reward": reward}
