#!/usr/bin/env bash
# Runs the whole test suite: lint, unit and service tests, the integration suite
# against a real Label Studio (set SKIP_LABEL_STUDIO=1 to skip that part locally) and the
# container tests, which build the image and run docker-compose.yml with podman
# (SKIP_CONTAINERS=1 skips them; without podman they are skipped locally, in CI they fail).
# Extra arguments go to pytest, e.g. ./test.sh -k regions; ./test.sh -m "not slow" runs the fast
# tests of every module in under a minute (the marker is explained in docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup dev
if [ "${SKIP_LABEL_STUDIO:-0}" != 1 ]; then
  scripts/setup-labelstudio
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
