#!/bin/sh
# Starts PostgreSQL in the container. On first start (empty volume) it creates
# the cluster with the superuser password from POSTGRES_PASSWORD and the
# database POSTGRES_DB, and lets password-authenticated clients (and standbys)
# in from other hosts. With REPLICA_OF=HOST it is instead a streaming hot
# standby of that primary: on first start it copies it (pg_basebackup through
# a replication slot of its own, REPLICA_SLOT), then follows it. Runs the
# server as the postgres user, as PID 1's only child.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (in the environment or deploy/docker/.env)}"
: "${POSTGRES_DB:=postgres}"
run_as_postgres() {
    setpriv --reuid=postgres --regid=postgres --init-groups "$@"
}
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$(dirname "$PGDATA")" "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ -n "${REPLICA_OF:-}" ]; then
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        slot=${REPLICA_SLOT:-replica_1}
        export PGPASSWORD="$POSTGRES_PASSWORD"
        until pg_isready -h "$REPLICA_OF" -U postgres -q; do
            echo "postgres-entrypoint: waiting for the primary $REPLICA_OF"
            sleep 1
        done
        # The slot keeps the primary's WAL until this standby has it.
        if ! psql -h "$REPLICA_OF" -U postgres -d postgres -Atc \
            "SELECT 1 FROM pg_replication_slots WHERE slot_name = '$slot'" | grep -q 1; then
            psql -h "$REPLICA_OF" -U postgres -d postgres -qAtc \
                "SELECT pg_create_physical_replication_slot('$slot')" >/dev/null
        fi
        run_as_postgres env PGPASSWORD="$POSTGRES_PASSWORD" pg_basebackup -h "$REPLICA_OF" \
            -U postgres -D "$PGDATA" -X stream -S "$slot" -R -c fast
        unset PGPASSWORD
        echo "postgres-entrypoint: copied $REPLICA_OF; following it as a hot standby"
    fi
    exec setpriv --reuid=postgres --regid=postgres --init-groups \
        postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql \
        -c max_connections=200 -c shared_buffers=128MB -c hot_standby=on \
        -c hot_standby_feedback=on -c autovacuum_naptime=5s "$@"
fi
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
# Standbys (the scale-out topology's replica) copy and follow this cluster;
# also for clusters made before this line existed.
if ! grep -q '^host replication all' "$PGDATA/pg_hba.conf"; then
    echo "host replication all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "host replication all ::/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
# Autovacuum looks at each database every 5 s, not every minute: the search
# index churns (a row per keyword subset of each listed item, deleted when it
# sells out), and its dead entries slow every search and write that steps
# over them (pgcluster/src/lib.rs, AUTOVACUUM_NAPTIME, says what it measured).
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -c listen_addresses='*' -k /run/postgresql \
    -c max_connections=200 -c shared_buffers=128MB -c autovacuum_naptime=5s "$@"
