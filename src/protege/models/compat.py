"""Can a student learn token by token from a teacher? Compare their tokenizers, not just their sizes.

Token-level distillation matches distributions position by position and id by id, so it is only meaningful if
both models map the same text to the same ids. Vocabulary *sizes* mislead both ways: two unrelated tokenizers
can have equal sizes, and one model family ships the same tokenizer with embedding matrices padded to different
widths (151,936 vs 152,064 columns for ~151,665 real tokens).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

# Text that exercises spaces, digits, punctuation, unicode and casing: two tokenizers with the same vocabulary
# can still split text differently (normaliser, pre-tokeniser, prefix space).
PROBES = (
    "Hello, world! The answer is 42.",
    "  leading spaces and\ttabs\nnew lines",
    "Ünïcödé café — naïve 東京 🙂",
    "x = f(y) + 3.14159; print(x)",
)
_SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "pad_token")
_EXAMPLES = 5  # tokens quoted per difference: enough to recognise the problem, short enough to read


def _chat_template(tok: Any) -> str | None:
    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):  # named templates: compare them all
        return json.dumps(template, sort_keys=True)
    return template


def _template_hash(template: str | None) -> str:
    return hashlib.sha256(template.encode()).hexdigest()[:12] if template else "none"


def _specials(tok: Any) -> dict[str, Any]:
    roles = {role: getattr(tok, role, None) for role in _SPECIAL_ROLES}
    roles["all"] = sorted(str(t) for t in getattr(tok, "all_special_tokens", []))
    return roles


def tokenizer_fingerprint(tok: Any) -> str:
    """A short hash of everything that decides token ids and prompt format: the token→id map, the special
    tokens and the chat template. Cached teacher logits stamped with it are reused only by an identical one."""
    payload = {
        "vocab": sorted(tok.get_vocab().items()),
        "specials": _specials(tok),
        "chat_template": _chat_template(tok),
    }
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()[:16]


@dataclass
class CompatReport:
    """Result of :func:`compare_tokenizers`. ``ok`` means token-level KD between the two is sound."""

    teacher_tokens: int
    student_tokens: int
    shared_tokens: int  # tokens present in both with the same id
    same_vocab: bool
    same_special_tokens: bool
    same_chat_template: bool
    same_tokenization: bool
    differences: list[str] = field(default_factory=list)  # each blocks token-level KD
    notes: list[str] = field(default_factory=list)  # worth knowing, not blocking

    @property
    def ok(self) -> bool:
        return not self.differences

    def summary(self) -> str:
        head = "tokenizers compatible" if self.ok else "tokenizers NOT compatible for token-level distillation"
        lines = [f"{head} (teacher {self.teacher_tokens:,} tokens, student {self.student_tokens:,}, "
                 f"{self.shared_tokens:,} shared with equal ids)"]
        lines += [f"  - {d}" for d in self.differences]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _quote(tokens: list[str]) -> str:
    shown = ", ".join(repr(t) for t in tokens[:_EXAMPLES])
    return shown + (f", … ({len(tokens):,} in all)" if len(tokens) > _EXAMPLES else "")


def _compare_vocab(t_vocab: dict[str, int], s_vocab: dict[str, int]) -> tuple[int, list[str]]:
    moved = sorted((t for t in t_vocab.keys() & s_vocab.keys() if t_vocab[t] != s_vocab[t]), key=t_vocab.get)
    only_t = sorted(t_vocab.keys() - s_vocab.keys(), key=t_vocab.get)
    only_s = sorted(s_vocab.keys() - t_vocab.keys(), key=s_vocab.get)
    shared = len(t_vocab.keys() & s_vocab.keys()) - len(moved)
    problems = []
    if moved:
        problems.append(f"{len(moved):,} tokens have different ids in teacher and student: {_quote(moved)}")
    if only_t:
        problems.append(
            f"{len(only_t):,} teacher tokens are missing from the student (teacher ids from "
            f"{t_vocab[only_t[0]]:,}): {_quote(only_t)}"
        )
    if only_s:
        problems.append(
            f"{len(only_s):,} student tokens are missing from the teacher (student ids from "
            f"{s_vocab[only_s[0]]:,}): {_quote(only_s)}"
        )
    if problems and not moved and shared:
        problems.append(
            f"the first ids agree; the extra tokens are added/special tokens. Token-level KD over the "
            f"{shared:,} shared ids works only if the extra tokens never occur in training text; otherwise "
            "use sequence-level KD (SFT on teacher outputs) or align the tokenizers"
        )
    return shared, problems


def compare_tokenizers(
    teacher_tok: Any,
    student_tok: Any,
    *,
    teacher_logit_width: int | None = None,
    student_logit_width: int | None = None,
) -> CompatReport:
    """Compare vocabularies (the token→id map), special tokens, chat templates and actual tokenisation.

    ``*_logit_width`` are the models' output sizes (``config.vocab_size``) when known: they often exceed the
    tokenizer's length because embedding matrices are padded, which is harmless once logits are cut to the
    shared tokens, but breaks KD code that compares full logit rows.
    """
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    shared, differences = _compare_vocab(t_vocab, s_vocab)
    notes: list[str] = []
    same_vocab = not differences

    t_special, s_special = _specials(teacher_tok), _specials(student_tok)
    for role in _SPECIAL_ROLES:
        if t_special[role] != s_special[role]:
            msg = f"{role} differs: teacher {t_special[role]!r}, student {s_special[role]!r}"
            # Padding is masked out of every loss; a different pad token changes nothing learned.
            (notes if role == "pad_token" else differences).append(msg)
    if t_special["all"] != s_special["all"]:
        differences.append(
            "special token sets differ: teacher only "
            f"{_quote(sorted(set(t_special['all']) - set(s_special['all'])))}; student only "
            f"{_quote(sorted(set(s_special['all']) - set(t_special['all'])))}"
        )
    same_special = t_special == s_special

    t_tpl, s_tpl = _chat_template(teacher_tok), _chat_template(student_tok)
    same_template = t_tpl == s_tpl
    if not same_template:
        differences.append(
            f"chat templates differ (teacher {_template_hash(t_tpl)}, student {_template_hash(s_tpl)}): chat "
            "prompts rendered for the teacher are not in the format the student will be prompted with"
        )
    elif t_tpl is None:
        notes.append("neither tokenizer has a chat template: only raw-text prompts can be used")

    def ids(tok: Any, text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    mismatched = [p for p in PROBES if ids(teacher_tok, p) != ids(student_tok, p)]
    same_tokenization = not mismatched
    if mismatched and same_vocab:
        differences.append(
            f"same vocabulary but text is split differently (normaliser or pre-tokeniser differ), e.g. "
            f"{mismatched[0]!r}"
        )

    if teacher_logit_width is not None and student_logit_width is not None:
        real = max(len(teacher_tok), len(student_tok))
        if teacher_logit_width != student_logit_width and same_vocab:
            notes.append(
                f"logit widths differ (teacher {teacher_logit_width:,}, student {student_logit_width:,}) while "
                f"the tokenizers hold {len(teacher_tok):,} / {len(student_tok):,} tokens: columns beyond "
                f"{real:,} are embedding padding no text maps to; cut both logit rows to the first "
                f"{min(teacher_logit_width, student_logit_width, real):,} columns before KD"
            )
        sides = (("teacher", teacher_logit_width, teacher_tok), ("student", student_logit_width, student_tok))
        for who, width, tok in sides:
            if width < len(tok):
                differences.append(
                    f"{who} model outputs {width:,} logits but its tokenizer has {len(tok):,} tokens: "
                    "some tokens can never be predicted; tokenizer and model do not belong together"
                )

    return CompatReport(
        teacher_tokens=len(teacher_tok),
        student_tokens=len(student_tok),
        shared_tokens=shared,
        same_vocab=same_vocab,
        same_special_tokens=same_special,
        same_chat_template=same_template,
        same_tokenization=same_tokenization,
        differences=differences,
        notes=notes,
    )
