#!/usr/bin/env bash
# Builds the base images the Dockerfile and docker-compose.yml name (python:3.11-slim,
# redis:7-alpine) from Debian packages, for machines where no container registry is
# reachable. Test scaffolding only: a user with Docker pulls the real images.
# An image that already exists is kept (REBUILD=1 rebuilds it). Needs mmdebstrap and podman.
set -euo pipefail
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}
suite=${DEBIAN_SUITE:-bookworm}
path_env='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# stand_in NAME PACKAGES CHANGE...: a minbase Debian with PACKAGES, imported as NAME.
stand_in() {
  local name=$1 packages=$2
  shift 2
  # Labelled, so the image test can tell a stand-in from the official base (an unlabelled
  # image of this name from an older run is rebuilt).
  if [ "${REBUILD:-0}" != 1 ] && podman image exists "$name" &&
     [ "$(podman image inspect --format '{{index .Labels "segmenter.stand-in"}}' "$name")" = true ]; then
    echo "stand-in $name: present"
    return
  fi
  local started=$SECONDS
  # Docs, man pages and apt lists are of no use in a base image.
  mmdebstrap --quiet --variant=minbase --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    "$suite" "$tmp/rootfs.tar"
  local changes=(--change "$path_env" --change 'LABEL segmenter.stand-in=true')
  for change in "$@"; do changes+=(--change "$change"); done
  podman import --quiet "${changes[@]}" "$tmp/rootfs.tar" "$name" >/dev/null
  rm -f "$tmp/rootfs.tar"
  echo "stand-in $name: built in $((SECONDS - started)) s"
}

# Debian's python3 is 3.11 (at /usr/bin, where the official image has /usr/local/bin);
# passwd gives useradd as in the official image.
stand_in python:3.11-slim python3,python3-venv,python-is-python3,passwd,ca-certificates \
  'ENV LANG=C.UTF-8' 'CMD ["python3"]'
stand_in redis:7-alpine redis-server \
  'EXPOSE 6379' 'CMD ["redis-server", "--protected-mode", "no"]'
