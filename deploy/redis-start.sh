#!/bin/sh
# docker-compose.yml's `redis` entrypoint, on the Redis image: runs the image's own entrypoint
# (which drops to the redis user) with the password as configuration read from stdin
# (`redis-server -`). Not a flag, which `ps` on the host would show, and not a file: Debian's
# docker-compose 1.29 cannot write inline configs, and a file rendered from .env would keep the
# password on disk. It comes from REDISCLI_AUTH, which redis-cli (the healthcheck,
# `docker compose exec redis redis-cli`) logs in with anyway.
set -eu
: "${REDISCLI_AUTH:?set REDIS_PASSWORD in .env}"
# exec: redis-server becomes the container's main process and gets `docker stop`'s SIGTERM.
exec docker-entrypoint.sh redis-server - "$@" <<CONF
requirepass $REDISCLI_AUTH
CONF
