"""Which Label Studio a project talks to, with which key, and the clients that do it.

Each key travels only with the host it came with.  ``LABEL_STUDIO_URL`` wins
over any ``/setup``: with it, a project uses the operator's key, or else the
``/setup`` token only when that ``/setup`` named the same Label Studio.
Without it, the ``/setup`` hostname goes with the ``/setup`` token.  The
operator's key never pairs with a ``/setup`` host.  One ``LabelStudioAccess``
per process keeps one client per (URL, key), so a Personal Access Token's
access token is reused until it expires.
"""

from __future__ import annotations

import functools
import logging

from segmenter import store
from segmenter.config import Settings
from segmenter.labelstudio.client import LabelStudioClient, LabelStudioClients
from segmenter.labelstudio.fetching import DataFetcher
from segmenter.labelstudio.origins import same_origin
from segmenter.redaction import without_credentials

log = logging.getLogger(__name__)


def connection_target(settings: Settings, connection: dict) -> tuple[str, str]:
    """The (Label Studio URL, key) pair a project with this stored ``/setup`` uses."""
    hostname = (connection.get("hostname") or "").rstrip("/")
    token = connection.get("access_token") or ""
    if settings.label_studio_url:
        if settings.label_studio_api_key:
            return settings.label_studio_url, settings.label_studio_api_key
        return settings.label_studio_url, token if same_origin(hostname, settings.label_studio_url) else ""
    return hostname, token


def connection_to_keep(settings: Settings, hostname: str | None, access_token: str | None) -> dict:
    """What to store of a ``/setup``: its host without credentials, its token only where usable."""
    host = without_credentials(hostname.strip()).rstrip("/") if hostname else ""
    token = access_token.strip() if access_token else ""
    if settings.label_studio_url and not same_origin(host, settings.label_studio_url):
        if host:
            log.warning(
                "/setup names Label Studio %s but LABEL_STUDIO_URL is %s: the project keeps using "
                "LABEL_STUDIO_URL and the /setup token is not kept", host, settings.label_studio_url,
            )
        token = ""
    if settings.label_studio_api_key:
        token = ""  # the operator's key is used; keep no second secret on disk
    return {"hostname": host, "access_token": token}


class LabelStudioAccess:
    """The Label Studio clients and task-data fetchers of one process's projects."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients = LabelStudioClients(functools.partial(LabelStudioClient, timeout=settings.label_studio_timeout))

    def client_for(self, project: object) -> LabelStudioClient | None:
        """A client for the project's Label Studio (see ``connection_target``); None without a URL."""
        connection = store.load_connection(self.settings.model_dir, project)
        url, key = connection_target(self.settings, connection)
        if not url:
            return None
        return self.clients.get(url, key)

    def fetcher_for(self, project: object, client: LabelStudioClient | None = None) -> DataFetcher:
        """The downloader of task data for one project, with the configured limits (``client``: the
        project's, when the caller has it already)."""
        s = self.settings
        return DataFetcher(
            client or self.client_for(project),
            allowed_hosts=s.allowed_hosts,
            local_root=s.local_files_root,
            max_bytes=s.max_download_mb * 1024 * 1024,
            cache_dir=s.cache_dir,
            timeout=s.label_studio_timeout,
        )
