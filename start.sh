#!/usr/bin/env bash
# Starts the ML backend on http://localhost:${PORT:-9090} with embedded defaults:
# models in ./models, training in-process, no Redis. Environment variables: see README.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup runtime
exec .venv/bin/gunicorn -c gunicorn.conf.py _wsgi:app
