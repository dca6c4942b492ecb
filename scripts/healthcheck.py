"""Container health check: GET /health on PORT, with Basic auth when it is configured."""

import base64
import os
import sys
import urllib.request

request = urllib.request.Request(f"http://127.0.0.1:{os.environ.get('PORT', '9090')}/health")
user, password = os.environ.get("BASIC_AUTH_USER", ""), os.environ.get("BASIC_AUTH_PASS", "")
if user:
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    with urllib.request.urlopen(request, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
