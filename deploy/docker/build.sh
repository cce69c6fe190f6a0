#!/usr/bin/env bash
# Builds the images the container stack needs, from our release binaries and
# Debian packages, with or without a container registry:
#   marketplace:latest           every binary of ours on a slim Debian base
#   marketplace-postgres:latest  PostgreSQL 15 with our settings
#   marketplace-prometheus:latest  Prometheus (the compose `monitoring` profile)
#   marketplace-haproxy:latest   HAProxy (the scale-out topology, compose.scale.yaml)
#   marketplace-etcd:latest      etcd (the high-availability topology, compose.ha.yaml)
# marketplace-postgres also holds Patroni, which runs it in compose.ha.yaml.
# The base images are debian:bookworm-slim when it can be pulled; otherwise
# they are made from Debian packages (debootstrap into a folder, then docker
# import) and cached, so a second build only copies the new binaries.
# Also writes deploy/docker/.env with a random database password if there is
# none (it is never baked into an image, and never committed).
# Usage: deploy/docker/build.sh   (MARKETPLACE_TAG=... for another tag)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/setup.sh
. deploy/setup.sh

tag=${MARKETPLACE_TAG:-latest}
suite=bookworm
cache=${XDG_CACHE_HOME:-$HOME/.cache}/marketplace/docker
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

say() { echo "build.sh: $*" >&2; }

if ! docker info >/dev/null 2>&1; then
    say "no Docker engine answers (is it started, and may this user use it?)"
    exit 1
fi

# The Debian mirror apt already uses on this machine, else the default.
mirror() {
    local uri
    uri=$(grep -hoE '^(URIs:|deb) +[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
        /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# Makes image $1 from Debian packages: debootstrap (minbase plus $2) into a
# folder, slimmed, tarred into the cache, then docker import.
debootstrap_image() {
    local image=$1 include=$2 tarball="$cache/${1//[:\/]/_}.tar"
    if docker image inspect "$image" >/dev/null 2>&1; then
        return
    fi
    if [ ! -s "$tarball" ]; then
        if ! command -v debootstrap >/dev/null 2>&1; then
            say "installing debootstrap"
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
                debootstrap >&2
        fi
        local root
        root=$(mktemp -d)
        say "making $image with debootstrap ($suite, $include) from $(mirror)"
        $sudo debootstrap --variant=minbase --include="$include" "$suite" "$root" "$(mirror)" >&2
        $sudo rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
            "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
            "$root"/usr/share/locale/* "$root"/var/log/*.log
        mkdir -p "$cache"
        # A second build running at once writes its own part; either may win.
        $sudo tar -C "$root" -cf "$tarball.$$.part" .
        $sudo rm -rf "$root"
        mv "$tarball.$$.part" "$tarball"
    fi
    docker import "$tarball" "$image" >/dev/null
}

# The base of both images: pulled if a registry answers, else made here.
if docker image inspect debian:bookworm-slim >/dev/null 2>&1 ||
    timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    base=debian:bookworm-slim
    pg_base=debian:bookworm-slim
    prom_base=debian:bookworm-slim
    haproxy_base=debian:bookworm-slim
    etcd_base=debian:bookworm-slim
else
    say "no registry answers: making the base images from Debian packages"
    base=marketplace-base:$suite
    # (-ha: the base made before Patroni joined it lacks it.)
    pg_base=marketplace-postgres-base:$suite-ha
    prom_base=marketplace-prometheus-base:$suite
    haproxy_base=marketplace-haproxy-base:$suite
    etcd_base=marketplace-etcd-base:$suite
    debootstrap_image "$base" ca-certificates
    debootstrap_image "$pg_base" ca-certificates,postgresql-15,patroni,python3-etcd,tini
    debootstrap_image "$prom_base" ca-certificates,prometheus
    debootstrap_image "$haproxy_base" ca-certificates,haproxy
    debootstrap_image "$etcd_base" ca-certificates,etcd-server,etcd-client,tini
fi

say "building the release binaries"
cargo build --release --locked -p deploy -p cli -p loadgen -p seller_srv -p buyer_srv >&2

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir "$context/bin"
for binary in marketplace seller_srv buyer_srv seller-cli buyer-cli loadgen; do
    strip -o "$context/bin/$binary" "target/release/$binary"
done
cp deploy/docker/Dockerfile.marketplace "$context/Dockerfile"

say "building marketplace:$tag"
docker build -q --build-arg BASE="$base" -t "marketplace:$tag" "$context" >/dev/null
say "building marketplace-postgres:$tag"
docker build -q --build-arg BASE="$pg_base" -f deploy/docker/Dockerfile.postgres \
    -t "marketplace-postgres:$tag" deploy/docker >/dev/null
say "building marketplace-prometheus:$tag"
docker build -q --build-arg BASE="$prom_base" -f deploy/docker/Dockerfile.prometheus \
    -t "marketplace-prometheus:$tag" deploy/docker >/dev/null
say "building marketplace-haproxy:$tag"
docker build -q --build-arg BASE="$haproxy_base" -f deploy/docker/Dockerfile.haproxy \
    -t "marketplace-haproxy:$tag" deploy/docker >/dev/null
say "building marketplace-etcd:$tag"
docker build -q --build-arg BASE="$etcd_base" -f deploy/docker/Dockerfile.etcd \
    -t "marketplace-etcd:$tag" deploy/docker >/dev/null
# The TLS certificate of the scale-out topology's HAProxy (made once, here,
# never committed).
deploy/docker/tls/make.sh

env_file=deploy/docker/.env
if [ ! -s "$env_file" ]; then
    # Written aside and moved without replacing: two builds at once agree on
    # one password.
    umask 077
    printf 'POSTGRES_PASSWORD=%s\n' "$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')" \
        > "$env_file.$$"
    mv -n "$env_file.$$" "$env_file"
    rm -f "$env_file.$$"
    say "using the database password in $env_file"
fi
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' |
    grep -E "^marketplace(-postgres|-prometheus|-haproxy|-etcd)?:$tag " >&2
