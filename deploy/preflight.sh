#!/bin/sh
# docker-compose.yml's `preflight` service: refuses to let the stack start with secrets that are
# missing, copied from an example, too short or unusable where they go.  Redis, S3 and Grafana
# wait for it (service_completed_successfully), so nothing listens with such a secret.
# Make good ones with: openssl rand -hex 32
status=0

refuse() {
    echo "preflight: $1" >&2
    status=1
}

check() {  # NAME VALUE MIN_LENGTH
    lowered=$(printf '%s' "$2" | tr 'A-Z' 'a-z')
    case "$lowered" in
        "") refuse "$1 is empty: set it in .env (openssl rand -hex 32)"; return ;;
        *example*|*change-me*|*changeme*)
            refuse "$1 looks like an example value: set a real one in .env (openssl rand -hex 32)"
            return ;;
    esac
    if [ "${#2}" -lt "$3" ]; then
        refuse "$1 is shorter than $3 characters (openssl rand -hex 32)"
    fi
}

check EASEL_S3_SECRET_ACCESS_KEY "$EASEL_S3_SECRET_ACCESS_KEY" 16
check REDIS_PASSWORD "$REDIS_PASSWORD" 16
check GRAFANA_ADMIN_PASSWORD "$GRAFANA_ADMIN_PASSWORD" 12

# REDIS_PASSWORD goes unquoted into redis://:PASSWORD@host URLs and a Redis config line.
case "$REDIS_PASSWORD" in
    *[!A-Za-z0-9._~-]*) refuse "REDIS_PASSWORD may hold only letters, digits and . _ ~ - (it goes into a URL)" ;;
esac
# The S3 secret goes into SeaweedFS's JSON identity file.
case "$EASEL_S3_SECRET_ACCESS_KEY" in
    *'"'*|*'\'*) refuse 'EASEL_S3_SECRET_ACCESS_KEY may not hold " or \' ;;
esac

if [ "$status" -eq 0 ]; then
    echo "preflight: secrets set"
fi
exit "$status"
