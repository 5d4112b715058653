#!/bin/sh
# The part of the official postgres image's contract that docker-compose.yml relies on, for the
# local stand-in image (.ci/deploy-images.sh): on an empty $PGDATA, a cluster whose superuser is
# $POSTGRES_USER with password $POSTGRES_PASSWORD (scram-sha-256 over TCP) and a database
# $POSTGRES_DB; then the server in the foreground, on every interface.
set -eu
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set, as for the official image}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        # Unix socket only while initialising, so no client (nor a TCP health check) sees a
        # server without its database.
        pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
        createdb -U "$user" "$db"
        pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    fi
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
