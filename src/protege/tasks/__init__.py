"""Tasks: what a model must do, how it is prompted and how its answers are scored."""
