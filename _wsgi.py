"""WSGI entry point: ``gunicorn _wsgi:app`` (see gunicorn.conf.py), or
``python _wsgi.py`` for Flask's development server on PORT (default 9090)."""

from __future__ import annotations

import sys

from model import TimeSeriesSegmenter
from segmenter.config import Settings
from segmenter.errors import ConfigError
from segmenter.service.app import create_app
from segmenter.service.runtime import Runtime

try:
    settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")

app = create_app(Runtime.start(settings), TimeSeriesSegmenter)

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=settings.port, threaded=True)
