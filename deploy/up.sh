#!/usr/bin/env bash
# Starts the whole marketplace on this machine: a private PostgreSQL cluster,
# both databases, the seller server (:5001) and the buyer server (:6001).
# Installs what it needs first (deploy/setup.sh). Ctrl-C stops everything.
# Flags go to `marketplace up` (see deploy/up.sh --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/setup.sh
. deploy/setup.sh
cargo build --release --locked -p deploy -p cli
exec target/release/marketplace up "$@"
