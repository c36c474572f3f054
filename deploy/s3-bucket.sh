#!/bin/sh
# docker-compose.yml's `s3-bucket` service, on the SeaweedFS image: creates Easel's bucket from
# inside SeaweedFS (Easel's own S3 identity has no Admin right, so it cannot create buckets) and
# turns on the bucket's lifecycle TTL fast path.  SeaweedFS stores the expiration rule that
# s3-init then sets (S3Storage.ensure_bucket) but, without its admin+worker stack, enforces it
# only through this fast path: each object written gets the rule's TTL as a volume TTL.
set -e
master="${SEAWEED_MASTER:-s3:9333}"
bucket="${EASEL_S3_BUCKET:-easel}"

weed_shell() {  # weed shell waits forever for a master it cannot reach: bound each call
    echo "$1" | timeout 60 weed shell -master="$master"
}

setup() {
    buckets=$(weed_shell "s3.bucket.list") || return 1
    if printf '%s\n' "$buckets" | grep -q "^  $bucket[[:space:]]"; then
        echo "s3-bucket: bucket $bucket exists"
    else
        weed_shell "s3.bucket.create -name $bucket" || return 1
    fi
    weed_shell "s3.bucket.lifecycle.fastpath -name $bucket -enable"
}

attempt=1
until setup; do  # the filer may still be starting
    if [ "$attempt" -ge 10 ]; then
        echo "s3-bucket: SeaweedFS at $master did not create bucket $bucket" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 3
done
