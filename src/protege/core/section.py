"""The base of every recipe section, and the settings of a section that can change a result.

Section types live beside the code they configure. A field whose value cannot change what a stage produces
(how many requests go out at once, how often progress is logged) is marked ``volatile`` — ``Field(...,
json_schema_extra=VOLATILE)`` — and left out of :func:`settings`, so changing it never makes the pipeline
recompute a stage.

A section holding a text template checks it when the recipe is loaded (:func:`check_template`), so a stray
brace fails before anything is spent rather than at the first prompt.
"""

from __future__ import annotations

import json
import string
from typing import Any

from pydantic import BaseModel, ConfigDict

VOLATILE = {"volatile": True}


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, not silently ignored typos."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def settings(section: Any) -> Any:
    """The JSON form of ``section`` without its volatile fields, recursively; None stays None."""
    if not isinstance(section, BaseModel):
        return section
    out = {}
    for name, info in type(section).model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("volatile"):
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
