#!/bin/sh
# Runs Patroni, which runs PostgreSQL, in a database container of the
# high-availability topology (compose.ha.yaml). Patroni bootstraps the
# cluster on the first member to take the initialize key in etcd, copies it
# onto the others (pg_basebackup), promotes a synchronous standby when the
# leader is lost, and rewinds an old leader into a replica (pg_rewind).
#
#   PATRONI_SCOPE      the cluster (customer_db, product_db)
#   PATRONI_NAME       this member (defaults to the host name: the service name)
#   POSTGRES_DB        the database created at bootstrap
#   POSTGRES_PASSWORD  the superuser's, the replication and rewind roles' password
#   ETCD_HOSTS         etcd's client endpoints, host:port,...
#   PATRONI_TTL, PATRONI_LOOP_WAIT, PATRONI_RETRY_TIMEOUT   failover timing,
#                      taken at bootstrap (then in etcd: patronictl edit-config)
#
# Writes /etc/patroni/patroni.yml (secrets: root and postgres only) and
# /etc/patroni/patronictl.yml (none: what `patronictl list` needs, named by
# PATRONICTL_CONFIG_FILE in the image).
set -eu
# Patroni calls this back once, on the member that bootstrapped the cluster,
# with a connection string: the database is made there, and reaches the
# others by replication.
if [ "${1:-}" = post-bootstrap ]; then
    if [ "${POSTGRES_DB:-postgres}" != postgres ]; then
        psql -v ON_ERROR_STOP=1 -d "$2" -qc "CREATE DATABASE \"$POSTGRES_DB\""
    fi
    exit 0
fi
: "${PATRONI_SCOPE:?set PATRONI_SCOPE (the cluster name)}"
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (in the environment or deploy/docker/.env)}"
: "${POSTGRES_DB:=postgres}"
: "${PATRONI_NAME:=$(hostname)}"
: "${ETCD_HOSTS:=etcd-1:2379,etcd-2:2379,etcd-3:2379}"
: "${PATRONI_TTL:=12}"
: "${PATRONI_LOOP_WAIT:=2}"
: "${PATRONI_RETRY_TIMEOUT:=5}"
export PATRONI_SCOPE PATRONI_NAME POSTGRES_DB

data=$(dirname "$PGDATA")
mkdir -p "$data" /run/postgresql /etc/patroni
chown postgres:postgres "$data" /run/postgresql
chmod 700 "$data"

# YAML double-quoted: a password with a quote or backslash stays one value.
quoted=$(printf '%s' "$POSTGRES_PASSWORD" | sed 's/\\/\\\\/g; s/"/\\"/g')
hosts=$(printf '%s' "$ETCD_HOSTS" | sed 's/,/, /g')

cat > /etc/patroni/patronictl.yml <<YAML
scope: $PATRONI_SCOPE
etcd3:
  hosts: [$hosts]
YAML

umask 077
cat > /etc/patroni/patroni.yml.new <<YAML
scope: $PATRONI_SCOPE
name: $PATRONI_NAME
log:
  level: WARNING
restapi:
  listen: 0.0.0.0:8008
  connect_address: $PATRONI_NAME:8008
etcd3:
  hosts: [$hosts]
  # Each request to etcd gives up in time to try another member.
  retry_timeout: $PATRONI_RETRY_TIMEOUT
bootstrap:
  dcs:
    # loop_wait + 2 * retry_timeout <= ttl (HA.md): a leader that cannot
    # renew its key demotes itself before another may take it.
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A commit is acknowledged once a standby has it, and only a
    # synchronous standby is promoted: losing one node loses no
    # acknowledged commit. (Not strict: with no standby left, the
    # primary carries on alone; strict mode can hang a new primary
    # in 3.0.2, HA.md.)
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        max_connections: 200
        shared_buffers: 128MB
        wal_log_hints: "on"
        wal_keep_size: 256MB
        max_wal_senders: 10
        max_replication_slots: 10
        hot_standby: "on"
        hot_standby_feedback: "on"
        # As compose.yaml's single databases (pgcluster/src/lib.rs says why).
        autovacuum_naptime: 5s
  initdb:
    - encoding: UTF8
    - locale: C
  post_bootstrap: /usr/local/bin/patroni-entrypoint post-bootstrap
postgresql:
  listen: 0.0.0.0:5432
  connect_address: $PATRONI_NAME:5432
  data_dir: $PGDATA
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: /tmp/pgpass
  authentication:
    superuser:
      username: postgres
      password: "$quoted"
    replication:
      username: replicator
      password: "$quoted"
    rewind:
      username: rewinder
      password: "$quoted"
  parameters:
    unix_socket_directories: /run/postgresql
  pg_hba:
    - local all all trust
    - host replication replicator 0.0.0.0/0 scram-sha-256
    - host replication replicator ::/0 scram-sha-256
    - host all all 0.0.0.0/0 scram-sha-256
    - host all all ::/0 scram-sha-256
# No watchdog device in a container; synchronous replication still keeps an
# isolated old primary from acknowledging a commit (HA.md).
watchdog:
  mode: "off"
YAML
chown postgres:postgres /etc/patroni/patroni.yml.new
mv /etc/patroni/patroni.yml.new /etc/patroni/patroni.yml
exec setpriv --reuid=postgres --regid=postgres --init-groups patroni /etc/patroni/patroni.yml
