"""The dashboard for people: pages, charts drawn off Label Studio's threads, task views."""

from segmenter.service.dashboard.pages import blueprint

__all__ = ["blueprint"]
