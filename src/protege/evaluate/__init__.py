"""Evaluation kit any family uses: metrics, speed measurement, LM fit and generation metrics, the report kit."""
