#!/usr/bin/env bash
# A site-style container registry on this machine, standing in for ghcr.io
# (which is not reachable here): Debian's docker-registry on 127.0.0.1 with
# TLS from a CA made for it and htpasswd credentials, the way a connected
# build host meets a real registry. Used by main-job.sh and the image
# benchmark; the tests start their own (tests/src/registry.rs).
#
# Usage: local-registry.sh start DIR   writes DIR/{ca,certs.d,auth.json,...},
#                                      starts the registry, prints its
#                                      HOST:PORT (also in DIR/address)
#        local-registry.sh stop DIR
# Clients: skopeo --dest-cert-dir DIR/certs.d/HOST:PORT --dest-authfile
# DIR/auth.json; owui-builder --registry-certs DIR/certs.d
# --registry-config DIR/auth.json.
set -euo pipefail
umask 077

cmd=${1:-} dir=${2:-}
if [ -z "$cmd" ] || [ -z "$dir" ]; then
    echo "usage: local-registry.sh start|stop DIR" >&2
    exit 2
fi

stop() {
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
}

case $cmd in
    stop) stop; exit 0 ;;
    start) ;;
    *) echo "local-registry.sh: unknown command $cmd" >&2; exit 2 ;;
esac

for tool in docker-registry htpasswd openssl curl; do
    command -v "$tool" >/dev/null || {
        echo "local-registry.sh: $tool is needed (apt-get install docker-registry apache2-utils openssl curl)" >&2
        exit 1
    }
done
mkdir -p "$dir/data"
stop
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
address=127.0.0.1:$port

if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj "/CN=owui local registry CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
fi
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
rm -rf "$dir/certs.d"
mkdir -p "$dir/certs.d/$address"
cp "$dir/ca.pem" "$dir/certs.d/$address/ca.crt"

if [ ! -f "$dir/password" ]; then
    head -c 18 /dev/urandom | base64 >"$dir/password"
fi
htpasswd -B -b -c "$dir/htpasswd" builder "$(cat "$dir/password")" 2>/dev/null
python3 - "$dir" "$address" <<'PY'
import base64, json, os, sys
d, address = sys.argv[1:]
token = base64.b64encode(b"builder:" + open(os.path.join(d, "password"), "rb").read().strip()).decode()
json.dump({"auths": {address: {"auth": token}}}, open(os.path.join(d, "auth.json"), "w"))
PY

cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
http:
  addr: $address
  tls:
    certificate: $dir/server.pem
    key: $dir/server.key
auth:
  htpasswd:
    realm: owui-local
    path: $dir/htpasswd
EOF
docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
echo $! >"$dir/pid"
for _ in $(seq 50); do
    if curl -s -o /dev/null --cacert "$dir/ca.pem" "https://$address/v2/"; then
        echo "$address" >"$dir/address"
        echo "$address"
        exit 0
    fi
    sleep 0.2
done
echo "local-registry.sh: the registry did not answer on $address; its log: $dir/registry.log" >&2
stop
exit 1
