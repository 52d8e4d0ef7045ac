"""The language-model family: a student LM learns from a teacher's answers and distributions.

Stages, in run order (see :mod:`protege.tasks.lm.family`): prompts → respond → cache_logits → train_lm →
evaluate_lm → report. Its tables and artifacts are listed in :mod:`protege.tasks.lm.tables`.
"""
