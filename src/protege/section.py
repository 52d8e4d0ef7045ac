"""The base of every recipe section, in a module of its own.

Section types live beside the code they configure, and ``protege.recipe`` imports them to build ``Recipe``. If
they took ``Section`` from ``protege.recipe``, importing one of them first would import ``protege.recipe``,
which would import it back half-initialised; taking it from here breaks that cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every recipe section: unknown keys are errors, not silently ignored typos."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
