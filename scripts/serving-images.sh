#!/usr/bin/env bash
# Builds the container images a serving node runs, from the package
# registries these machines reach (no public container registry is):
#   open-webui    Debian 12 (Python 3.11) with a virtual environment holding
#                 open-webui from PyPI, every wheel pinned by version and
#                 sha256 (scripts/serving/open-webui.lock; pip --require-hashes)
#   llama-server  Debian unstable's llama.cpp-tools at a pinned version
# Each is written as an OCI image layout under
# CACHE/serving-images/<name>-<key>/, where the key is a digest of every
# input (versions, lock file, this script): built once, reused after. With
# --push REGISTRY the two are copied there with skopeo under the repository
# names the Quadlet units use, so a build host pulls them as it would pull
# from ghcr.io (the registry stands in for it; the digests are these
# builds', not upstream's). Prints one line per image: the name, then the
# pushed reference with its digest (or the layout's path without --push).
#
# Usage: serving-images.sh [--cache DIR] [--push HOST:PORT]
#            [--cert-dir DIR] [--authfile FILE]
# --cert-dir and --authfile are skopeo's (the registry's CA, credentials).
# Needs root (mmdebstrap), python3 with pip, skopeo.
set -euo pipefail
umask 022
here=$(cd "$(dirname "$0")" && pwd)

