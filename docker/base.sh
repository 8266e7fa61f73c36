#!/usr/bin/env bash
# Make the base image <ref> available to the engine in $DOCKER_HOST:
#   1. already there (a local tag)            -> nothing to do
#   2. pullable from its registry             -> docker pull
#   3. neither (air-gapped, no registry)      -> build an equivalent from Debian packages with
#      mmdebstrap (same release, python3 3.11, ca-certificates, passwd) and tag it locally as <ref>,
#      so the Dockerfiles' FROM finds it and the build goes on unchanged.
#   docker/base.sh <ref>
set -euo pipefail
REF=${1:?usage: $0 <base image reference>}
say() { echo "[base] $*" >&2; }

if docker image inspect "$REF" >/dev/null 2>&1; then
  say "$REF: present locally"
  exit 0
fi
say "$REF: pulling"
if timeout "${ESTEIRA_PULL_TIMEOUT:-60}" docker pull -q "$REF" >/dev/null 2>&1; then
  say "$REF: pulled"
  exit 0
fi

# The Debian release named in the tag (python:3.11-slim-bookworm -> bookworm), else bookworm.
SUITE=bookworm
for s in bookworm trixie bullseye; do
  [[ $REF == *"$s"* ]] && SUITE=$s
done
say "$REF: no registry answers; building it from Debian $SUITE packages (mmdebstrap)"

if ! command -v mmdebstrap >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || { say "error: mmdebstrap is missing and installing it needs root"; exit 1; }
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null) \
    || { say "error: apt-get install mmdebstrap failed"; exit 1; }
fi

# The host's Debian mirrors (they may be a local mirror or snapshot): deb822 or one-line sources.
MIRRORS=()
for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list /etc/apt/sources.list; do
  [[ -s $f ]] && grep -qE "^(URIs:|deb )" "$f" && MIRRORS+=("$f")
done
if [[ $SUITE != bookworm || ${#MIRRORS[@]} == 0 ]]; then
  MIRRORS=("deb http://deb.debian.org/debian $SUITE main")
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# minbase + Python; no docs, man pages or apt lists in the image. pip is only for the build
# stage (it installs uv); ca-certificates is Debian's Mozilla bundle, the one the images trust.
mmdebstrap --variant=minbase --quiet \
  --include=python3,python3-pip,python3-venv,ca-certificates,passwd,tzdata \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
  "$SUITE" "$WORK/rootfs.tar" "${MIRRORS[@]}"
docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  -m "esteira: $SUITE minbase + python3 (mmdebstrap), standing in for $REF" \
  "$WORK/rootfs.tar" "$REF" >/dev/null
say "$REF: built from Debian $SUITE ($(docker image inspect -f '{{.Size}}' "$REF" | awk '{printf "%.0f MB", $1/1e6}'))"
