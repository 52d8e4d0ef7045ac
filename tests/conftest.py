"""Shared test set-up: this folder is on sys.path, so any test can ``import tiny`` for small stand-in models.

Under CI (``CI`` set) hypothesis draws the same examples every run, so a landing never hinges on a lucky draw;
locally it keeps exploring new ones.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
