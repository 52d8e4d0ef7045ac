"""Fitting texts into a teacher's context window: a prompt longer than the positions a model was trained on gets
answers that mean nothing (and a server refuses it), so the text inside it is cut to fit instead, and counted.
"""

from __future__ import annotations

from typing import Callable

# Tokens a text can add to a prompt beyond one per byte: merges across the text's edges.
EDGE_TOKENS = 4


def surely_fits(empty_prompt_tokens: int, text: str, copies: int, limit: int) -> bool:
    """True when a prompt holding ``copies`` of ``text`` cannot exceed ``limit`` tokens, without tokenizing it:
    a byte-level or byte-fallback token covers at least one byte, so the text adds at most its byte length."""
    return empty_prompt_tokens + copies * (len(text.encode()) + EDGE_TOKENS) <= limit


def fit_text(text: str, count: Callable[[str], int], limit: int) -> str:
    """The longest prefix of ``text`` whose prompt ``count(prefix)`` (in tokens) is at most ``limit``.

    ``count`` renders the prompt around a text and counts its tokens; it must grow with the text. Binary search:
    about log2(len(text)) counts. A ValueError when even the empty text's prompt does not fit.
    """
    if count(text) <= limit:
        return text
    if count("") > limit:
        raise ValueError(f"the prompt around the text already takes {count('')} tokens, more than the teacher's "
                         f"context of {limit}: shorten the instruction, templates or few-shot examples")
    fits, too_long = 0, len(text)
    while too_long - fits > 1:
        middle = (fits + too_long) // 2
        if count(text[:middle]) <= limit:
            fits = middle
        else:
            too_long = middle
    return text[:fits]
