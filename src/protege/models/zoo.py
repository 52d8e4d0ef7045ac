"""Find and load models by name: the embedded defaults shipped in PyPI packages, local paths, or hub ids.

Where a name points is :mod:`protege.models.resolve`; the embedded defaults are :mod:`protege.models.embedded`;
GGUF files are converted once into :mod:`protege.models.gguf_cache`; layer pruning is
:mod:`protege.models.prune`. This module loads what those point at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from protege.core.errors import UserError
from protege.models.embedded import EMBEDDED, EmbeddedModel, embedded_path, install_hint
from protege.models.gguf_cache import cache_root, cache_valid, converted_gguf_dir, gguf_entry_name, half_student_dir
from protege.models.resolve import ModelNotFoundError, ResolvedModel, resolve


@dataclass(frozen=True)
class EmbeddedStatus:
    """Whether an embedded model is installed and already converted, for ``protege doctor``."""

    model: EmbeddedModel
    present: bool
    path: str | None
    cached: bool
    install_hint: str


def embedded_models() -> list[EmbeddedStatus]:
    """Every embedded model with whether its package is installed and whether a converted copy is cached."""
    out = []
    for model in EMBEDDED.values():
        path = embedded_path(model)
        # Only GGUF-shipped models need converting; the others are ready as installed.
        needs_conversion = path is not None and path.suffix == ".gguf"
        cached = cache_valid(cache_root() / model.name, path) if path and needs_conversion else path is not None
        out.append(
            EmbeddedStatus(
                model=model,
                present=path is not None,
                path=str(path) if path else None,
                cached=cached,
                install_hint=install_hint(model),
            )
        )
    return out


def _load_dir(resolved: ResolvedModel) -> str:
    """The folder (or hub id) transformers should load for a causal LM, converting GGUF files first."""
    if resolved.embedded is not None and resolved.embedded.name == "smollm2-135m-half":
        return str(half_student_dir(resolved))
    if resolved.embedded is not None and resolved.embedded.role == "classifier-student":
        raise UserError(
            f"{resolved.name!r} is an encoder for classification; load it with load_encoder_classifier"
        )
    if resolved.gguf_file is not None:
        return str(converted_gguf_dir(resolved))
    return resolved.location


def _hub_guard(resolved: ResolvedModel, load: Callable[[], Any]) -> Any:
    """Run a from_pretrained call; turn hub failures into an error that says how to work offline."""
    try:
        return load()
    except (OSError, ValueError) as exc:
        if resolved.source != "hub":
            raise ModelNotFoundError(
                f"could not load model {resolved.name!r} from {resolved.location}: {exc}"
            ) from exc
        raise ModelNotFoundError(
            f"could not load {resolved.name!r} from the Hugging Face hub (offline, unreachable, gated or "
            f"misspelt): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}. To use a local copy, "
            f"download it where you have internet (`hf download {resolved.name} --local-dir DIR`) and give "
            f"the folder path instead of the hub id, or use an embedded model ({', '.join(EMBEDDED)})."
        ) from exc


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    """The tokenizer of a model, without loading its weights when that can be avoided."""
    from transformers import AutoTokenizer

    resolved = resolve(name_or_path)
    if resolved.gguf_file is not None:
        entry = cache_root() / gguf_entry_name(resolved)
        source = Path(resolved.location) / resolved.gguf_file
        if cache_valid(entry, source):
            return AutoTokenizer.from_pretrained(entry)
        return AutoTokenizer.from_pretrained(resolved.location, gguf_file=resolved.gguf_file)
    return _hub_guard(resolved, lambda: AutoTokenizer.from_pretrained(resolved.location))


def load_causal_lm(
    name_or_path: str | os.PathLike[str], dtype: torch.dtype = torch.float32
) -> tuple[Any, Any]:
    """Load a causal language model and its tokenizer (embedded name, local folder or .gguf, or hub id)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve(name_or_path)
    where = _load_dir(resolved)

    def load() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        return model, tokenizer

    model, tokenizer = _hub_guard(resolved, load)
    model.eval()
    if tokenizer.pad_token is None:
        # Batching needs a pad id; the EOS token is never attended to under the attention mask.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_encoder_classifier(
    name_or_path: str | os.PathLike[str],
    num_labels: int,
    labels: list[str] | None = None,
    dtype: torch.dtype = torch.float32,
    head: Literal["sequence", "token"] = "sequence",
) -> tuple[Any, Any]:
    """An encoder (e.g. ``minilm-l6``) with a freshly initialised classification head, and its tokenizer.

    ``head="sequence"`` classifies a whole text; ``head="token"`` classifies every token (a tagger).
    """
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if labels is not None and len(labels) != num_labels:
        raise ValueError(f"load_encoder_classifier: {len(labels)} labels given for num_labels={num_labels}")
    resolved = resolve(name_or_path)
    if resolved.gguf_file is not None:
        raise ValueError(f"{resolved.name!r} is a GGUF causal LM, not an encoder for classification")
    label_maps: dict[str, Any] = {}
    if labels is not None:
        label_maps = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}

    def load() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
        # The head is new by design; transformers' "newly initialized weights" warning would only alarm users.
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            auto = AutoModelForTokenClassification if head == "token" else AutoModelForSequenceClassification
            model = auto.from_pretrained(
                resolved.location, num_labels=num_labels, dtype=dtype, **label_maps
            )
        finally:
            hf_logging.set_verbosity(verbosity)
        return model, tokenizer

    return _hub_guard(resolved, load)


def load_masked_lm(name_or_path: str | os.PathLike[str], dtype: torch.dtype = torch.float32) -> tuple[Any, Any]:
    """An encoder (e.g. ``minilm-l6``) with a masked-LM head, and its tokenizer, for continued pre-training.

    Sentence-embedding checkpoints such as MiniLM ship no masked-LM head: it starts fresh (its decoder tied to
    the word embeddings), which is expected, so transformers' "newly initialized weights" warning is muted.
    """
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    resolved = resolve(name_or_path)
    if resolved.gguf_file is not None:
        raise ValueError(f"{resolved.name!r} is a GGUF causal LM, not an encoder for masked-LM pre-training")

    def load() -> tuple[Any, Any]:
        tokenizer = AutoTokenizer.from_pretrained(resolved.location)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model = AutoModelForMaskedLM.from_pretrained(resolved.location, dtype=dtype)
        finally:
            hf_logging.set_verbosity(verbosity)
        return model, tokenizer

    model, tokenizer = _hub_guard(resolved, load)
    if tokenizer.mask_token_id is None:
        raise ValueError(f"{resolved.name!r} has no mask token: masked-LM pre-training needs an encoder "
                         "tokenizer with one (e.g. a BERT-style model)")
    return model, tokenizer
