"""Which label of the synthetic rows a stage learns from: the current one after the stages that have run.

The synthetic rows' label is, in order of precedence: ``refined`` (after noisy self-training), ``annotated``
(relabelled by the teacher; polarity mode also gives soft targets), ``normalised`` (synthesize's own
normalisation), ``published`` (an imported file's normalised label) or ``raw`` (the teacher's pairs, only
those with a verbatim term and a canonical polarity). ``auto`` takes the first that exists.
"""

from __future__ import annotations

import json
from typing import Literal, Optional

from protege.core.run import Run
from protege.tasks.absa import tables as t
from protege.tasks.absa.rows import examples_of
from protege.tasks.absa.student import raw_aspects, raw_label_of
from protege.tasks.absa.task import AbsaExample, AbsaTask

Source = Literal["auto", "refined", "annotated", "normalised", "published", "raw", "none"]
SOURCES = ("refined", "annotated", "normalised", "published", "raw", "none")


def synthetic_examples(
    run: Run, source: Source, task: AbsaTask, *, exclude: tuple[str, ...] = ()
) -> tuple[str, list[AbsaExample], Optional[dict]]:
    """``(source used, examples, polarity distributions by id or None)``; a missing source is an error."""
    have = set(run.records.tables())
    if source == "auto":
        source = next(
            (s for s in ("refined", "annotated") if s not in exclude and getattr(t, s.upper()) in have),
            "normalised" if t.SYNTHETIC in have else "none",
        )
    if source == "none":
        return source, [], None
    table = {"refined": t.REFINED, "annotated": t.ANNOTATED}.get(source, t.SYNTHETIC)
    if table not in have:
        raise ValueError(
            f"the synthetic label source {source!r} needs table {table!r}, which this run does not have; "
            "run the stage that writes it or choose another source (auto picks what exists)"
        )
    frame = run.records.read(table)
    dists = None
    if source == "annotated" and "distributions" in frame:
        dists = {i: json.loads(d) for i, d in zip(frame["id"], frame["distributions"]) if d}
    if source == "published":
        frame = frame[frame["published"].astype(bool)]
        return source, examples_of(frame, "published"), None
    if source == "raw":
        return (
            source,
            [
                AbsaExample(i, s, raw_aspects(s, raw_label_of(r), task))
                for i, s, r in zip(frame["id"], frame["sentence"], frame["raw_label"])
            ],
            None,
        )
    return source, examples_of(frame), dists or None
