"""The ``prompts`` stage: instructions for the teacher to answer, gathered into the ``prompts`` table.

A row's ``prompt`` is the user's text. Teacher and student both see it as one user turn rendered by the chat
template (:func:`chat_prompt` here, :func:`protege.train.lm_data.encode_pair` on the student's side), so the
response the teacher gave is trained on after exactly the prompt it answered.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Optional

from pydantic import Field, model_validator

from protege.core.errors import UserError
from protege.models.base import Prompt
from protege.core.section import PATH, Section
from protege.tasks.lm import tables
from protege.core.records import record_id

if TYPE_CHECKING:
    from protege.stage import StageContext


class PromptsConfig(Section):
    """Where the prompts come from."""

    source: Optional[str] = Field(
        None, description="A packaged dataset, a .csv/.tsv/.jsonl/.json/.parquet file, or hf:<hub id or folder>; "
        "its train split becomes the prompts (a test split, if any, is kept as split 'test').",
        json_schema_extra=PATH,
    )
    text_column: str = Field("prompt", description="Column of the source holding the prompt text ('question' for GSM8K).")
    texts: list[str] = Field(default_factory=list, description="Prompts written inline, instead of a source.")
    limit: Optional[int] = Field(None, ge=1, description="Keep only the first N prompts of each split.")
    dev_fraction: float = Field(
        0.0, ge=0, lt=1, description="Share of training prompts moved to split 'dev', chosen by a hash of the text."
    )

    @model_validator(mode="after")
    def _one_source(self) -> "PromptsConfig":
        if (self.source is None) == (not self.texts):
            raise UserError("give exactly one prompt source: 'source' (a dataset or file) or 'texts' (a list)")
        return self


def chat_prompt(text: str) -> Prompt:
    """A prompt text as the single user turn the teacher is asked."""
    return [{"role": "user", "content": text}]


def _split(text: str, dev_fraction: float) -> str:
    # A hash, not a random draw: a prompt keeps its split when the source grows or is re-read.
    bucket = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if bucket < dev_fraction else "train"


def build_prompts(cfg: PromptsConfig) -> list[dict]:
    """The rows of the ``prompts`` table; ids hash the source and the text, and duplicates are dropped."""
    if cfg.source is not None:
        from protege.data.sources import load_source

        splits = load_source(cfg.source, text_column=cfg.text_column, label_column=None)
        texts = {name: frame["text"].tolist() for name, frame in splits.items()}
    else:
        texts = {"train": list(cfg.texts)}
    source = cfg.source or "inline"
    seen: set[str] = set()
    out = []
    for name, items in texts.items():
        for text in items[: cfg.limit]:
            rid = record_id(source, text)
            if rid in seen:  # a repeated prompt would only buy the same answers twice
                continue
            seen.add(rid)
            split = _split(text, cfg.dev_fraction) if name == "train" else name
            out.append({"id": rid, "source": source, "split": split, "prompt": text})
    return out


def run(ctx: "StageContext") -> dict:
    rows = build_prompts(ctx.config)
    if not rows:
        raise UserError("the prompt source is empty: there is nothing for the teacher to answer")
    ctx.run.records.replace(tables.PROMPTS, rows, stage=ctx.name)
    counts = {split: sum(r["split"] == split for r in rows) for split in sorted({r["split"] for r in rows})}
    return {"prompts": len(rows), **counts}
