"""Rationale pre-training of the tagger's encoder: masked-LM continued pre-training before the tagger is fit.

FSA distillation pre-trains a small model on what a teacher wrote about reviews, then fine-tunes it on
aspect-sentiment extraction. For an encoder student the pre-training is a masked LM over the texts
(:mod:`protege.train.mlm`, on the one loop); ``corpus`` says which texts:

- ``rationales``: each usable rationale of the run's ``rationales`` table as the sentence pair (review, teacher
  text) — the teacher's knowledge in the student's input;
- ``reviews``: the same reviews alone, once each — domain adaptation without any teacher, the control that
  says whether a gain comes from the teacher or merely from reading reviews.

``teachers`` keeps the rationales of some teachers only (a run may hold several). The pre-trained encoder is a
plain transformers folder (``artifacts/pretrained_encoder``) that every tagger of the train stage starts from.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

from pydantic import Field

from protege.core.run import Run
from protege.core.section import Section
from protege.train.loop import LoopConfig
from protege.train.loop import train as train_loop
from protege.train.mlm import MaskedLMObjective, MaskedTextSource, Text


def _default_loop() -> LoopConfig:
    return LoopConfig(steps=100, lr=5e-5, micro_batch_size=16, schedule="linear", warmup_steps=10,
                      weight_decay=0.01, log_every=10, tracker=None)


class PretrainConfig(Section):
    """Masked-LM continued pre-training of the encoder before the tagger is trained."""

    corpus: Literal["rationales", "reviews"] = Field(
        "rationales", description="rationales: (review, teacher text) pairs; reviews: the same reviews alone "
        "(the domain-adaptation control, no teacher).",
    )
    kinds: list[Literal["analysis", "rewrite"]] = Field(
        default_factory=lambda: ["analysis", "rewrite"], min_length=1,
        description="Which rationales are used (corpus: rationales).",
    )
    teachers: Optional[list[str]] = Field(
        None, description="Use only these teachers' rationales (as recorded in the table, e.g. "
        "mixtral-8x7b-instruct); null: all.",
    )
    mask_prob: float = Field(0.15, gt=0, lt=1, description="Share of tokens masked.")
    max_length: int = Field(256, ge=16, description="Tokens per text (review + rationale); the rest is cut.")
    loop: LoopConfig = Field(default_factory=_default_loop, description="The masked-LM training loop.")


def corpus_texts(frame: Any, config: PretrainConfig) -> tuple[list[Text], dict]:
    """The texts of ``config.corpus`` from a ``rationales`` table (a data frame), and what they hold."""
    rows = [r for r in frame.to_dict("records") if r["usable"] and r["kind"] in config.kinds
            and (config.teachers is None or r["teacher"] in config.teachers)]
    if not rows:
        raise ValueError(
            f"train.pretrain: no usable rationale of kinds {config.kinds}"
            + (f" from teachers {config.teachers}" if config.teachers else "")
            + " in the rationales table; check rationales.kinds / train.pretrain.teachers"
        )
    info = {"corpus": config.corpus, "teachers": sorted({r["teacher"] for r in rows})}
    if config.corpus == "reviews":
        reviews = list(dict.fromkeys(r["review"] for r in rows))
        return list(reviews), {**info, "texts": len(reviews)}
    return [(r["review"], r["text"]) for r in rows], {**info, "texts": len(rows)}


def pretrain_encoder(student: str, texts: Sequence[Text], config: PretrainConfig, folder: Path, *,
                     run: Optional[Run] = None, name: str = "pretrained_encoder", seed: int = 0) -> dict:
    """Continue pre-training ``student`` as a masked LM on ``texts``; save it to ``folder``; a summary."""
    from protege.models.zoo import load_masked_lm

    model, tokenizer = load_masked_lm(student)
    source = MaskedTextSource(texts, tokenizer, config.max_length, config.mask_prob, seed)
    result = train_loop(model, MaskedLMObjective(), source, config.loop.model_copy(update={"seed": seed}),
                        run=run, name=name)
    if run is not None:
        # Left behind, the checkpoints would make the next pre-training under this name resume instead.
        shutil.rmtree(run.artifacts / "checkpoints" / name, ignore_errors=True)
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    result.model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    first = result.history[0] if result.history else {}
    return {"steps": result.steps, "seconds": round(result.seconds, 1),
            "first_loss": first.get("loss"), "last_loss": result.metrics.get("loss"),
            "last_mlm_accuracy": result.metrics.get("mlm_accuracy")}
