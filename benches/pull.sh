#!/usr/bin/env bash
# Registry pull benchmark: `owui-builder oci pull` against `skopeo copy` of
# the same image, by digest, from the same local registry (Debian's
# docker-registry on loopback, TLS and htpasswd auth as in the tests), both
# checking every blob's digest and both writing every blob to disk.
#
#   bash benches/pull.sh            # print the results
#   bash benches/pull.sh --write    # ... and write its section of docs/performance.md
#
# Environment:
#   BENCH_MIB=512    image size in MiB (random bytes, so nothing compresses)
#   BENCH_LAYERS=4   number of layers (uncompressed tars)
#   BENCH_RUNS=3     runs per tool; the fastest run is reported
#   BENCH_DIR=       where the scratch directory goes (default /var/tmp)
#   BENCH_BUILDER=   the owui-builder to measure (default: cargo build --release)
#   BENCH_WRITE=1    same as --write
#   PERF_DOC=        the document --write updates (default docs/performance.md)
#
# Method (also written into docs/performance.md):
# - Each run starts from an empty cache (ours) or an empty layout (skopeo),
#   after `sync`, with the registry's files in the page cache.
# - Both are followed by `sync` inside the timed command: our pull fsyncs each
#   blob before renaming it into the cache, skopeo does not fsync.
# - Ratio = skopeo's time / ours: above 1 means our pull is faster.

set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

MIB=${BENCH_MIB:-512}
LAYERS=${BENCH_LAYERS:-4}
RUNS=${BENCH_RUNS:-3}
(( LAYERS >= 1 && RUNS >= 1 && MIB >= LAYERS )) || {
    echo "need BENCH_LAYERS >= 1, BENCH_RUNS >= 1 and at least 1 MiB per layer" >&2
    exit 2
}


for t in skopeo openssl htpasswd sha256sum tar python3 /usr/bin/docker-registry; do
    command -v "$t" >/dev/null ||
        die "$t is required (apt-get install skopeo openssl apache2-utils docker-registry)"
done

if [[ -n ${BENCH_BUILDER:-} ]]; then
    BUILDER=$BENCH_BUILDER
    BUILD="given: $BUILDER"
else
    build_release owui-builder
    BUILDER=$RELEASE/owui-builder
    BUILD="\`cargo build --release\` at commit $(git -C "$REPO" rev-parse --short HEAD)"
fi
[[ -x $BUILDER ]] || die "$BUILDER is not an executable"

BASE=${BENCH_DIR:-/var/tmp}
mkdir -p "$BASE"
W=$(mktemp -d "$BASE/owui-pull-bench.XXXXXX")
cleanup() {
    bash "$REPO/scripts/local-registry.sh" stop "$W/reg"
    rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the registry: TLS from a throwaway CA, a password (scripts/local-registry.sh)

HOST=$(bash "$REPO/scripts/local-registry.sh" start "$W/reg")
AUTH=$W/reg/auth.json CERTS=$W/reg/certs.d BLOBS=$W/reg/data/docker/registry/v2/blobs
log "registry on $HOST (scratch $W)"

# --- the image: LAYERS tars of random bytes, pushed with skopeo --------------

LAYOUT=$W/layout
mkdir -p "$LAYOUT/blobs/sha256" "$W/files"
blob() { # blob FILE: moves FILE into the layout, prints its digest and size
    local hex size
    hex=$(sha256sum "$1" | cut -c1-64)
    size=$(stat -c %s "$1")
    mv "$1" "$LAYOUT/blobs/sha256/$hex"
    printf 'sha256:%s %s\n' "$hex" "$size"
}
LAYER_MIB=$(( MIB / LAYERS ))
log "making $LAYERS layers of $LAYER_MIB MiB"
DIFF_IDS=() LAYER_JSON=()
for i in $(seq "$LAYERS"); do
    head -c $(( LAYER_MIB << 20 )) /dev/urandom >"$W/files/layer-$i"
    tar -C "$W/files" -cf "$W/layer.tar" "layer-$i"
    rm "$W/files/layer-$i"
    read -r digest size < <(blob "$W/layer.tar")
    DIFF_IDS+=("\"$digest\"")
    LAYER_JSON+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$digest\",\"size\":$size}")
