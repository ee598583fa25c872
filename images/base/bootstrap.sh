#!/usr/bin/env bash
# Build the root base image from Debian's packages, for machines that cannot pull from a registry.
# Usage: images/base/bootstrap.sh [IMAGE]   (default cutover/base:bookworm)
# Leaves an existing image alone, so a second run costs nothing.
set -euo pipefail
image=${1:-cutover/base:bookworm}
suite=bookworm
mirror=${CUTOVER_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "base image $image: present"
  exit 0
fi
if ! command -v mmdebstrap >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "base image $image is missing and mmdebstrap is not installed; run 'sudo apt-get install mmdebstrap' or set cutover:baseImage to an image you can pull (e.g. debian:bookworm-slim)." >&2
    exit 1
  fi
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap
fi
echo "base image $image: building $suite with mmdebstrap from $mirror"
# minbase plus what every image of ours needs to inspect itself (ps, ss) and to fetch over TLS.
mmdebstrap --variant=minbase --include=ca-certificates,procps,iproute2 \
  --aptopt='Acquire::Retries "3"' "$suite" - "$mirror" \
  | docker import --change 'CMD ["/bin/bash"]' - "$image"
echo "base image $image: built"