OPEN_WEBUI_VERSION=0.12.4
LLAMA_CPP_VERSION=1:0.7.0+dfsg-2
# Repositories as the units name them; tags say what is inside.
OPEN_WEBUI_REPO=open-webui/open-webui
OPEN_WEBUI_TAG=v${OPEN_WEBUI_VERSION}-debian12
LLAMA_REPO=ggml-org/llama.cpp
LLAMA_TAG=server-debian-${LLAMA_CPP_VERSION#*:}
LLAMA_TAG=${LLAMA_TAG//+/-}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}

cache=/var/cache/owui-builder
push="" cert_dir="" authfile=""
while [ $# -gt 0 ]; do
    case $1 in
        --cache) cache=$2; shift 2 ;;
        --push) push=$2; shift 2 ;;
        --cert-dir) cert_dir=$2; shift 2 ;;
        --authfile) authfile=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "serving-images.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "serving-images.sh: run as root (mmdebstrap builds the images' roots)" >&2
    exit 1
fi
log() { printf '== %s\n' "$*" >&2; }
store=$cache/serving-images
mkdir -p "$store"
scratch=$(mktemp -d /var/tmp/owui-serving.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

# The cache key: every input that changes the bytes.
key() {
    { printf '%s\n' "$@"; cat "$0" "$here/oci_layout.py"; } | sha256sum | cut -c1-16
}

# mmdebstrap's tarball of a Debian root (with SOURCE_DATE_EPOCH set it
# clamps every file's time to it), packed as a one-layer OCI layout.
pack() {
    local name=$1 ref=$2 tar=$3 config=$4 out=$5
    log "$name: packing $(du -m "$tar" | cut -f1) MiB into an OCI layout (gzip)"
    python3 "$here/oci_layout.py" "$tar" "$ref" "$out.tmp" <(printf '%s' "$config") >/dev/null
    rm -rf "$out"
    mv "$out.tmp" "$out"
}

# Commands in the new root get a clean environment, not the build host's
# (a host's PIP_* settings would reach the root's pip).
in_root='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8'

build_open_webui() {
    local out=$1 work=$scratch/open-webui
    mkdir -p "$work"
    log "open-webui: downloading the locked wheels (pip --require-hashes; kept in $store/wheels)"
    # Binary wheels only, for the image's Python (3.11) and glibc, whatever
    # the build host runs; each is checked against the lock's sha256.
    python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
        --python-version 3.11 --implementation cp \
        --platform manylinux_2_34_x86_64 --platform manylinux_2_31_x86_64 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform linux_x86_64 \
        -d "$store/wheels" -r "$here/serving/open-webui.lock"
    cat > "$work/open-webui-serve" <<'SH'
#!/bin/sh
# Open WebUI on HOST:PORT (the unit's environment file sets both).
exec /opt/open-webui/bin/open-webui serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
SH
    log "open-webui: Debian 12 root with Python 3.11 and the virtual environment (mmdebstrap)"
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,curl,libgomp1 \
        --customize-hook="mkdir -p \"\$1/tmp/wheels\"" \
        --customize-hook="sync-in $store/wheels /tmp/wheels" \
        --customize-hook="copy-in $here/serving/open-webui.lock /tmp" \
        --customize-hook="copy-in $work/open-webui-serve /usr/local/bin" \
        --customize-hook='chmod 0755 "$1/usr/local/bin/open-webui-serve"' \
        --customize-hook="$in_root python3 -m venv /opt/open-webui" \
        --customize-hook="$in_root /opt/open-webui/bin/pip install --quiet --no-index --find-links /tmp/wheels --no-deps --require-hashes --no-compile -r /tmp/open-webui.lock" \
        --customize-hook="$in_root /opt/open-webui/bin/pip uninstall --quiet --yes pip" \
        --customize-hook='rm -rf "$1/tmp/wheels" "$1/tmp/open-webui.lock" "$1/root/.cache"' \
        `# Byte code made now, checked by hash not time: the same bytes each build,` \
        `# and nothing to write at start in a read-only container. A few test` \
        `# files inside packages do not compile; Python skips those at import too.` \
        --customize-hook="$in_root /opt/open-webui/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/open-webui/lib >/dev/null || true" \
        bookworm "$work/root.tar" "$MIRROR"
    pack open-webui "$OPEN_WEBUI_REPO:$OPEN_WEBUI_TAG" "$work/root.tar" '{
        "Entrypoint": ["/usr/local/bin/open-webui-serve"],
        "Env": ["PATH=/opt/open-webui/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "DATA_DIR=/app/backend/data", "HOME=/app/backend/data", "PYTHONDONTWRITEBYTECODE=1"],
        "WorkingDir": "/app/backend/data",
        "ExposedPorts": {"8080/tcp": {}},
        "Labels": {"org.opencontainers.image.version": "'"$OPEN_WEBUI_VERSION"'",
                   "org.opencontainers.image.source": "https://pypi.org/project/open-webui/'"$OPEN_WEBUI_VERSION"'/"}
    }' "$out"
}

build_llama_server() {
    local out=$1 work=$scratch/llama-server
    mkdir -p "$work"
    log "llama-server: Debian unstable root with llama.cpp-tools $LLAMA_CPP_VERSION (mmdebstrap)"
    # The mirror serves a snapshot whose unstable Release file has expired.
    if ! mmdebstrap --quiet --variant=minbase \
        --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Check-Date "false"' \
        --include="llama.cpp-tools=$LLAMA_CPP_VERSION,ca-certificates,curl" \
        sid "$work/root.tar" "$MIRROR"; then
        echo "serving-images.sh: llama.cpp-tools $LLAMA_CPP_VERSION from $MIRROR (sid) did not install; if the mirror moved on, set LLAMA_CPP_VERSION here to its version" >&2
        return 1
    fi
    pack llama-server "$LLAMA_REPO:$LLAMA_TAG" "$work/root.tar" '{
        "Entrypoint": ["/usr/bin/llama-server"],
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/tmp"],
        "ExposedPorts": {"8081/tcp": {}},
        "Labels": {"org.opencontainers.image.version": "'"$LLAMA_CPP_VERSION"'",
                   "org.opencontainers.image.source": "https://packages.debian.org/sid/llama.cpp-tools"}
    }' "$out"
}

# One image: its layout from the cache or built now, then pushed if asked.
image() {
    local name=$1 repo=$2 tag=$3 builder=$4 out
    shift 4
    out=$store/$name-$(key "$name" "$repo:$tag" "$SOURCE_DATE_EPOCH" "$MIRROR" "$@")
    if [ -f "$out/index.json" ]; then
        log "$name: cached at $out"
    else
        "$builder" "$out"
    fi
    if [ -z "$push" ]; then
        printf '%s %s\n' "$name" "$out"
        return
    fi
    local args=(--quiet) dest="docker://$push/$repo:$tag"
    [ -n "$cert_dir" ] && args+=(--dest-cert-dir "$cert_dir")
    [ -n "$authfile" ] && args+=(--dest-authfile "$authfile")
    log "$name: pushing to $dest"
    skopeo copy "${args[@]}" --preserve-digests "oci:$out" "$dest"
    printf '%s %s/%s:%s@%s\n' "$name" "$push" "$repo" "$tag" \
        "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$out/index.json")"
}

image open-webui "$OPEN_WEBUI_REPO" "$OPEN_WEBUI_TAG" build_open_webui \
    "$OPEN_WEBUI_VERSION" "$(sha256sum < "$here/serving/open-webui.lock")"
image llama-server "$LLAMA_REPO" "$LLAMA_TAG" build_llama_server "$LLAMA_CPP_VERSION"