done
join() { local IFS=,; printf '%s' "$*"; }
printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$(join "${DIFF_IDS[@]}")" >"$W/config.json"
read -r config config_size < <(blob "$W/config.json")
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$config" "$config_size" "$(join "${LAYER_JSON[@]}")" >"$W/manifest.json"
read -r manifest manifest_size < <(blob "$W/manifest.json")
printf '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
    "$manifest" "$manifest_size" >"$LAYOUT/index.json"
skopeo copy --quiet --preserve-digests --dest-authfile "$AUTH" --dest-cert-dir "$CERTS/$HOST" \
    "oci:$LAYOUT:bench" "docker://$HOST/bench/image:v1"
rm -rf "$LAYOUT"
BYTES=$(du -sb "$BLOBS" | cut -f1)
REF=$HOST/bench/image@$manifest   # skopeo takes a tag or a digest, not both

# --- timing --------------------------------------------------------------------

now() { date +%s%N; }
best_ours= best_skopeo=
for run in $(seq "$RUNS"); do
    rm -rf "$W/cache" "$W/skopeo-out"
    cat "$BLOBS"/sha256/*/*/data >/dev/null
    sync
    t0=$(now)
    "$BUILDER" oci pull "$REF" --cache "$W/cache" --registry-config "$AUTH" \
        --registry-certs "$CERTS" --quiet >/dev/null
    sync
    t1=$(now)
    skopeo copy --quiet --preserve-digests --dest-oci-accept-uncompressed-layers \
        --src-authfile "$AUTH" --src-cert-dir "$CERTS/$HOST" \
        "docker://$REF" "oci:$W/skopeo-out:image"
    sync
    t2=$(now)
    ours=$(( t1 - t0 )) theirs=$(( t2 - t1 ))
    log "run $run: ours $(( ours / 1000000 )) ms, skopeo $(( theirs / 1000000 )) ms"
    [[ -z $best_ours || $ours -lt $best_ours ]] && best_ours=$ours
    [[ -z $best_skopeo || $theirs -lt $best_skopeo ]] && best_skopeo=$theirs
done
# Both got the same blobs.
cmp <(ls "$W/cache/oci/blobs/sha256" | sort) <(ls "$W/skopeo-out/blobs/sha256" | sort) ||
    die "the two pulls hold different blobs"

MBS() { awk -v b="$BYTES" -v ns="$1" 'BEGIN { printf "%.0f", b / 1048576 / (ns / 1e9) }'; }
RATIO=$(awk -v a="$best_skopeo" -v b="$best_ours" 'BEGIN { printf "%.2f", a / b }')
SECTION=$W/section.md
{
    echo "<!-- pull-bench:begin -->"
    echo "## Registry pull"
    echo
    echo "\`owui-builder oci pull\` against \`skopeo copy\` of the same image by digest"
    echo "from the same local registry (docker-registry $(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?'), TLS and htpasswd on"
    echo "loopback), $BYTES bytes in $LAYERS uncompressed layers of random bytes, both"
    echo "checking every digest and followed by \`sync\`; best of $RUNS runs, measured with:"
    echo
    echo '```sh'
    echo "BENCH_MIB=$MIB BENCH_LAYERS=$LAYERS bash benches/pull.sh --write"
    echo '```'
    echo
    echo "| tool | time | throughput |"
    echo "|---|---|---|"
    printf '| owui-builder oci pull | %d ms | %s MiB/s |\n' $(( best_ours / 1000000 )) "$(MBS "$best_ours")"
    printf '| skopeo copy (%s) | %d ms | %s MiB/s |\n' "$(skopeo --version | awk '{print $3}')" \
        $(( best_skopeo / 1000000 )) "$(MBS "$best_skopeo")"
    echo
    echo "Ratio (skopeo time / ours): **$RATIO** (goal: >= 1)."
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); CPU: $(nproc) cores"
    echo "  ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)); binary: $BUILD"
    echo "<!-- pull-bench:end -->"
} >"$SECTION"
cat "$SECTION"
if [[ $WRITE == 1 ]]; then
    replace_section "${PERF_DOC:-$REPO/docs/performance.md}" \
        "<!-- pull-bench:begin -->" "<!-- pull-bench:end -->" "$SECTION"
    log "wrote ${PERF_DOC:-$REPO/docs/performance.md}"
fi
