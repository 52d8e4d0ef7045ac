"""protege: distil large language models into small, fast students."""

__version__ = "0.1.0"
