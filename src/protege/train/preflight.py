"""Checks that run before the first training step, so a doomed run fails before it spends anything.

Token-level KD (online logit KD, KD from the logit cache, on-policy KD) compares the teacher's and the student's
next-token distributions id by id. That is only meaningful when both tokenizers map the same text to the same
ids, mark turns with the same special tokens and render prompts with the same chat template; otherwise the
student is taught a scrambled distribution and nothing fails loudly. Sequence-level KD has no such need. A
teacher that scores the student's own token ids as given needs only the same id map (:func:`check_token_ids`).
"""

from __future__ import annotations

from typing import Any

from protege.models.compat import CompatReport, compare_tokenizers


class TokenizerMismatchError(ValueError):
    """Teacher and student tokenizers differ in a way that makes token-level KD meaningless."""


def check_token_kd(
    teacher_tok: Any,
    student_tok: Any,
    *,
    teacher_logit_width: int | None = None,
    student_logit_width: int | None = None,
) -> CompatReport:
    """Raise :class:`TokenizerMismatchError` listing what differs unless token-level KD is sound.

    Returns the comparison (with its notes, e.g. padded logit widths) when it is.
    """
    report = compare_tokenizers(
        teacher_tok, student_tok, teacher_logit_width=teacher_logit_width, student_logit_width=student_logit_width
    )
    if not report.ok:
        raise TokenizerMismatchError(
            "token-level distillation needs the teacher and the student to share one tokenizer, and they do not:\n"
            + "\n".join(f"  - {d}" for d in report.differences)
            + "\nEither pick a student from the teacher's family (same tokenizer), or distil at the sequence "
            "level: a 'respond' stage has the teacher answer the prompts, and the student is fine-tuned on the "
            "'responses' table (objective: sft), which works across tokenizers."
        )
    return report


def check_token_ids(teacher_tok: Any, student_tok: Any) -> CompatReport:
    """Raise :class:`TokenizerMismatchError` unless both tokenizers map tokens to the same ids.

    The weaker check of a teacher that scores the student's own token ids as given (a served teacher of the
    sampled-token estimators): the student's chat template is what the teacher reads, so only the id map matters.
    """
    report = compare_tokenizers(teacher_tok, student_tok)
    if not report.same_vocab:
        raise TokenizerMismatchError(
            "the teacher scores the student's token ids, but the two vocabularies map tokens to different ids:\n"
            + "\n".join(f"  - {d}" for d in report.differences)
            + "\nDistil at the sequence level instead (the teacher's answers as SFT data), which works across "
            "tokenizers."
        )
    return report
