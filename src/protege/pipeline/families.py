"""The registry of task families: adding a family is one new package under ``protege.tasks`` and one line here."""

from __future__ import annotations

from protege.stage import Family
from protege.tasks.absa.family import FAMILY as ABSA
from protege.tasks.classify.family import FAMILY as CLASSIFICATION
from protege.tasks.lm.family import FAMILY as LM
from protege.tasks.reasoning.family import FAMILY as REASONING

FAMILIES: dict[str, Family] = {f.name: f for f in (CLASSIFICATION, LM, REASONING, ABSA)}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise KeyError(f"no task family {name!r}; the families are {', '.join(FAMILIES)}")
    return FAMILIES[name]


def register(fam: Family) -> None:
    """Add a family at run time (tests, plugins); recipes that name it parse from then on."""
    FAMILIES[fam.name] = fam
