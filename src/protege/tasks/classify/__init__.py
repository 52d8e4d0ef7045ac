"""The classification family: a teacher labels texts, a small encoder learns its label distributions.

Stages, in run order (see :mod:`protege.tasks.classify.family`): data → prepare_teacher → annotate →
first_student → select → train → augment → evaluate → report. Its tables and artifacts are listed in
:mod:`protege.tasks.classify.tables`.
"""
