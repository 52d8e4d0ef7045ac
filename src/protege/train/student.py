"""The student language model: any HF causal LM, or the teacher itself with decoder layers removed.

Deriving the student from the teacher by layer pruning (``smollm2-135m-half`` keeps every other layer of the
embedded teacher) gives it the teacher's tokenizer, embeddings and head, so token-level KD applies and training
starts from a model that already speaks the language.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Literal, Optional, Union

import torch
from pydantic import Field

from protege.core.errors import UserError
from protege.core.section import PATH, Section

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class StudentConfig(Section):
    """Which model becomes the student."""

    model: Optional[str] = Field(
        "smollm2-135m-half", description="Embedded name, local folder or hub id of a causal LM (ignored when "
        "prune_teacher is set).", json_schema_extra=PATH)
    prune_teacher: Optional[Union[Literal["every_other"], list[int]]] = Field(
        None, description="Build the student from the recipe's teacher keeping these decoder layers (indices, "
        "or every_other).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Weights dtype.")

    def named_models(self) -> dict[str, str]:
        """The model to check before anything is spent (none when the student is cut from the teacher)."""
        return {"model": self.model} if self.model and self.prune_teacher is None else {}


def kept_layers(spec: Union[str, list[int]], total: int) -> list[int]:
    if spec == "every_other":
        return list(range(0, total, 2))
    return list(spec)


def load_student(config: StudentConfig, teacher_model: Optional[str] = None) -> tuple[Any, Any]:
    """(model, tokenizer) of the student, in train mode."""
    from protege.models.prune import prune_layers
    from protege.models.zoo import load_causal_lm

    dtype = DTYPES[config.dtype]
    if config.prune_teacher is not None:
        if teacher_model is None:
            raise UserError("student.prune_teacher derives the student from the teacher: add a 'teacher:' section "
                             "naming the teacher model")
        model, tokenizer = load_causal_lm(teacher_model, dtype=dtype)
        model = prune_layers(model, kept_layers(config.prune_teacher, model.config.num_hidden_layers))
    elif config.model is not None:
        model, tokenizer = load_causal_lm(config.model, dtype=dtype)
    else:
        raise UserError("student: give model (a name, folder or hub id) or prune_teacher")
    return model.train(), tokenizer


def save_causal_lm(model: Any, tokenizer: Any, target: "os.PathLike[str]") -> None:
    """A plain transformers folder (LoRA merged in), written beside and renamed into place."""
    target = Path(target)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
