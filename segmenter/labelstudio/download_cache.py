"""Task files kept on disk across trainings, so unchanged files are not fetched again.

Entries are keyed by the URL and by the key that fetched them (a file fetched with
one Label Studio key is never handed to a request made with another), with a JSON
sidecar of validators (ETag, Last-Modified) and whether the file is immutable.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from segmenter.store.files import atomic_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedFile:
    """One cached download and the validators to revalidate it with."""

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


class DownloadCache:
    """Downloaded bodies on disk, keyed by a hash of the URL and of the key that fetched them,
    with a JSON sidecar of validators.

    Our own rather than an HTTP caching library: CacheControl keys entries by URL alone and
    writes any request header a response Varies on (Authorization too) to disk, hishel stores
    every request header, and neither can tell an upload reached directly from one reached
    through a redirect, which is what decides whether a file may be served without asking.

    The body is written first, then the sidecar that names its sha256; both by atomic
    replace, so a reader in another thread or process sees a whole, matching pair or a miss.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    def _paths(self, url: str, key_id: str) -> tuple[Path, Path]:
        name = hashlib.sha256(f"{url}\n{key_id}".encode()).hexdigest()
        return self._dir / f"{name}.bin", self._dir / f"{name}.json"

    def load(self, url: str, key_id: str) -> CachedFile | None:
        """The entry of ``url`` fetched with the key ``key_id`` names ("" for no key), or None."""
        body_path, meta_path = self._paths(url, key_id)
        try:
            meta = json.loads(meta_path.read_text())
            body = body_path.read_bytes()
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != url or meta.get("key_id", "") != key_id:
            return None
        if meta.get("sha256") != hashlib.sha256(body).hexdigest():
            return None
        return CachedFile(body, meta.get("etag"), meta.get("last_modified"), meta.get("immutable") is True)

    def store(
        self, url: str, key_id: str, body: bytes, etag: str | None, last_modified: str | None, immutable: bool
    ) -> None:
        body_path, meta_path = self._paths(url, key_id)
        meta = {
            "url": url,
            "key_id": key_id,
            "etag": etag,
            "last_modified": last_modified,
            "immutable": immutable,
            "sha256": hashlib.sha256(body).hexdigest(),
            "size": len(body),
        }
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            atomic_write(body_path, lambda p: p.write_bytes(body), mode=0o600, durable=False)
            atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta)), mode=0o600, durable=False)
        except OSError as exc:
            logger.warning("cannot cache %s in %s: %s", url, self._dir, exc)
