#!/bin/sh
# Starts PostgreSQL in the container. On first start (empty volume) it creates
# the cluster with the superuser password from POSTGRES_PASSWORD and the
# database POSTGRES_DB, and lets password-authenticated clients in from other
# hosts. Runs the server as the postgres user, as PID 1's only child.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (in the environment or deploy/docker/.env)}"
: "${POSTGRES_DB:=postgres}"
run_as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
}
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$(dirname "$PGDATA")" "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    run_as_postgres initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # A private start (socket only) to create the database, then a clean stop.
    run_as_postgres pg_ctl -D "$PGDATA" -w -s \
        -o "-c listen_addresses= -k /run/postgresql" start
    if [ "$POSTGRES_DB" != postgres ]; then
        run_as_postgres psql -h /run/postgresql -U postgres -q \
            -c "CREATE DATABASE \"$POSTGRES_DB\"" postgres
    fi
    run_as_postgres pg_ctl -D "$PGDATA" -w -s -m fast stop
    echo "postgres-entrypoint: created the cluster and database $POSTGRES_DB"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql \
    -c max_connections=200 -c shared_buffers=128MB "$@"
