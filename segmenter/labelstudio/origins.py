"""Which scheme, host and port a URL names: a key is sent only where its Label Studio is."""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """The scheme, lower-case host and port (default ports filled in) of ``url``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs name the same scheme, host and port (never true for an empty host)."""
    first = origin(a)
    return bool(first[1]) and first == origin(b)
