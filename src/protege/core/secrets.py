"""Secrets (API keys) never leave the process in clear: every form a secret can take in text is replaced by ``***``.

A key is registered once, where it is read (:func:`register`); from then on :func:`scrub` removes it from any
text, and every log record, console line, JSON event and error message protege writes passes through it. A key
can reach text in more forms than its raw spelling, and each is covered:

* raw, and stripped of surrounding whitespace;
* repr-escaped (``'sk-abc\\n'`` shows a trailing newline as backslash-n), as in an exception's repr;
* as the repr of bytes, the way an HTTP library quotes an illegal header value (``b'Bearer sk-abc\\n'``);
* JSON-escaped, as in a JSON event or a server's error body;
* URL-encoded (``%2B`` for ``+``, ``%0A`` for a newline; also with ``+`` for spaces), as in a logged URL.

Forms shorter than :data:`MIN_LENGTH` characters are not scrubbed (they would mangle ordinary text); an API key
is far longer.
"""

from __future__ import annotations

import json
import logging
import threading
from urllib.parse import quote, quote_plus

MIN_LENGTH = 6
MASK = "***"
_forms: list[str] = []  # every registered form, longest first
_lock = threading.Lock()
_factory_installed = False


def forms(secret: str) -> set[str]:
    """Every spelling of ``secret`` (and of it stripped) that text can carry."""
    out: set[str] = set()
    for value in {secret, secret.strip()}:
        out |= {value, repr(value)[1:-1], repr(value.encode())[2:-1], json.dumps(value)[1:-1],
                quote(value, safe=""), quote_plus(value, safe="")}
    return {f for f in out if len(f) >= MIN_LENGTH}


def register(secret: str) -> None:
    """Scrub ``secret`` in every form from now on, in this process's text output and log records."""
    global _forms
    with _lock:
        _forms = sorted(set(_forms) | forms(secret), key=len, reverse=True)
        _install_log_factory()


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for form in _forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def _install_log_factory() -> None:
    """Scrub each log record as it is made, whichever logger or handler later writes it."""
    global _factory_installed
    if _factory_installed:
        return
    make = logging.getLogRecordFactory()

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = make(*args, **kwargs)
        if _forms:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a caller's broken format: logging reports it later, as it would
                return record
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True
