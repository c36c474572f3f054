#!/bin/sh
# docker-compose.yml's `s3` entrypoint, on the SeaweedFS image: writes SeaweedFS's only S3
# identity from the environment (.env) into a file inside the container, then runs the image's
# own entrypoint with `-s3.config` naming it. (Debian's docker-compose 1.29 cannot write inline
# configs, and a file rendered on the host would keep the secret on disk there.)
# Least privilege: read, write, list and tag objects of Easel's bucket; no Admin (no bucket
# creation or deletion, no policies, no other buckets): `s3-bucket` creates the bucket instead.
# `s3-start.sh identity` prints the identity and exits (tests/deploy/test_compose.py reads it).
set -eu
bucket="${EASEL_S3_BUCKET:-easel}"

identity() {  # deploy/preflight.sh refuses a secret that would break this JSON (" or \)
    printf '{"identities": [{"name": "easel", "credentials": [{"accessKey": "%s", "secretKey": "%s"}], "actions": ["Read:%s", "Write:%s", "List:%s", "Tagging:%s"]}]}\n' \
        "${EASEL_S3_ACCESS_KEY_ID:?set EASEL_S3_ACCESS_KEY_ID}" \
        "${EASEL_S3_SECRET_ACCESS_KEY:?set EASEL_S3_SECRET_ACCESS_KEY in .env}" \
        "$bucket" "$bucket" "$bucket" "$bucket"
}

if [ "${1:-}" = identity ]; then
    identity
    exit 0
fi
umask 077
config=$(mktemp)
identity >"$config"
exec /entrypoint.sh "$@" -s3.config="$config"
