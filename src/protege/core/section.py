"""The base of every recipe section, and the settings of a section that can change a result.

Section types live beside the code they configure. A field whose value cannot change what a stage produces
(how many requests go out at once, how often progress is logged) is marked ``volatile`` — ``Field(...,
json_schema_extra=VOLATILE)`` — and left out of :func:`settings`, so changing it never makes the pipeline
recompute a stage.
"""

from __future__ import annotations

import json
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
