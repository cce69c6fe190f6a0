#!/usr/bin/env bash
# The container tests, run by deploy/test.sh: builds the images
# (deploy/docker/build.sh), starts the six containers as a compose project of
# their own on free host ports, runs the end-to-end suite of every seller and
# buyer operation against them through the published ports, then the
# container tests (deploy/tests/containers.rs: CLIs in their containers,
# faults between hosts, persistence), and removes the project.
# Without a Docker engine it skips with one line, unless
# MARKETPLACE_REQUIRE_DOCKER=1 (set by .ci/run), which makes that a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! docker info >/dev/null 2>&1; then
    if [ "${MARKETPLACE_REQUIRE_DOCKER:-}" = 1 ]; then
        echo "containers: no Docker engine answers, and MARKETPLACE_REQUIRE_DOCKER=1" >&2
        exit 1
    fi
    echo "containers: skipped (no Docker engine answers)"
    exit 0
fi
started=$(date +%s)
deploy/docker/build.sh
echo "containers: images built in $(($(date +%s) - started)) s"

# $1 distinct free ports, below the kernel's ephemeral range
# (ip_local_port_range), so that no outgoing connection (an apt download, a
# test's client) can take one between now and a container publishing it; on
# 0.0.0.0, as Docker binds. (Ports from bind(0) are ephemeral ones: a port
# taken that way in between failed a run once.)
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
want = int(sys.argv[1])
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
ports = []
pool = range(max(1024, min(low, 32768) - 12000), min(low, 32768))
for port in random.sample(pool, min(len(pool), 2000)):
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port))
    except OSError:
        continue
    finally:
        s.close()
    ports.append(port)
    if len(ports) == want:
        break
if len(ports) < want:
    raise SystemExit("no free ports below the ephemeral range")
print(" ".join(map(str, ports)))
PY
}
export MARKETPLACE_PROJECT="mkt-test-$$"
read -r SELLER_PORT BUYER_PORT CUSTOMER_DB_PUBLISH PRODUCT_DB_PUBLISH PROMETHEUS_PORT \
    <<<"$(free_ports 5)"
export SELLER_PORT BUYER_PORT CUSTOMER_DB_PUBLISH PRODUCT_DB_PUBLISH PROMETHEUS_PORT
# Shorter sessions make the sweep (and purchase recovery) run every 30 s.
export SESSION_TIMEOUT_SECS=60
set -a
# shellcheck source=/dev/null
. deploy/docker/.env
set +a
cleanup() {
    deploy/docker/compose.sh -p "$MARKETPLACE_PROJECT" --profile monitoring down -v --remove-orphans \
        >/dev/null 2>&1 || true
}
trap cleanup EXIT

up_started=$(date +%s)
deploy/docker/compose.sh -p "$MARKETPLACE_PROJECT" up -d --wait
echo "containers: compose up to healthy in $(($(date +%s) - up_started)) s"

db_url() { echo "postgres://postgres:${POSTGRES_PASSWORD}@127.0.0.1:$1/$2"; }
export MARKETPLACE_TEST_STACK="127.0.0.1:$SELLER_PORT 127.0.0.1:$BUYER_PORT \
$(db_url "$CUSTOMER_DB_PUBLISH" customer_db) $(db_url "$PRODUCT_DB_PUBLISH" product_db)"
cargo build --locked -p loadgen
export MARKETPLACE_LOADGEN="$PWD/target/debug/loadgen"
echo "containers: the end-to-end suite through the published ports"
cargo test --locked -p deploy --test seller_ops --test buyer_ops --test retries
echo "containers: CLIs, faults between hosts, persistence"
cargo test --locked -p deploy --test containers -- --ignored --test-threads=1 --nocapture

# Scale-out (compose.scale.yaml on top): HAProxy with two servers a side, a
# product_db standby, TLS at the proxy. The six containers go first, to leave
# this machine's cores to the new project.
cleanup
scale_started=$(date +%s)
# shellcheck source=deploy/setup.sh
. deploy/setup.sh
marketplace_tshark
export MARKETPLACE_SCALE_PROJECT="mkt-scale-$$"
read -r SELLER_PORT BUYER_PORT SELLER_TLS_PORT BUYER_TLS_PORT HAPROXY_STATS_PORT \
    CUSTOMER_DB_PUBLISH PRODUCT_DB_PUBLISH <<<"$(free_ports 7)"
export SELLER_PORT BUYER_PORT SELLER_TLS_PORT BUYER_TLS_PORT HAPROXY_STATS_PORT \
    CUSTOMER_DB_PUBLISH PRODUCT_DB_PUBLISH
# Every request logged with the client it came from (what PROXY v2 is for).
export LOG_REQUESTS=1
scale() {
    deploy/docker/compose.sh -f deploy/docker/compose.scale.yaml -p "$MARKETPLACE_SCALE_PROJECT" "$@"
}
cleanup() {
    scale down -v --remove-orphans >/dev/null 2>&1 || true
}
scale up -d --wait
# HAProxy takes a server in after two good health checks.
for _ in $(seq 1 60); do
    up=$(curl -fs "http://127.0.0.1:$HAPROXY_STATS_PORT/stats;csv" | grep -c ',UP,' || true)
    [ "$up" -ge 4 ] && break
    sleep 0.5
done
echo "containers: scale-out up, with 4 servers in HAProxy, in $(($(date +%s) - scale_started)) s"
export MARKETPLACE_TEST_STACK="127.0.0.1:$SELLER_PORT 127.0.0.1:$BUYER_PORT \
$(db_url "$CUSTOMER_DB_PUBLISH" customer_db) $(db_url "$PRODUCT_DB_PUBLISH" product_db)"
echo "containers: the end-to-end suite through HAProxy (searches read the standby)"
MARKETPLACE_TEST_REPLICA=1 cargo test --locked -p deploy --test seller_ops --test buyer_ops --test retries
echo "containers: the end-to-end suite through HAProxy's TLS ports"
MARKETPLACE_TEST_REPLICA=1 MARKETPLACE_TEST_CA="$PWD/deploy/docker/tls/ca.pem" \
MARKETPLACE_TEST_STACK="127.0.0.1:$SELLER_TLS_PORT 127.0.0.1:$BUYER_TLS_PORT \
$(db_url "$CUSTOMER_DB_PUBLISH" customer_db) $(db_url "$PRODUCT_DB_PUBLISH" product_db)" \
    cargo test --locked -p deploy --test seller_ops --test buyer_ops
echo "containers: failover, the standby, TLS on the wire"
cargo build --locked -p cli
export MARKETPLACE_BUYER_CLI="$PWD/target/debug/buyer-cli"
export MARKETPLACE_TEST_CA_FILE="$PWD/deploy/docker/tls/ca.pem"
cargo test --locked -p deploy --test scale -- --ignored --test-threads=1 --nocapture
