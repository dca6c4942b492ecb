"""Every request to Label Studio and every read of a task's file: REST, tokens, downloads.

Label Studio 1.23 accepts two kinds of key.  A legacy key goes out as
``Authorization: Token <key>``.  A Personal Access Token is a JWT refresh token
that must first be exchanged at ``/api/token/refresh/`` for a short-lived access
token sent as ``Bearer``; ``LabelStudioClient`` tells them apart and keeps the
access token fresh.  ``DataFetcher`` turns the file reference found in a task
(relative or absolute Label Studio URL, foreign URL, local path) into bytes,
sending the token to Label Studio only, refusing hosts and paths the operator
did not allow, capping the size, and caching files across training runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import posixpath
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import requests

from segmenter import redaction
from segmenter.errors import DownloadError, SegmenterError

logger = logging.getLogger(__name__)

REFRESH_PATH = "/api/token/refresh/"
# Refresh this long before the access token expires (at most a quarter of its lifetime).
REFRESH_MARGIN_S = 30.0
# Task data paths that point into Label Studio; everything else without a scheme is a local path.
LABEL_STUDIO_DATA_PREFIXES = ("/data/upload/", "/data/local-files", "/tasks/", "/projects/")
# The only Label Studio paths the key is sent to when fetching task data: uploads, local
# files storage, and the routes that resolve or presign cloud-storage URIs.  The REST API
# (exports of other projects, users, tokens) is never reachable through task data.
FILE_SERVING_PATH = re.compile(
    r"^/(?:data/upload/[^/].*|data/local-files/.*|(?:tasks|projects)/[0-9]+/(?:resolve|presign)/)$", re.ASCII
)
# Uploaded files get a fresh uuid-prefixed name on every upload, so their content never changes.
IMMUTABLE_PREFIX = "/data/upload/"
MAX_REDIRECTS = 5
CHUNK_BYTES = 1 << 16
LEGACY_DISABLED_HINT = (
    "LABEL_STUDIO_API_KEY is a legacy token but legacy tokens are disabled in this Label Studio "
    "organization: use a Personal Access Token (Account & Settings) instead, or enable legacy tokens"
)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class LabelStudioError(SegmenterError):
    """Label Studio could not be reached, refused the key or answered something unusable."""


def _b64url_json(part: str) -> object:
    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    return json.loads(raw)


def jwt_claims(token: str) -> dict | None:
    """The payload of ``token`` if it is a JWT (signature not checked), else None."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    try:
        header, claims = _b64url_json(parts[0]), _b64url_json(parts[1])
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    return claims


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs name the same scheme, host and port (never true for an empty host)."""
    first = _origin(a)
    return bool(first[1]) and first == _origin(b)


def normalised(url: str) -> str:
    """``url`` with its path percent-decoded, dot segments resolved and repeated slashes folded.

    What is checked against the allow-list is then exactly what is requested:
    ``/data/upload/../../api/...`` and its ``%2e%2e`` spelling become ``/api/...``.
    """
    parts = urlsplit(url)
    decoded = unquote(parts.path)
    path = posixpath.normpath(re.sub(r"/+", "/", "/" + decoded))
    if decoded.endswith("/") and path != "/":
        path += "/"
    return urlunsplit(parts._replace(path=quote(path, safe="/:@!$&'()*+,;=~")))


def _thread_session(local: threading.local) -> requests.Session:
    """This thread's own ``requests.Session`` (sessions are not safe to share between threads)."""
    session = getattr(local, "session", None)
    if session is None:
        session = local.session = requests.Session()
    return session


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    """The first ``limit`` characters of the body, read without loading a huge one."""
    try:
        head = next(response.iter_content(limit * 4), b"")
    except requests.RequestException:
        return ""
    return head.decode("utf-8", "replace")[:limit].strip()


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
        self._timeout = timeout
        self._personal = jwt_claims(self._key) is not None
        self._lock = threading.Lock()
        self._access = ""
        self._refresh_at: float | None = None
        self._local = threading.local()
        self._clock: Callable[[], float] = time.time

    @property
    def url(self) -> str:
        """The Label Studio base URL, without a trailing slash."""
        return self._url

    @property
    def uses_personal_token(self) -> bool:
        """True when the key is a Personal Access Token (JWT), False for a legacy key."""
        return self._personal

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` points at this Label Studio (same scheme, host and port)."""
        return same_origin(url, self._url)

    def serves_files_at(self, url: str) -> bool:
        """Whether ``url`` (already ``normalised``) is one of Label Studio's file-serving paths."""
        path = urlsplit(url).path
        base = urlsplit(self._url).path.rstrip("/")
        if base and path.startswith(base + "/"):
            path = path[len(base) :]
        return bool(FILE_SERVING_PATH.match(path))

    def absolute(self, url_or_path: str) -> str:
        """``url_or_path`` joined to the Label Studio URL as Label Studio itself does."""
        return urljoin(self._url + "/", url_or_path)

    def scrub(self, text: str) -> str:
        """``text`` with the key, the access token and URL credentials masked, for messages and logs."""
        return redaction.redact(text)

    def auth_hint(self, response: requests.Response, body: str = "") -> str:
        """A sentence telling the operator what to change when ``response`` is an auth failure."""
        if response.status_code not in (401, 403):
            return ""
        if "legacy token" in body.lower():
            return LEGACY_DISABLED_HINT
        if self._personal:
            return "Label Studio refused the access token obtained from LABEL_STUDIO_API_KEY"
        return "Label Studio refused LABEL_STUDIO_API_KEY"

    def get(
        self,
        url_or_path: str,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """GET a Label Studio URL with the auth header; refuses any other host.

        The response is returned whatever its status; the caller checks it.
        """
        url = self.absolute(url_or_path)
        if not self.same_origin(url):
            raise LabelStudioError(f"refusing to send the Label Studio token to {url}")
        return self._request("GET", url, stream=stream, headers=headers, allow_redirects=allow_redirects)

    def get_json(self, path: str) -> object:
        """GET a Label Studio API path and return its JSON; any failure is a LabelStudioError."""
        url = self.absolute(path)
        response = self.get(url)
        if response.status_code >= 400:
            body = _excerpt(response)
            hint = self.auth_hint(response, body)
            raise LabelStudioError(
                self.scrub(f"Label Studio answered HTTP {response.status_code} to GET {url}: {body}")
                + (f" ({hint})" if hint else "")
            )
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
        tasks = self.get_json(f"/api/projects/{int(project_id)}/export?exportType=JSON")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise LabelStudioError(f"the export of project {project_id} is not a list of tasks")
        return tasks

    def _session(self) -> requests.Session:
        return _thread_session(self._local)

    def _request(
        self, method: str, url: str, headers: Mapping[str, str] | None = None, **kwargs: object
    ) -> requests.Response:
        token = self._auth_value()
        response = self._send(method, url, token, headers, **kwargs)
        if response.status_code == 401 and self._personal:
            response.close()
            token = self._auth_value(stale=token)
            response = self._send(method, url, token, headers, **kwargs)
        return response

    def _send(
        self, method: str, url: str, auth: str, headers: Mapping[str, str] | None, **kwargs: object
    ) -> requests.Response:
        merged = {**(headers or {}), "Authorization": auth}
        try:
            return self._session().request(method, url, headers=merged, timeout=self._timeout, **kwargs)
        except requests.RequestException as exc:
            raise LabelStudioError(self.scrub(f"cannot reach Label Studio at {url}: {exc}")) from None

    def _auth_value(self, stale: str | None = None) -> str:
        """The Authorization header value; with ``stale``, replace that rejected access token."""
        if not self._personal:
            return f"Token {self._key}"
        with self._lock:
            expired = self._refresh_at is not None and self._clock() >= self._refresh_at
            rejected = stale is not None and stale == f"Bearer {self._access}"
            if not self._access or expired or rejected:
                self._exchange()
            return f"Bearer {self._access}"

    def _exchange(self) -> None:
        """Trade the Personal Access Token for an access token; the caller holds the lock."""
        url = self._url + REFRESH_PATH
        try:
            response = self._session().post(url, json={"refresh": self._key}, timeout=self._timeout)
        except requests.RequestException as exc:
            raise LabelStudioError(self.scrub(f"cannot reach Label Studio at {url}: {exc}")) from None
        if response.status_code != 200:
            advice = (
                "it may be revoked or expired: create a new one in Account & Settings"
                if response.status_code == 401
                else "this Label Studio may not support Personal Access Tokens"
            )
            raise LabelStudioError(
                self.scrub(
                    f"Label Studio refused the Personal Access Token in LABEL_STUDIO_API_KEY "
                    f"(HTTP {response.status_code} from {url}: {_excerpt(response)}); {advice}"
                )
            )
        try:
            access = response.json()["access"]
        except (ValueError, KeyError, TypeError):
            raise LabelStudioError(f"{url} answered without an access token") from None
        if not isinstance(access, str) or not access:
            raise LabelStudioError(f"{url} answered without an access token")
        redaction.remember(access)
        self._access = access
        self._refresh_at = self._refresh_deadline(jwt_claims(access) or {})
        logger.debug("exchanged the Personal Access Token for an access token")

    def _refresh_deadline(self, claims: Mapping[str, object]) -> float | None:
        """When to refresh: a margin before expiry, measured with the token's own lifetime.

        ``exp - iat`` is independent of clock skew between us and Label Studio.
        """
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, (int, float)):
            return None
        now = self._clock()
        lifetime = exp - iat if isinstance(iat, (int, float)) else exp - now
        if lifetime <= 0:
            return None
        return now + lifetime - min(REFRESH_MARGIN_S, lifetime / 4)


@dataclass(frozen=True)
class _Cached:
    body: bytes
    etag: str | None
    last_modified: str | None
    immutable: bool = False

    def validators(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class _DiskCache:
    """Downloaded bodies on disk, keyed by a hash of the URL, with a JSON sidecar of validators.

    The body is written first, then the sidecar that names its sha256; both by atomic
    replace, so a reader in another thread or process sees a whole, matching pair or a miss.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()
        return self._dir / f"{key}.bin", self._dir / f"{key}.json"

    def load(self, url: str) -> _Cached | None:
        body_path, meta_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text())
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url:
            return None
        if meta.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        return _Cached(body, meta.get("etag"), meta.get("last_modified"), meta.get("immutable") is True)

    def store(self, url: str, body: bytes, etag: str | None, last_modified: str | None, immutable: bool) -> None:
        body_path, meta_path = self._paths(url)
        meta = {
            "url": url,
            "etag": etag,
            "last_modified": last_modified,
            "immutable": immutable,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._write(body_path, body)
            self._write(meta_path, json.dumps(meta).encode())
        except OSError as exc:
            logger.warning("cannot cache %s in %s: %s", url, self._dir, exc)

    def _write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class DataFetcher:
    """Turns the file reference in a task into its bytes, under the operator's rules.

    Label Studio URLs (relative, or absolute on its scheme, host and port) go out with
    the token; other http(s) hosts only when listed in ``allowed_hosts`` (host, or
    host:port, or "*" for any) and never with the token; local paths only below
    ``local_root``.  With ``cache_dir``, downloads are kept in ``cache_dir/downloads``.
    """

    def __init__(
        self,
        label_studio: LabelStudioClient | None,
        allowed_hosts: tuple[str, ...] = (),
        local_root: Path | None = None,
        max_bytes: int = 200 * 2**20,
        cache_dir: Path | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._ls = label_studio
        self._allowed = tuple(h.strip().lower() for h in allowed_hosts if h.strip())
        self._root = Path(local_root).resolve() if local_root is not None else None
        self._max_bytes = max_bytes
        self._cache = _DiskCache(Path(cache_dir) / "downloads") if cache_dir is not None else None
        self._timeout = timeout
        self._local = threading.local()

    def fetch(self, ref: str, task_id: object = None) -> bytes:
        """The bytes behind ``ref``; any refusal or failure is a ``DownloadError`` naming the task."""
        if not isinstance(ref, str) or not ref.strip():
            raise DownloadError(f"the file reference {ref!r} is empty or not a string", task_id)
        ref = ref.strip()
        scheme = _SCHEME.match(ref)
        if scheme and scheme.group(1).lower() == "file":
            return self._read_local(unquote(urlsplit(ref).path), task_id)
        if scheme and scheme.group(1).lower() in _DEFAULT_PORTS:
            return self._download(ref, task_id)
        if scheme:
            raise DownloadError(
                f"cannot download {ref}: unsupported URL scheme {scheme.group(1)!r} "
                "(only http, https, file, Label Studio /data/ URLs and local paths)",
                task_id,
            )
        if ref.startswith(LABEL_STUDIO_DATA_PREFIXES):
            if self._ls is None:
                raise DownloadError(
                    f"{ref} is relative to Label Studio, but LABEL_STUDIO_URL is unset "
                    "(and no Label Studio connection was set up): set LABEL_STUDIO_URL",
                    task_id,
                )
            return self._download(self._ls.absolute(ref), task_id)
        return self._read_local(ref, task_id)

    def _read_local(self, raw: str, task_id: object) -> bytes:
        if self._root is None:
            raise DownloadError(
                f"{raw} is a local path, but reading local files is off: set LOCAL_FILES_ROOT "
                "to the directory that holds them",
                task_id,
            )
        path = Path(raw)
        try:
            resolved = (path if path.is_absolute() else self._root / path).resolve()
            if not resolved.is_relative_to(self._root):
                raise DownloadError(f"{raw} lies outside LOCAL_FILES_ROOT ({self._root})", task_id)
            if not resolved.is_file():
                raise DownloadError(
                    f"local file {raw} not found under LOCAL_FILES_ROOT ({self._root})", task_id
                )
            if resolved.stat().st_size > self._max_bytes:
                raise DownloadError(
                    f"{raw} is larger than the {self._limit_text()} (MAX_DOWNLOAD_MB)", task_id
                )
            return resolved.read_bytes()
        except ValueError:
            raise DownloadError(f"{raw!r} is not a usable path", task_id) from None
        except OSError as exc:
            raise DownloadError(f"cannot read {raw}: {exc.strerror or exc}", task_id) from None

    def _limit_text(self) -> str:
        return f"{self._max_bytes / 2**20:g} MiB download limit"

    def _download(self, url: str, task_id: object) -> bytes:
        url, _ = self._route(url, task_id, after_label_studio=False)
        cached = self._cache.load(url) if self._cache is not None else None
        if cached is not None and cached.immutable:
            logger.debug("cache hit for immutable %s", url)
            return cached.body
        status, body, response, final = self._get(url, cached.validators() if cached else {}, task_id)
        if status == 304 and cached is not None:
            logger.debug("%s not modified, using the cached copy", url)
            return cached.body
        if status == 304:
            status, body, response, final = self._get(url, {}, task_id)
        etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
        # Only a file Label Studio itself served from its uploads, with no redirect on the
        # way, never changes; anything reached through a redirect is revalidated.
        immutable = final == url and self._immutable(url)
        if self._cache is not None and (etag or modified or immutable):
            self._cache.store(url, body, etag, modified, immutable)
        logger.debug("downloaded %s (%d bytes)", url, len(body))
        return body

    def _immutable(self, url: str) -> bool:
        return (
            self._ls is not None
            and self._ls.same_origin(url)
            and urlsplit(url).path.startswith(IMMUTABLE_PREFIX)
        )

    def _get(
        self, url: str, headers: Mapping[str, str], task_id: object
    ) -> tuple[int, bytes, requests.Response, str]:
        """Follow redirects by hand so every hop passes the host rules; read the body capped.

        Returns the status, the body, the response and the URL that finally answered.
        """
        url, with_token = self._route(url, task_id, after_label_studio=False)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._open(url, headers, with_token, task_id)
            if response.is_redirect:
                location = urljoin(url, response.headers["Location"])
                response.close()
                url, with_token = self._route(location, task_id, after_label_studio=with_token)
                continue
            if response.status_code == 304:
                response.close()
                return 304, b"", response, url
            if response.status_code >= 400:
                raise self._status_error(url, response, with_token, task_id)
            return response.status_code, self._read_capped(url, response, task_id), response, url
        raise DownloadError(f"too many redirects downloading {url}", task_id)

    def _route(self, url: str, task_id: object, after_label_studio: bool) -> tuple[str, bool]:
        """The URL to request and whether the key goes with it; refuses what the rules forbid.

        On the Label Studio host the path is normalised first and must be a
        file-serving path: the key never reaches the REST API through task data.
        A redirect issued by Label Studio itself (e.g. to presigned storage) is trusted.
        """
        scheme, host, port = _origin(url)
        if scheme not in _DEFAULT_PORTS or not host:
            raise DownloadError(f"cannot download {url}: not an http(s) URL", task_id)
        if self._ls is not None and self._ls.same_origin(url):
            url = normalised(url)
            if not self._ls.serves_files_at(url):
                raise DownloadError(
                    f"refusing to fetch {url}: on the Label Studio host, task data may only name files "
                    "(/data/upload/, /data/local-files/, /tasks/<id>/resolve/, /projects/<id>/resolve/)",
                    task_id,
                )
            return url, True
        if after_label_studio or self._host_allowed(host, port):
            return url, False
        where = f"Label Studio ({self._ls.url})" if self._ls is not None else "Label Studio (unset)"
        raise DownloadError(
            f"refusing to download {url}: host {host}:{port} is neither {where} nor listed in "
            f"ALLOWED_HOSTS; add '{host}' or '{host}:{port}' (or '*' for any host) to ALLOWED_HOSTS "
            "to allow it",
            task_id,
        )

    def _host_allowed(self, host: str, port: int | None) -> bool:
        name = f"[{host}]" if ":" in host else host
        for entry in self._allowed:
            if entry in ("*", host, name, f"{name}:{port}"):
                return True
        return False

    def _open(
        self, url: str, headers: Mapping[str, str], with_token: bool, task_id: object
    ) -> requests.Response:
        label_studio = self._ls if with_token else None
        try:
            if label_studio is not None:
                return label_studio.get(url, stream=True, headers=headers, allow_redirects=False)
            return self._session().get(
                url, stream=True, headers=dict(headers), allow_redirects=False, timeout=self._timeout
            )
        except LabelStudioError as exc:
            raise DownloadError(f"cannot download {url}: {exc}", task_id) from None
        except requests.RequestException as exc:
            raise DownloadError(self._scrub(f"cannot download {url}: {exc}"), task_id) from None

    def _session(self) -> requests.Session:
        return _thread_session(self._local)

    def _scrub(self, text: str) -> str:
        return self._ls.scrub(text) if self._ls is not None else text

    def _status_error(
        self, url: str, response: requests.Response, with_token: bool, task_id: object
    ) -> DownloadError:
        body = _excerpt(response)
        response.close()
        hint = self._ls.auth_hint(response, body) if with_token and self._ls is not None else ""
        message = f"HTTP {response.status_code} downloading {url}"
        if hint:
            message += f": {hint}"
        elif body:
            message += f": {body}"
        return DownloadError(self._scrub(message), task_id)

    def _read_capped(self, url: str, response: requests.Response, task_id: object) -> bytes:
        too_big = DownloadError(f"{url} is larger than the {self._limit_text()} (MAX_DOWNLOAD_MB)", task_id)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self._max_bytes:
            response.close()
            raise too_big
        chunks, total = [], 0
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                total += len(chunk)
                if total > self._max_bytes:
                    raise too_big
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise DownloadError(self._scrub(f"download of {url} broke off: {exc}"), task_id) from None
        finally:
            response.close()
        return b"".join(chunks)
