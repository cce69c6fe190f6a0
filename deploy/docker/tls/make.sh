#!/usr/bin/env bash
# Makes the TLS files of the scale-out topology's HAProxy, once, in this
# folder (never committed: see .gitignore):
#   ca.pem      the certificate authority clients trust (--ca ca.pem)
#   ca.key      its key (kept here to sign again; never leaves this machine)
#   server.pem  HAProxy's certificate and key, for localhost, 127.0.0.1 and
#               haproxy (the service name inside the compose network)
# A test certificate authority of this machine, not a real one: production
# puts its own certificate in server.pem.
set -euo pipefail
cd "$(dirname "$0")"
if [ -s ca.pem ] && [ -s server.pem ]; then
    exit 0
fi
command -v openssl >/dev/null 2>&1 || {
    echo "tls/make.sh: installing openssl" >&2
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends openssl >&2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 825 \
    -keyout "$work/ca.key" -out "$work/ca.pem" -subj "/CN=marketplace test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,DNS:haproxy,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
    > "$work/ext.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" \
    -CAcreateserial -days 825 -extfile "$work/ext.cnf" -out "$work/server.crt" 2>/dev/null
cat "$work/server.crt" "$work/server.key" > "$work/server.pem"
# HAProxy reads server.pem as root in its container; the CA is public.
chmod 600 "$work/server.pem"
chmod 644 "$work/ca.pem"
# Moved into place whole: a second copy running at once gets a consistent set.
mv -f "$work/ca.key" ca.key
mv -f "$work/server.pem" server.pem
mv -f "$work/ca.pem" ca.pem
echo "tls/make.sh: made ca.pem and server.pem in $(pwd)" >&2
