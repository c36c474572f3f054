#!/bin/sh
# docker-compose.yml's `s3-bucket` service, on the SeaweedFS image: creates Easel's bucket from
# inside SeaweedFS (Easel's own S3 identity has no Admin right, so it cannot create buckets) and
# turns on the bucket's lifecycle TTL fast path.  SeaweedFS stores the expiration rule that
# s3-init then sets (S3Storage.ensure_bucket) but, without its admin+worker stack, enforces it
# only through this fast path: each object written gets the rule's TTL as a volume TTL.
set -e
master="${SEAWEED_MASTER:-s3:9333}"
bucket="${EASEL_S3_BUCKET:-easel}"

weed_shell() {
    echo "$1" | weed shell -master="$master"
}

if weed_shell "s3.bucket.list" | grep -q "^  $bucket[[:space:]]"; then
    echo "s3-bucket: bucket $bucket exists"
else
    weed_shell "s3.bucket.create -name $bucket"
fi
weed_shell "s3.bucket.lifecycle.fastpath -name $bucket -enable"
