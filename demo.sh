#!/usr/bin/env bash
# One-command demo: Label Studio 1.23.2 and this backend, with a project of synthetic
# multi-channel sensor recordings that gets annotated, trained on and predicted.
# Prints the URL and login, then runs until Ctrl-C. Options: --fresh (start over),
# --ls-port N (default 8080), --backend-port N (default 9090), --once (exit when set up).
# State lives in .labelstudio/demo-* (data, models, files, logs, credentials).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup runtime
scripts/setup-labelstudio
exec .venv/bin/python -m scripts.demo "$@"
