"""The base of every recipe section, and the settings of a section that can change a result.

Section types live beside the code they configure. A field whose value cannot change what a stage produces
(how many requests go out at once, how often progress is logged) is marked ``volatile`` — ``Field(...,
json_schema_extra=VOLATILE)`` — and left out of :func:`settings`, so changing it never makes the pipeline
recompute a stage.

A section holding a text template checks it when the recipe is loaded (:func:`check_template`), so a stray
brace fails before anything is spent rather than at the first prompt.

A field holding a file or folder is marked ``PATH``: :func:`resolve_paths` takes every such field of a recipe from
the recipe file's folder (the one path rule), leaving names that are not paths (embedded models, packaged
datasets, hub ids) as they are.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

VOLATILE = {"volatile": True}
PATH = {"path": True}

# Suffixes that make a relative string a file path even when the file does not exist (so the error can name it).
FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".gguf", ".yaml", ".yml", ".txt")
HF_PREFIX = "hf:"


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, not silently ignored typos."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def settings(section: Any) -> Any:
    """The JSON form of ``section`` without its volatile fields, recursively; None stays None."""
    if not isinstance(section, BaseModel):
        return section
    out = {}
    for name, info in type(section).model_fields.items():
        if _marked(info, "volatile"):
            continue
        value = getattr(section, name)
        if isinstance(value, BaseModel):
            out[name] = settings(value)
        elif isinstance(value, (list, tuple)):
            out[name] = [settings(v) for v in value]
        else:
            out[name] = value
    return json.loads(json.dumps(out, default=str))  # paths and enums as the YAML of the recipe shows them


def check_template(template: str, values: dict[str, Any], key: str) -> str:
    """``template`` rendered with ``values`` (a sample row), or a ValueError naming ``key``, the placeholder at
    fault and the fix; every placeholder must be one of ``values``."""
    allowed = ", ".join("{" + name + "}" for name in values)
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(f"{key}: {exc} in {template!r}; write a literal brace doubled ({{{{ or }}}}); the "
                         f"placeholders are {allowed}") from None
    for name in fields:
        if name not in values:
            shown = "{" + name + "}" if name else "{}"
            raise ValueError(f"{key}: {shown} is not a placeholder here (they are {allowed}); write literal "
                             "braces doubled, {{ and }}")
    try:
        return template.format(**values)
    except (IndexError, KeyError, ValueError, AttributeError) as exc:
        raise ValueError(f"{key}: cannot be filled in ({type(exc).__name__}: {exc}); the placeholders are "
                         f"{allowed}, and literal braces are written doubled, {{{{ and }}}}") from None

def _marked(info: Any, key: str) -> bool:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return bool(extra.get(key))


def resolve_path(value: str | Path, base: Path) -> str | Path:
    """``value`` taken from ``base`` when it is a relative path; a name that is not a path is returned as is.

    A ``Path`` is always a path. A string is one when it starts with ``.``/``~``, ends in a file suffix, or names
    something that exists under ``base``; ``hf:<folder>`` is resolved the same way after its prefix.
    """
    if isinstance(value, Path):
        value = value.expanduser()
        return value if value.is_absolute() else (base / value).resolve()
    if value.startswith(HF_PREFIX):
        inner = value[len(HF_PREFIX):]
        resolved = resolve_path(inner, base)
        return HF_PREFIX + str(resolved) if resolved != inner else value
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    looks = value.startswith((".", "~")) or path.suffix.lower() in FILE_SUFFIXES or (base / path).exists()
    return str((base / path).resolve()) if looks else value


def resolve_paths(section: Any, base: Path) -> None:
    """Resolve, in place, every ``PATH`` field of ``section`` and of the sections inside it from ``base``."""
    if not isinstance(section, BaseModel):
        return
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if _marked(info, "path") and isinstance(value, (str, Path)):
            object.__setattr__(section, name, resolve_path(value, base))
        elif isinstance(value, BaseModel):
            resolve_paths(value, base)
        elif isinstance(value, (list, tuple)):
            for item in value:
                resolve_paths(item, base)
