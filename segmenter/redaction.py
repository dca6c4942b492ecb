"""Keeping secrets out of every line a person or another process can read.

Two kinds of secret can reach a message: credentials written into a URL
(``http://user:password@host``) and the keys the process holds (the Label
Studio key, ``/setup`` tokens, exchanged access tokens, the Basic-auth
password).  ``redact`` masks both; ``remember`` registers a key the moment the
process starts to hold it; ``install`` makes every log record of the process
pass through ``redact`` (message, arguments and traceback), whichever logger
or handler emits it, so no call site has to remember to scrub.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# scheme://userinfo@ — the userinfo part, up to the first '@' before the host.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]*@")
# Keys shorter than this are not masked in free text: masking "abc" everywhere would
# mangle messages and protects nothing (such a key is rejected by Label Studio anyway).
_MIN_SECRET = 6

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False


def remember(*secrets: str | None) -> None:
    """Register keys this process holds, so ``redact`` masks them from now on."""
    with _lock:
        _secrets.update(s for s in secrets if s and len(s) >= _MIN_SECRET)


def redact(text: str) -> str:
    """``text`` with URL credentials and every remembered key replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(lambda m: m.group(1) + MASK + "@", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def has_credentials(url: str) -> bool:
    """Whether ``url`` carries a user name or password before its host."""
    return "@" in (urlsplit(url).netloc or "")


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` removed from its host part."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _redacting_factory(base: logging.LogRecordFactory) -> logging.LogRecordFactory:
    def make(*args: object, **kwargs: object) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave the record for logging to report
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return record

    return make


def install() -> None:
    """Redact every log record made in this process from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
