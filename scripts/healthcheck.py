"""Container health check: GET /health on PORT, with Basic auth when it is configured.

Run as ``python -m scripts.healthcheck`` from the application directory: the settings
come from ``segmenter.config`` like everywhere else (it imports no torch, so it is quick).
"""

import base64
import sys
import urllib.request

from segmenter.config import Settings
from segmenter.errors import ConfigError

try:
    settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"configuration error: {exc}")
request = urllib.request.Request(f"http://127.0.0.1:{settings.port}/health")
if settings.basic_auth_user:
    pair = f"{settings.basic_auth_user}:{settings.basic_auth_pass}".encode()
    request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
try:
    with urllib.request.urlopen(request, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
