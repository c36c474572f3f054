#!/usr/bin/env sh
# Install Debian packages the project needs (redis-server, chromium, prometheus) when they are
# missing.
set -eu
if ! command -v apt-get >/dev/null; then
  echo "please install: $*" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"
