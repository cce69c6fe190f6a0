#!/usr/bin/env bash
# Runs every test of the marketplace: unit, property and integration tests, the
# latter against private PostgreSQL clusters the tests start and stop themselves.
# Installs what it needs first (deploy/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/setup.sh
. deploy/setup.sh
cargo test --workspace --locked "$@"
