"""The ``absa`` family: aspect-based sentiment (aspect term + polarity pairs), its tagger student, and the
normalisation and refinement of teacher-written labels."""
