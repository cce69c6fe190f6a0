#!/usr/bin/env bash
# `docker compose -f deploy/docker/compose.yaml ARGS`, with Compose v2 when
# installed and Compose v1 (docker-compose) otherwise. Leading `-f FILE`
# arguments add files on top (e.g. -f deploy/docker/compose.scale.yaml). v1
# has no `up --wait`: here it is `up -d` followed by waiting until every
# service with a healthcheck is healthy (at most 120 s).
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)"
files=(-f "$dir/compose.yaml")
while [ "${1:-}" = -f ] && [ $# -ge 2 ]; do
    files+=(-f "$2")
    shift 2
done
if docker compose version >/dev/null 2>&1; then
    exec docker compose "${files[@]}" "$@"
fi
args=()
wait_healthy=false
for arg in "$@"; do
    if [ "$arg" = "--wait" ]; then
        wait_healthy=true
    else
        args+=("$arg")
    fi
done
docker-compose "${files[@]}" "${args[@]}"
if $wait_healthy; then
    # Everything before `up` (e.g. -p NAME) selects the project for `ps`.
    project=()
    for arg in "${args[@]}"; do
        [ "$arg" = up ] && break
        project+=("$arg")
    done
    deadline=$(($(date +%s) + 120))
    while :; do
        pending=0
        for id in $(docker-compose "${files[@]}" "${project[@]}" ps -q); do
            state=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
            case "$state" in
                healthy | running) ;;
                *) pending=$((pending + 1)) ;;
            esac
        done
        [ "$pending" -eq 0 ] && break
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "compose.sh: services not healthy after 120 s" >&2
            docker-compose "${files[@]}" "${project[@]}" ps >&2
            exit 1
        fi
        sleep 1
    done
fi
