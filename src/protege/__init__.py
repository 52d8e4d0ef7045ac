"""protege: distil large language models into small, fast students.

``protege.run(recipe, **overrides)`` runs a recipe and returns its :class:`protege.api.Run`; ``protege.open_run``
opens one made earlier. Both are imported on first use, so ``import protege`` stays instant.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "open_run", "run"]


def __getattr__(name: str) -> Any:
    if name in ("run", "open_run", "Run"):
        from protege import api

        return getattr(api, name)
    raise AttributeError(f"module 'protege' has no attribute {name!r}")
