"""Basic auth: which paths it guards and whether an ``Authorization`` header passes.

One rule for the Flask app (``install``: a 401 before any blueprint's route
runs) and for the gunicorn worker (``segmenter.service.buffering``, which answers
401 before it reads a body), so the two can never disagree.  With
``BASIC_AUTH_USER`` set, every path is guarded except ``/webhook``: Label
Studio sends no Basic auth on event webhooks (the app accepts those only for
projects connected through an authenticated ``/setup``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass

from flask import Flask, Response, request

from segmenter.config import Settings

# Label Studio's event webhooks carry no credentials (see the module docstring).
OPEN_PATHS = frozenset({"/webhook"})
CHALLENGE = 'Basic realm="ml-backend"'
REFUSAL = "authentication required"


@dataclass(frozen=True)
class BasicAuth:
    """The configured credentials; no user means Basic auth is off."""

    user: str = ""
    password: str = ""

    @classmethod
    def of(cls, settings: Settings) -> BasicAuth:
        """``BASIC_AUTH_USER`` / ``BASIC_AUTH_PASS`` of ``settings``."""
        return cls(settings.basic_auth_user, settings.basic_auth_pass)

    def guards(self, path: str) -> bool:
        """Whether a request for ``path`` (the path inside the app) needs credentials."""
        return bool(self.user) and path not in OPEN_PATHS

    def accepts(self, authorization: str | bytes | None) -> bool:
        """Whether an ``Authorization`` header value carries the configured user and password.

        Compared as UTF-8 bytes in constant time, user and password both, so neither
        the timing nor a non-ASCII value tells an attacker anything.
        """
        if not self.user:
            return True
        if isinstance(authorization, bytes):
            authorization = authorization.decode("latin-1")
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        user_ok = hmac.compare_digest(user, self.user.encode())
        password_ok = hmac.compare_digest(password, self.password.encode())
        return bool(sep) and user_ok and password_ok


def install(app: Flask, basic_auth: BasicAuth) -> None:
    """Guard every route of ``app`` (blueprints included) with ``basic_auth``: the app's one 401."""

    @app.before_request
    def require_auth() -> Response | None:
        if basic_auth.guards(request.path) and not basic_auth.accepts(request.headers.get("Authorization")):
            return Response(REFUSAL, 401, {"WWW-Authenticate": CHALLENGE})
        return None

    app.extensions["segmenter.auth"] = basic_auth


def authenticated(app: Flask) -> bool:
    """Whether the current request carries the credentials (always, with Basic auth off); for the open
    ``/webhook``, which trusts an authenticated request more than an anonymous one."""
    return app.extensions["segmenter.auth"].accepts(request.headers.get("Authorization"))
