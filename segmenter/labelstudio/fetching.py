"""Every read of a task's file: Label Studio URLs, allowed foreign hosts, local paths, the cache.

``DataFetcher`` turns the file reference found in a task (relative or absolute
Label Studio URL, foreign URL, local path) into bytes, sending Label Studio's
auth header (from ``LabelStudioClient.auth_header``) to Label Studio only,
refusing hosts and paths the operator did not allow, following redirects hop by
hop under the same rules, capping the size, and caching files across trainings.
"""

from __future__ import annotations

import logging
import posixpath
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit

import requests

from segmenter.errors import DownloadError
from segmenter.labelstudio.errors import LabelStudioError
from segmenter.labelstudio.origins import origin

if TYPE_CHECKING:
    from segmenter.labelstudio.client import LabelStudioClient
from segmenter.labelstudio.download_cache import DownloadCache

logger = logging.getLogger(__name__)

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
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_HTTP_SCHEMES = ("http", "https")


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


def serves_files_at(label_studio_url: str, url: str) -> bool:
    """Whether ``url`` (already ``normalised``) is one of Label Studio's file-serving paths."""
    path = urlsplit(url).path
    base = urlsplit(label_studio_url).path.rstrip("/")
    if base and path.startswith(base + "/"):
        path = path[len(base) :]
    return bool(FILE_SERVING_PATH.match(path))


def _excerpt(response: requests.Response, limit: int = 200) -> str:
    """The first ``limit`` characters of the body, read without loading a huge one."""
    try:
        head = next(response.iter_content(limit * 4), b"")
    except requests.RequestException:
        return ""
    return head.decode("utf-8", "replace")[:limit].strip()


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
        self._cache = DownloadCache(Path(cache_dir) / "downloads") if cache_dir is not None else None
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
        if scheme and scheme.group(1).lower() in _HTTP_SCHEMES:
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
        # Entries fetched with a Label Studio key are that key's alone: an immutable upload is
        # served without asking Label Studio, so another key must not get it without asking.
        key_id = self._ls.key_id if self._ls is not None and self._ls.same_origin(url) else ""
        cached = self._cache.load(url, key_id) if self._cache is not None else None
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
            self._cache.store(url, key_id, body, etag, modified, immutable)
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
        scheme, host, port = origin(url)
        if scheme not in _HTTP_SCHEMES or not host:
            raise DownloadError(f"cannot download {url}: not an http(s) URL", task_id)
        if self._ls is not None and self._ls.same_origin(url):
            url = normalised(url)
            if not serves_files_at(self._ls.url, url):
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
        """GET one hop, without following redirects; Label Studio's auth header only on its own host."""
        session = self._session()
        try:
            if not with_token or self._ls is None:
                return session.get(
                    url, stream=True, headers=dict(headers), allow_redirects=False, timeout=self._timeout
                )
            if not self._ls.same_origin(url):  # _route guarantees it; the key must never leave
                raise DownloadError(f"refusing to send the Label Studio token to {url}", task_id)
            auth = self._ls.auth_header()
            response = session.get(
                url, stream=True, headers={**headers, "Authorization": auth}, allow_redirects=False,
                timeout=self._timeout,
            )
            if response.status_code == 401 and self._ls.uses_personal_token:
                response.close()  # an access token refused before it expired: exchange the key again, once
                response = session.get(
                    url, stream=True, headers={**headers, "Authorization": self._ls.auth_header(rejected=auth)},
                    allow_redirects=False, timeout=self._timeout,
                )
            return response
        except LabelStudioError as exc:
            raise DownloadError(f"cannot download {url}: {exc}", task_id) from None
        except requests.RequestException as exc:
            where = "cannot reach Label Studio at {url}: " if with_token else ""
            raise DownloadError(self._scrub(f"cannot download {url}: {where.format(url=url)}{exc}"), task_id) from None

    def _session(self) -> requests.Session:
        """This thread's own ``requests.Session`` (sessions are not safe to share between threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _scrub(self, text: str) -> str:
        return self._ls.scrub(text) if self._ls is not None else text

    def _status_error(
        self, url: str, response: requests.Response, with_token: bool, task_id: object
    ) -> DownloadError:
        body = _excerpt(response)
        response.close()
        hint = self._ls.auth_hint(response.status_code, body) if with_token and self._ls is not None else ""
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
