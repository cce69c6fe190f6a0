#!/usr/bin/env bash
# Runs every test of the marketplace: unit, property and integration tests, the
# latter against private PostgreSQL clusters the tests start and stop themselves.
# Then the container tests (deploy/docker/test.sh). Installs what it needs
# first (deploy/setup.sh). Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/setup.sh
. deploy/setup.sh
marketplace_promtool
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked "$@" 2>&1 | tee "$log" || status=$?
# The six containers (skipped with one line where no Docker engine answers,
# unless MARKETPLACE_REQUIRE_DOCKER=1): deploy/docker/test.sh.
if [ "$status" -eq 0 ] && [ "${MARKETPLACE_SKIP_CONTAINERS:-}" != 1 ]; then
    deploy/docker/test.sh 2>&1 | tee -a "$log" || status=$?
fi
passed=$(grep -Eo '^test result: .* ([0-9]+) passed' "$log" | grep -Eo '[0-9]+ passed' | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '^test result: .* ([0-9]+) failed' "$log" | grep -Eo '[0-9]+ failed' | awk '{s+=$1} END {print s+0}')
echo
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
