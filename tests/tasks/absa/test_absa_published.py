"""Normalisation against DS²-ABSA's published GPT-3.5 files: our grounding of each raw ``label`` should agree
with the ``aspects`` the authors published for it. Skipped when the shared data is absent.

Measured (conflict kept, as in the published files; pairs = (sentence, lower-cased term, polarity)); "changed"
is the share of rows whose label differs from the raw one, and of raw pairs not kept verbatim:

===================  =====  =====  =====  =====  ===================  ====================
file                 rows   P      R      F1     rows changed         raw pairs changed
                                                 (published / ours)   (published / ours)
===================  =====  =====  =====  =====  ===================  ====================
lap_all2_instance    3,828  0.962  0.982  0.972  31.3 % / 31.3 %      16.4 % / 16.3 %
res15_all2_instance  1,008  0.994  0.998  0.996  17.1 % / 17.1 %       8.6 % /  8.6 %
res15_all5_instance  4,700  0.989  0.997  0.993  15.1 % / 15.1 %       7.8 % /  7.8 %
===================  =====  =====  =====  =====  ===================  ====================

The paper's 17–35 % is the row-level share. Where we differ, ours grounds terms the published normalisation
dropped ("graphical user interface (GUI)" -> "graphical user interface", "spicy Italian cheese" -> "Italian
cheese") and refuses stopword groundings it accepted ("wine selection" -> "in").
"""

from __future__ import annotations

from collections import Counter

import pytest

from protege.data.packaged import SHARED_DATA
from protege.tasks.absa.data import load_ds2_synthetic
from protege.tasks.absa.ground import normalise
from protege.tasks.absa.metrics import pair_scores
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.task import AbsaTask

FOLDER = SHARED_DATA / "teacher_outputs" / "ds2_gpt35"
# file -> minimum pair F1 (a little below the measured value above)
THRESHOLDS = {"lap_all2_instance": 0.96, "res15_all2_instance": 0.985, "res15_all5_instance": 0.98}


def _changed_share(rows, labels) -> tuple[float, float]:
    """Share of rows whose label is not the raw one (as a multiset), and of raw pairs not kept verbatim."""
    rows_changed, raw, kept = 0, 0, 0
    for row, label in zip(rows, labels):
        pairs = [p for p in row.raw if isinstance(p, (list, tuple)) and len(p) == 2]
        before = Counter((str(p[0]), str(p[1])) for p in pairs)
        after = Counter((a.term, a.polarity) for a in label)
        rows_changed += before != after
        raw += len(row.raw)
        kept += sum((before & after).values())
    return rows_changed / len(rows), 1 - kept / raw


@pytest.mark.skipif(not FOLDER.is_dir(), reason="shared DS2-ABSA synthetic files absent")
@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_normalising_raw_labels_reproduces_the_published_aspects(name):
    task = AbsaTask(drop_conflict=False)  # the published normalised labels keep 'conflict'
    loaded = load_ds2_synthetic(name, task, folder=FOLDER)
    assert not loaded.issues, loaded.issues.summary()  # the published aspects are clean
    rows = loaded.rows
    ours = {r.id: normalise(r.sentence, parse_pairs(list(r.raw)).pairs, task, r.id).aspects for r in rows}
    published = {r.id: r.aspects for r in rows}
    scores = pair_scores(published, ours)
    same_span = sum(len({(a.start, a.end, a.polarity) for a in ours[i]} & {(a.start, a.end, a.polarity)
                                                                            for a in published[i]})
                    for i in ours) / scores.gold
    pub_rows, pub_pairs = _changed_share(rows, [r.aspects for r in rows])
    our_rows, our_pairs = _changed_share(rows, [ours[r.id] for r in rows])
    print(f"{name}: P={scores.precision:.3f} R={scores.recall:.3f} F1={scores.f1:.3f} "
          f"same span={same_span:.3f}; "
          f"rows changed {pub_rows:.3f} published / {our_rows:.3f} ours; raw pairs changed or dropped "
          f"{pub_pairs:.3f} / {our_pairs:.3f}")
    assert scores.f1 >= THRESHOLDS[name]
    assert same_span >= THRESHOLDS[name]
    assert 0.10 <= our_rows <= 0.40 and abs(our_rows - pub_rows) < 0.02
    assert abs(our_pairs - pub_pairs) < 0.02
