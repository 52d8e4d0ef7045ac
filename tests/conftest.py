"""Shared test set-up: this folder is on sys.path, so any test can ``import tiny`` for small stand-in models."""
