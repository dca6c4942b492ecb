#!/usr/bin/env bash
# Runs the whole test suite: lint, unit and service tests, and the integration suite
# against a real Label Studio (set SKIP_LABEL_STUDIO=1 to skip that part locally).
# Extra arguments go to pytest, e.g. ./test.sh -k regions
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup dev
if [ "${SKIP_LABEL_STUDIO:-0}" != 1 ]; then
  scripts/setup-labelstudio
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
