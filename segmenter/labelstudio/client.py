"""The REST client of one Label Studio: keys, the project's label config, the export.

Built on ``label-studio-sdk``.  The SDK tells a legacy key (sent as
``Authorization: Token <key>``) from a Personal Access Token (a JWT refresh
token, traded at ``/api/token/refresh/`` for a short-lived access token sent as
``Bearer``), caches the access token, refreshes it one thread at a time, and
makes the REST calls (the JSON export through its exports API).  Our own code
remains only where the SDK falls short, each place saying why.  Reading task
files (allow-lists, size caps, the download cache) is ``segmenter.labelstudio.fetching``;
it asks ``LabelStudioClient.auth_header`` for the header to send.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlencode, urljoin

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from label_studio_sdk.tokens.client_ext import TokensClientExt
from label_studio_sdk.types.token_refresh_response import TokenRefreshResponse

from segmenter import redaction
from segmenter.labelstudio.errors import TRANSIENT_STATUSES, LabelStudioError
from segmenter.labelstudio.origins import same_origin

logger = logging.getLogger(__name__)

REFRESH_PATH = "api/token/refresh/"
# Refresh this long before the access token expires (at most a quarter of its lifetime).
REFRESH_MARGIN_S = 30.0
LEGACY_DISABLED_HINT = (
    "LABEL_STUDIO_API_KEY is a legacy token but legacy tokens are disabled in this Label Studio "
    "organization: use a Personal Access Token (Account & Settings) instead, or enable legacy tokens"
)
EXCERPT_CHARS = 200
_T = TypeVar("_T")




def _body_text(body: object) -> str:
    """An error body (parsed JSON or text) as at most ``EXCERPT_CHARS`` characters."""
    text = body if isinstance(body, str) else json.dumps(body)
    return text[:EXCERPT_CHARS].strip()


def _excerpt(response: httpx.Response) -> str:
    """The first characters of a response body, read without loading a huge one."""
    try:
        head = next(response.iter_bytes(EXCERPT_CHARS * 4), b"")
    except (httpx.HTTPError, httpx.StreamError):
        return ""
    return head.decode("utf-8", "replace")[:EXCERPT_CHARS].strip()


class _Tokens(TokensClientExt):
    """The SDK's key handling (legacy or Personal Access Token, one cached access token, one
    refresh at a time), with what a long-running service needs on top."""

    def __init__(self, base_url: str, api_key: str, client_wrapper: object, clock: Callable[[], float]) -> None:
        super().__init__(base_url=base_url, api_key=api_key, client_wrapper=client_wrapper)
        self._clock = clock
        self._refresh_at: float | None = None

    @property
    def api_key(self) -> str:
        # The SDK refreshes only once the local clock passes ``exp``: a token about to expire,
        # or expired by Label Studio's clock, would still go out; refresh a margin before instead.
        if self._use_legacy_token:
            return self._api_key
        with self._token_refresh_lock:
            due = self._refresh_at is not None and self._clock() >= self._refresh_at
            if not self._access_token or due:
                self._set_access_token(self.refresh().access)
            return self._access_token

    def forget(self, rejected: str) -> None:
        """Drop the access token Label Studio just refused (the SDK never retries a 401)."""
        with self._token_refresh_lock:
            if self._access_token == rejected:
                self._access_token = None

    def _set_access_token(self, token: str) -> None:
        # The SDK keeps no margin; measure the lifetime as exp - iat, immune to clock skew.
        redaction.remember(token)
        super()._set_access_token(token)
        claims = self._decode_jwt_payload(token) or {}
        exp, iat = claims.get("exp"), claims.get("iat")
        self._refresh_at = None
        if isinstance(exp, (int, float)):
            now = self._clock()
            lifetime = exp - iat if isinstance(iat, (int, float)) else exp - now
            if lifetime > 0:
                self._refresh_at = now + lifetime - min(REFRESH_MARGIN_S, lifetime / 4)
        logger.debug("exchanged the Personal Access Token for an access token")

    def refresh(self, refresh_token: str | None = None) -> TokenRefreshResponse:
        # The SDK's refresh raises a bare JSONDecodeError on a non-JSON answer and lets
        # network errors through unexplained; ours tells the operator what to change.
        url = self._base_url + REFRESH_PATH
        http = self._client_wrapper.httpx_client.httpx_client
        try:
            response = http.post(url, json={"refresh": refresh_token or self._api_key})
        except httpx.HTTPError as exc:
            raise LabelStudioError(redaction.redact(f"cannot reach Label Studio at {url}: {exc}"),
                                   transient=isinstance(exc, httpx.TransportError)) from None
        if response.status_code != 200:
            advice = (
                "it may be revoked or expired: create a new one in Account & Settings"
                if response.status_code == 401
                else "this Label Studio may not support Personal Access Tokens"
            )
            raise LabelStudioError(
                redaction.redact(
                    f"Label Studio refused the Personal Access Token in LABEL_STUDIO_API_KEY "
                    f"(HTTP {response.status_code} from {url}: {_excerpt(response)}); {advice}"
                ),
                status=response.status_code,
                transient=response.status_code in TRANSIENT_STATUSES,
            )
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise LabelStudioError(f"{url} answered without an access token") from None
        if not isinstance(access, str) or not access:
            raise LabelStudioError(f"{url} answered without an access token")
        return TokenRefreshResponse(access=access)


class LabelStudioClient:
    """Authenticated access to one Label Studio; safe to share between threads."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        if redaction.has_credentials(url):
            raise LabelStudioError(
                f"Label Studio URL {redaction.without_credentials(url)!r} must not contain a user name "
                "or password: the backend authenticates with its key"
            )
        if not url.startswith(("http://", "https://")):
            raise LabelStudioError(f"Label Studio URL {url!r} must start with http:// or https://")
        if not api_key or not api_key.strip():
            raise LabelStudioError(f"no API key for Label Studio at {url}: set LABEL_STUDIO_API_KEY")
        self._url = url.rstrip("/")
        self._key = api_key.strip()
        redaction.remember(self._key)
        self._clock: Callable[[], float] = time.time
        # With a trailing slash the SDK keeps a base path (Label Studio under /ls/) when it
        # joins a path; max_retries=0: a failing Label Studio fails the training at once.
        base = self._url + "/"
        try:
            self._sdk = LabelStudio(base_url=base, api_key=self._key, timeout=timeout, max_retries=0)
            wrapper = self._sdk._client_wrapper
            self._tokens = wrapper._tokens_client = _Tokens(base, self._key, wrapper, lambda: self._clock())
        except ApiError as exc:  # the SDK refuses an expired Personal Access Token up front
            detail = exc.body.get("detail") if isinstance(exc.body, dict) else exc.body
            raise LabelStudioError(
                f"LABEL_STUDIO_API_KEY cannot be used: {detail} (create a new one in Account & Settings)"
            ) from None

    @property
    def url(self) -> str:
        """The Label Studio base URL, without a trailing slash."""
        return self._url

    @property
    def uses_personal_token(self) -> bool:
        """True when the key is a Personal Access Token (JWT), False for a legacy key."""
        return not self._tokens._use_legacy_token

    @property
    def key_id(self) -> str:
        """A short hash that tells this client's key from others without revealing it."""
        return hashlib.sha256(self._key.encode()).hexdigest()[:16]

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` points at this Label Studio (same scheme, host and port)."""
        return same_origin(url, self._url)

    def absolute(self, url_or_path: str) -> str:
        """``url_or_path`` joined to the Label Studio URL as Label Studio itself does."""
        return urljoin(self._url + "/", url_or_path)

    def scrub(self, text: str) -> str:
        """``text`` with the key, the access token and URL credentials masked, for messages and logs."""
        return redaction.redact(text)

    def auth_header(self, rejected: str | None = None) -> str:
        """The ``Authorization`` value to send to this Label Studio, e.g. to download a task file.

        Pass the value Label Studio just answered 401 to, and a Personal Access Token is
        exchanged again for a new access token.  Raises ``LabelStudioError`` when it cannot be.
        """
        if rejected is not None and rejected.startswith("Bearer "):
            self._tokens.forget(rejected.removeprefix("Bearer "))
        return self._sdk._client_wrapper.get_headers()["Authorization"]

    def auth_hint(self, status: int, body: str = "") -> str:
        """A sentence telling the operator what to change when ``status`` is an auth failure."""
        if status not in (401, 403):
            return ""
        if "legacy token" in body.lower():
            return LEGACY_DISABLED_HINT
        if self.uses_personal_token:
            return "Label Studio refused the access token obtained from LABEL_STUDIO_API_KEY"
        return "Label Studio refused LABEL_STUDIO_API_KEY"

    def get_json(self, path: str) -> object:
        """GET a Label Studio API path and return its JSON; any failure is a LabelStudioError."""
        url = self.absolute(path)
        if not self.same_origin(url):
            raise LabelStudioError(f"refusing to send the Label Studio token to {url}")
        http = self._sdk._client_wrapper.httpx_client

        def get(options: dict) -> httpx.Response:
            response = http.request(method="GET", base_url=url, request_options=options)
            if response.status_code >= 400:
                raise ApiError(status_code=response.status_code, body=_excerpt(response))
            return response

        response = self._send(url, get)
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type")
            raise LabelStudioError(
                self.scrub(f"Label Studio answered GET {url} with non-JSON ({kind}): {_excerpt(response)}")
            ) from None

    def export_tasks(self, project_id: int) -> list[dict]:
        """The project's annotated tasks with their annotations, from the JSON export.

        The export never makes Label Studio call /predict on us, unlike ``/api/tasks/{id}``.
        """
        url = self.absolute(f"/api/projects/{int(project_id)}/export?exportType=JSON")
        exports = self._sdk.projects.exports.with_raw_response

        def export(options: dict) -> bytes:
            # The SDK names the format ``export_type``, which Label Studio 1.23 reads only as a
            # deprecated fallback: send ``exportType``, as Label Studio's own export link does.
            options["additional_query_parameters"] = {"exportType": "JSON"}
            with exports.download_sync(int(project_id), request_options=options) as answer:
                return b"".join(answer.data)

        body = self._send(url, export)
        try:
            tasks = json.loads(body)
        except ValueError:
            raise LabelStudioError(
                self.scrub(f"Label Studio answered GET {url} with non-JSON: {body[:EXCERPT_CHARS]!r}")
            ) from None
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise LabelStudioError(f"the export of project {project_id} is not a list of tasks")
        return tasks

    def tasks_page(self, project_id: int, page: int = 1, page_size: int = 50, only: list[int] | None = None,
                   after: int | None = None, resolve_uri: bool = True) -> tuple[list[dict], int]:
        """One page of a project's tasks with their annotations and predictions, and how many tasks match.

        Read through the Data Manager's task list with ``review=true``: without it,
        Label Studio calls /predict on us for every task of the page that has no
        prediction yet (as ``/api/tasks/{id}`` does).  ``fields=all`` still brings
        the annotations and predictions.  ``only`` selects tasks by id; ``after``
        keeps the tasks with ids above it, by id, so a write-back resumes after the
        last task it wrote and tasks imported meanwhile neither shift nor repeat a
        page.  The SDK's ``tasks.list`` has no ``review`` and parses tasks into role
        models, so this is a plain GET.
        """
        params = {"project": int(project_id), "review": "true", "fields": "all", "page": int(page),
                  "page_size": int(page_size)}
        if not resolve_uri:
            params["resolve_uri"] = "false"
        query: dict = {}
        if only is not None:
            query["selectedItems"] = {"all": False, "included": [int(t) for t in only]}
        if after is not None:
            query["filters"] = {"conjunction": "and", "items": [
                {"filter": "filter:tasks:id", "operator": "greater", "type": "Number", "value": int(after)},
            ]}
            query["ordering"] = ["tasks:id"]
        if query:
            params["query"] = json.dumps(query)
        answer = self.get_json(f"/api/tasks/?{urlencode(params)}")
        tasks = answer.get("tasks") if isinstance(answer, dict) else None
        if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("id"), int) for t in tasks):
            raise LabelStudioError(f"Label Studio's task list of project {project_id} is not a page of tasks")
        total = answer.get("total")
        return tasks, total if isinstance(total, int) else len(tasks)

    def task(self, project_id: int, task_id: int) -> dict | None:
        """One task of a project with its annotations and predictions (annotated or not), or None when
        the project has no such task; never makes Label Studio call /predict (see ``tasks_page``)."""
        tasks, _ = self.tasks_page(project_id, 1, 1, only=[task_id], resolve_uri=False)
        return next((t for t in tasks if t.get("id") == int(task_id)), None)

    def import_predictions(self, project_id: int, predictions: list[dict]) -> int:
        """Store ``predictions`` ({task, result, score, model_version} each) in one request through the
        SDK's bulk import; returns how many Label Studio created."""
        url = self.absolute(f"/api/projects/{int(project_id)}/import/predictions")
        raw = self._sdk.projects.with_raw_response

        def post(options: dict) -> object:
            return raw.import_predictions(int(project_id), request=predictions, request_options=options).data

        answer = self._send(url, post, method="POST")
        created = getattr(answer, "created", None)
        return created if isinstance(created, int) else len(predictions)

    def ml_backends(self, project_id: int) -> list[dict]:
        """The ML backends connected to the project (``GET /api/ml?project=``)."""
        found = self.get_json(f"/api/ml?project={int(project_id)}")
        return [b for b in found if isinstance(b, dict)] if isinstance(found, list) else []

    def set_model_version(self, project_id: int, version: str) -> None:
        """Make ``version`` the project's model version (what the Data Manager's prediction score
        column and uncertainty sampling read), through the SDK's project update."""
        url = self.absolute(f"/api/projects/{int(project_id)}")
        raw = self._sdk.projects.with_raw_response

        def patch(options: dict) -> object:
            return raw.update(int(project_id), model_version=version, request_options=options)

        self._send(url, patch, method="PATCH")

    def _send(self, url: str, send: Callable[[dict], _T], method: str = "GET") -> _T:
        """``send(request_options)`` with the auth header; SDK and network errors become
        ``LabelStudioError`` with a hint for the operator (the SDK's ``ApiError`` has none)."""
        header = self.auth_header()
        for retry in (False, True):
            try:
                return send({"additional_headers": {"Authorization": header}})
            except ApiError as exc:
                # The SDK never retries a 401: a refused access token is exchanged again, once.
                if exc.status_code == 401 and not retry and self.uses_personal_token:
                    header = self.auth_header(rejected=header)
                    continue
                hint = self.auth_hint(exc.status_code or 0, _body_text(exc.body))
                raise LabelStudioError(
                    self.scrub(
                        f"Label Studio answered HTTP {exc.status_code} to {method} {url}: {_body_text(exc.body)}"
                    )
                    + (f" ({hint})" if hint else ""),
                    status=exc.status_code,
                    transient=exc.status_code in TRANSIENT_STATUSES,
                ) from None
            except httpx.HTTPError as exc:
                raise LabelStudioError(
                    self.scrub(f"cannot reach Label Studio at {url}: {exc}"),
                    transient=isinstance(exc, httpx.TransportError),
                ) from None
        raise AssertionError("unreachable")


class LabelStudioClients:
    """One ``LabelStudioClient`` per (URL, key), so a Personal Access Token's access token
    is reused until it expires instead of being exchanged for every request; thread-safe."""

    def __init__(self, factory: Callable[[str, str], LabelStudioClient] = LabelStudioClient) -> None:
        self._factory = factory
        self._clients: dict[tuple[str, str], LabelStudioClient] = {}
        self._lock = threading.Lock()

    def get(self, url: str, key: str) -> LabelStudioClient:
        """The client for ``url`` and ``key``, made on first use."""
        with self._lock:
            client = self._clients.get((url, key))
            if client is None:
                client = self._clients[(url, key)] = self._factory(url, key)
            return client

    def clear(self) -> None:
        """Forget every client (their access tokens with them)."""
        with self._lock:
            self._clients.clear()

