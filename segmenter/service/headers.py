"""Defensive HTTP headers: what a browser may do with the service's answers.

Every answer says ``X-Content-Type-Options: nosniff`` (a JSON error or a PNG
is never run as a script or a page).  HTML pages (the dashboard, error pages)
also get a Content-Security-Policy that loads scripts, styles and images from
this service only and forbids inline script and style (the dashboard's are
static files), a frame policy that no site may frame them (clickjacking), and
no Referer sent with their links.
"""

from __future__ import annotations

from flask import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def defend(response: Response) -> Response:
    """``response`` with nosniff, and with the page policies when it is HTML (an ``after_request`` hook)."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if response.mimetype == "text/html":
        for name, value in PAGE_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
