#!/usr/bin/env bash
# Bundle throughput benchmark: create, verify and apply of one signed bundle
# of several incompressible blobs, each against the standard tools over the
# same bytes, all from the page cache, in one run.
#
#   bash benches/bundle.sh            # print the results table
#   bash benches/bundle.sh --write    # ... and write its section of docs/performance.md
#
# Environment:
#   BENCH_GIB=2      payload size in GiB (the targets are stated for >= 2)
#   BENCH_MIB=       payload size in MiB; overrides BENCH_GIB (smoke runs)
#   BENCH_BLOBS=8    number of blobs (files of random bytes)
#   BENCH_RUNS=3     runs per measurement; the fastest run is reported
#   BENCH_DIR=       where the scratch directory goes (default /var/tmp);
#                    must be a disk filesystem, not tmpfs
#   BENCH_WRITE=1    same as --write
#   PERF_DOC=        the document --write updates (default docs/performance.md);
#                    only the part between the bundle-bench markers is replaced
#
# Method (also written into docs/performance.md):
# - Every timed run is preceded by reading its inputs once (`cat > /dev/null`)
#   so they come from the page cache, and by `sync` so writeback left by the
#   previous run is not charged to it.
# - Wall time is taken with `date +%s%N` around `/usr/bin/time`, which gives
#   the peak RSS (%M, the largest process of the command). Time: best of
#   BENCH_RUNS. Peak RSS: worst of BENCH_RUNS.
# - Durability is made equal: create and apply fsync what they write, so the
#   peer commands that write (tar | zstd, cp) are followed by `sync FILE...`
#   (fsync of exactly the files they wrote) inside the timed command. cp
#   without the fsync is reported too, for information.
# - Bytes read and written by a command come from the benchmark shell's own
#   /proc/$$/io (rchar, wchar), which accumulates every reaped descendant.

set -euo pipefail

# shellcheck source=benches/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_args "$@"

BLOBS=${BENCH_BLOBS:-8}
RUNS=${BENCH_RUNS:-3}
if [[ -n ${BENCH_MIB:-} ]]; then
    TOTAL_MIB=$BENCH_MIB
else
    TOTAL_MIB=$(awk -v g="${BENCH_GIB:-2}" 'BEGIN { printf "%d", g * 1024 }')
fi
(( BLOBS >= 1 && RUNS >= 1 && TOTAL_MIB >= BLOBS )) || {
    echo "need BENCH_BLOBS >= 1, BENCH_RUNS >= 1 and at least 1 MiB per blob" >&2
    exit 2
}
BLOB_BYTES=$(( TOTAL_MIB * 1024 * 1024 / BLOBS ))
PAYLOAD=$(( BLOB_BYTES * BLOBS ))


# --- tools -----------------------------------------------------------------

if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (for peak RSS)"
    apt-get install -y -qq time >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && apt-get install -y -qq time >/dev/null; } ||
        die "/usr/bin/time is missing and could not be installed"
fi
for t in openssl sha256sum tar zstd cp sync taskset awk; do
    command -v "$t" >/dev/null || die "$t is required"
done

build_release owui-agent owui-builder
BUILDER=$RELEASE/owui-builder
AGENT=$RELEASE/owui-agent
[[ -x $BUILDER && -x $AGENT ]] || die "release binaries not found under $RELEASE"

# --- scratch space -----------------------------------------------------------

BASE=${BENCH_DIR:-/var/tmp}
mkdir -p "$BASE"
FSTYPE=$(df --output=fstype "$BASE" | tail -n 1 | tr -d ' ')
case $FSTYPE in
    tmpfs | ramfs | devtmpfs)
        die "$BASE is on $FSTYPE; set BENCH_DIR to a directory on a disk filesystem" ;;
esac
AVAIL_KIB=$(df --output=avail -k "$BASE" | tail -n 1 | tr -d ' ')
NEED_KIB=$(( PAYLOAD / 1024 * 5 + 1024 * 1024 ))
(( AVAIL_KIB > NEED_KIB )) ||
    die "$BASE has $((AVAIL_KIB / 1024)) MiB free; this run needs about $((NEED_KIB / 1024)) MiB"

W=$(mktemp -d "$BASE/owui-bench.XXXXXX")
cleanup() { rm -rf "$W"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

SRC=$W/src/weights
NODE=$W/node
BUNDLE=$W/bench.owb
KEYS=$W/keys
mkdir -p "$SRC" "$NODE/etc/owui/trust"

log "scratch $W ($FSTYPE); payload $PAYLOAD bytes in $BLOBS blobs of $BLOB_BYTES"
log "writing $BLOBS files of random bytes"
for i in $(seq -w 1 "$BLOBS"); do
    head -c "$BLOB_BYTES" /dev/urandom >"$SRC/model-$i-of-$BLOBS.safetensors"
done
SRC_FILES=("$SRC"/*)

cat >"$W/spec.toml" <<EOF
channel = "bench"
sequence = 1
roles = ["gpu"]

[[huggingface]]
repo = "bench/weights"
revision = "0123456789abcdef0123456789abcdef01234567"
path = "src/weights"
EOF

"$BUILDER" key generate --out "$KEYS" --quiet >/dev/null
KEY_ID=$(head -n 1 "$KEYS/owui.pub" | awk '{ print $NF }')
cp "$KEYS/owui.pub" "$NODE/etc/owui/trust/$KEY_ID.pub"
printf 'node = "bench-1"\nrole = "gpu"\n' >"$NODE/etc/owui/seed.toml"
printf '[bundles.podman]\ndriver = "vfs"\ngraph_root = "/var/lib/containers/storage"\nrun_root = "/run/containers/storage"\n' \
    >"$NODE/etc/owui/agent.toml"

# --- measuring -----------------------------------------------------------------

declare -A BEST RSS RCHAR WCHAR TIMES

warm() { cat "$@" >/dev/null; }

io_counters() {
    local k v r=0 w=0
    while read -r k v; do
        case $k in
            rchar:) r=$v ;;
            wchar:) w=$v ;;
        esac
    done </proc/$$/io
    echo "$r $w"
}

# measure NAME PREP_FUNCTION COMMAND...: runs PREP then COMMAND, RUNS times.
measure() {
    local name=$1 prep=$2
    shift 2
    local run t0 t1 secs kib io0 io1 r0 w0 r1 w1
    for ((run = 1; run <= RUNS; run++)); do
        "$prep"
        sync
        io0=$(io_counters)
        t0=$(date +%s%N)
        /usr/bin/time -f '%M' -o "$W/time.out" "$@" >/dev/null ||
            die "$name failed (run $run): $*"
        t1=$(date +%s%N)
        io1=$(io_counters)
        read -r r0 w0 <<<"$io0"
        read -r r1 w1 <<<"$io1"
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        kib=$(tail -n 1 "$W/time.out")
        TIMES[$name]="${TIMES[$name]:-}${TIMES[$name]:+ }$secs"
        if [[ -z ${BEST[$name]:-} ]] || awk -v a="$secs" -v b="${BEST[$name]}" 'BEGIN { exit !(a < b) }'; then
            BEST[$name]=$secs
        fi
        if (( kib > ${RSS[$name]:-0} )); then RSS[$name]=$kib; fi
        # The launcher's own reads (binary, libraries) are counted too: small.
        RCHAR[$name]=$(( r1 - r0 ))
        WCHAR[$name]=$(( w1 - w0 ))
        log "$name run $run: ${secs}s, peak RSS ${kib} KiB, read $(( r1 - r0 )) B, wrote $(( w1 - w0 )) B"
    done
}

prep_create() { rm -f "$BUNDLE"; warm "${SRC_FILES[@]}"; }
prep_create_peer() { rm -f "$W/peer.tar.zst"; warm "${SRC_FILES[@]}"; }
prep_hash() { warm "${SRC_FILES[@]}"; }
prep_verify() { warm "$BUNDLE"; }
prep_apply() { rm -rf "$NODE/var" "$NODE/run" "$W/cp"; mkdir -p "$W/cp"; warm "$BUNDLE"; }
prep_cp() { rm -rf "$NODE/var" "$NODE/run" "$W/cp"; mkdir -p "$W/cp"; warm "${SRC_FILES[@]}"; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "create"
measure create prep_create \
    "$BUILDER" bundle create "$W/spec.toml" --key "$KEYS/owui.key" --out "$BUNDLE" --quiet
measure create_peer prep_create_peer bash -c '
    cd "$1" && tar -cf - src | zstd -T0 -q -o peer.tar.zst && sync peer.tar.zst &&
    sha256sum src/weights/* >/dev/null' _ "$W"
BUNDLE_BYTES=$(stat -c %s "$BUNDLE")
rm -f "$W/peer.tar.zst"

log "verify"
measure verify prep_verify "$AGENT" --root "$NODE" bundle verify "$BUNDLE" --quiet
measure verify_1core prep_verify taskset -c 0 "$AGENT" --root "$NODE" bundle verify "$BUNDLE" --quiet
measure openssl prep_hash openssl dgst -sha256 "${SRC_FILES[@]}"
measure sha256sum prep_hash sha256sum "${SRC_FILES[@]}"
# openssl's own hashing speed on one core, no I/O: what the hash itself costs.
OSPEED=0
for ((run = 1; run <= RUNS; run++)); do
    v=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null |
        awk 'END { x = $NF; sub(/k$/, "", x); printf "%.2f", x * 1000 / 1e9 }')
    log "openssl speed run $run: $v GB/s"
    awk -v a="$v" -v b="$OSPEED" 'BEGIN { exit !(a > b) }' && OSPEED=$v
done

log "apply"
measure apply prep_apply "$AGENT" --root "$NODE" bundle apply "$BUNDLE" --quiet
# The applied tree must be there and byte-identical.
SNAP=$NODE/var/lib/owui/huggingface/hub/models--bench--weights/snapshots/0123456789abcdef0123456789abcdef01234567
for f in "${SRC_FILES[@]}"; do
    cmp -s "$f" "$SNAP/$(basename "$f")" || die "applied $(basename "$f") differs from its source"
done
measure cp_fsync prep_cp bash -c 'cp "$@" && sync "${!#}"/*' _ "${SRC_FILES[@]}" "$W/cp"
measure cp prep_cp cp "${SRC_FILES[@]}" "$W/cp"
rm -rf "$NODE/var" "$W/cp"

# --- results -------------------------------------------------------------------

calc() { awk "BEGIN { printf \"$1\", $2 }"; }
rate() { calc '%.2f' "$PAYLOAD / ${BEST[$1]} / 1e9"; }       # GB/s, 10^9 bytes
mib() { calc '%.1f' "${RSS[$1]} / 1024"; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' && echo PASS || echo MISS; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }' && echo PASS || echo MISS; }

R_CREATE=$(calc '%.2f' "${BEST[create_peer]} / ${BEST[create]}")
R_OPENSSL=$(calc '%.2f' "${BEST[openssl]} / ${BEST[verify]}")
R_SHA256SUM=$(calc '%.2f' "${BEST[sha256sum]} / ${BEST[verify]}")
R_1CORE=$(calc '%.2f' "${BEST[openssl]} / ${BEST[verify_1core]}")
R_SPEED=$(calc '%.2f' "$PAYLOAD / ${BEST[verify]} / 1e9 / $OSPEED")
R_1CORE_SPEED=$(calc '%.2f' "$PAYLOAD / ${BEST[verify_1core]} / 1e9 / $OSPEED")
SCALING=$(calc '%.2f' "${BEST[verify_1core]} / ${BEST[verify]}")
R_CP=$(calc '%.2f' "${BEST[cp_fsync]} / ${BEST[apply]}")
R_CP_NOSYNC=$(calc '%.2f' "${BEST[cp]} / ${BEST[apply]}")
READ_X=$(calc '%.3f' "${RCHAR[apply]} / $PAYLOAD")
PEAK_KIB=0
for s in create verify apply; do (( RSS[$s] > PEAK_KIB )) && PEAK_KIB=${RSS[$s]}; done

V_OPENSSL=$(ge "$R_OPENSSL" 1.8)
V_CP=$(ge "$R_CP" 0.7)
V_READ=$(awk -v x="$READ_X" 'BEGIN { exit !(x < 1.01) }' && echo PASS || echo MISS)
V_MEM=$(lt "$PEAK_KIB" 65536)

GIB=$(calc '%.2f' "$PAYLOAD / 1073741824")
CMD="bash benches/bundle.sh --write"
[[ -n ${BENCH_MIB:-} ]] && CMD="BENCH_MIB=$BENCH_MIB $CMD"
[[ -z ${BENCH_MIB:-} && ${BENCH_GIB:-2} != 2 ]] && CMD="BENCH_GIB=$BENCH_GIB $CMD"
[[ $BLOBS != 8 ]] && CMD="BENCH_BLOBS=$BLOBS $CMD"
[[ $RUNS != 3 ]] && CMD="BENCH_RUNS=$RUNS $CMD"

table() {
    cat <<EOF
Payload: $PAYLOAD bytes ($GIB GiB) in $BLOBS incompressible blobs of $BLOB_BYTES bytes; bundle file $BUNDLE_BYTES bytes.
Times are the best of $RUNS runs; peak RSS the worst of $RUNS. GB/s = 10^9 bytes of payload per second.

| Measurement | Ours | Peer (same bytes) | Ratio | Target | Result |
|---|---|---|---|---|---|
| create | ${BEST[create]} s ($(rate create) GB/s) | \`tar -c \| zstd -T0\` + fsync, then \`sha256sum\`: ${BEST[create_peer]} s ($(rate create_peer) GB/s) | peer time / ours = $R_CREATE | (comparison) | — |
| verify vs \`openssl dgst -sha256\` | ${BEST[verify]} s ($(rate verify) GB/s) | ${BEST[openssl]} s ($(rate openssl) GB/s) | $R_OPENSSL × | ≥ 1.8 × | $V_OPENSSL |
| verify vs \`sha256sum\` | ${BEST[verify]} s ($(rate verify) GB/s) | ${BEST[sha256sum]} s ($(rate sha256sum) GB/s) | $R_SHA256SUM × | (comparison) | — |
| verify on 1 core (\`taskset -c 0\`) vs openssl | ${BEST[verify_1core]} s ($(rate verify_1core) GB/s) | ${BEST[openssl]} s ($(rate openssl) GB/s) | $R_1CORE × | (diagnostic) | — |
| verify vs \`openssl speed -evp sha256\` (1 core, 1 MiB blocks, no I/O) | $(rate verify) GB/s | $OSPEED GB/s | $R_SPEED × | (diagnostic) | — |
| apply vs \`cp\` + fsync | ${BEST[apply]} s ($(rate apply) GB/s) | ${BEST[cp_fsync]} s ($(rate cp_fsync) GB/s) | $R_CP × | ≥ 0.7 × | $V_CP |
| apply vs \`cp\` without fsync | ${BEST[apply]} s ($(rate apply) GB/s) | ${BEST[cp]} s ($(rate cp) GB/s) | $R_CP_NOSYNC × | (information) | — |
| apply: bytes read / payload | ${RCHAR[apply]} B read | — | $READ_X | each byte once (< 1.01) | $V_READ |
| peak RSS create | $(mib create) MiB | tar \| zstd -T0 + sha256sum: $(mib create_peer) MiB | | < 64 MiB | $(lt "${RSS[create]}" 65536) |
| peak RSS verify | $(mib verify) MiB | openssl: $(mib openssl) MiB | | < 64 MiB | $(lt "${RSS[verify]}" 65536) |
| peak RSS apply | $(mib apply) MiB | cp: $(mib cp) MiB | | < 64 MiB | $(lt "${RSS[apply]}" 65536) |

All runs (seconds): $(for k in create create_peer verify verify_1core openssl sha256sum apply cp_fsync cp; do printf '%s [%s]; ' "$k" "${TIMES[$k]}"; done)
EOF
}

echo
table


if [[ $WRITE == 1 ]]; then
    OUT=${PERF_DOC:-$REPO/docs/performance.md}
    CPU=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    SHANI=$(grep -qw sha_ni /proc/cpuinfo && echo "yes" || echo "no")
    MEM=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    NOTES=()
    MISSES=()
    for v in "verify ≥ 1.8 × openssl:$V_OPENSSL" "apply ≥ 0.7 × cp:$V_CP" "apply reads each byte once:$V_READ" "peak RSS < 64 MiB:$V_MEM"; do
        [[ ${v##*:} == MISS ]] && MISSES+=("${v%:*}")
    done
    if (( ${#MISSES[@]} )); then
        NOTES+=("- **Missed in this run:** $(IFS=';'; echo "${MISSES[*]}" | sed 's/;/; /g').")
    else
        NOTES+=("- Every target was met in this run.")
    fi
    NOTES+=("- verify: one worker pinned to one core runs at $(rate verify_1core) GB/s, $R_1CORE × \`openssl dgst\`; two workers on two cores are $SCALING × faster than one. \`openssl dgst\` reads its input 8 KiB at a time, which puts its stream rate ($(rate openssl) GB/s) below what openssl's SHA-256 does on the same core without I/O ($OSPEED GB/s, \`openssl speed\`). Against that raw rate verify is $R_SPEED ×, so the margin on the 1.8 × target comes partly from the 8 KiB reads, and two cores can never give more than 2 ×.")
    NOTES+=("- apply: apply fsyncs every blob it writes (the content store commits a blob only after fsync and rename), so the like-for-like peer is \`cp\` followed by an fsync of the copies; both then spend most of their time in writeback to the disk. Plain \`cp\` (copy_file_range, no fsync) only fills the page cache and finishes $(calc '%.1f' "${BEST[apply]} / ${BEST[cp]}") × sooner: against it apply is $R_CP_NOSYNC ×. apply read $READ_X × the payload (every byte once: the bundle is hashed as it is written, not in a separate pass).")
    NOTES+=("- create reads every source about twice ($(calc '%.2f' "${RCHAR[create]} / $PAYLOAD") × the payload: one pass to hash the snapshot's files, a 4 MiB zstd probe per blob, and a pass that hashes again while copying into the bundle) and fsyncs the bundle; the peer reads three times (tar, zstd through the pipe, sha256sum). \`sha256sum\` (coreutils) runs at $(rate sha256sum) GB/s here, a portable-C SHA-256 rate, and is $(calc '%.0f' "100 * ${BEST[sha256sum]} / ${BEST[create_peer]}") % of the peer's time.")
    if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.3) }'; then
        NOTES+=("- The machine was not idle when the run started (load average $LOAD_START); other work lowers the two-core figures most. The spread of the runs is listed under the table; times are best-of-$RUNS for that reason.")
    fi
    {
        cat <<EOF
<!-- bundle-bench:begin -->
## Bundle create, verify and apply

Bundle create, verify and apply on a $GIB GiB bundle of $BLOBS incompressible
blobs, each against the standard tool over the same bytes, all inputs in the
page cache, measured in one run of:

\`\`\`sh
$CMD
\`\`\`

### Machine

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- CPU: $CPU, $(nproc) cores online (SHA extensions: $SHANI); memory $MEM
- Kernel: $(uname -sr)
- Scratch filesystem: $FSTYPE ($(df --output=source "$BASE" | tail -n 1))
- Tools: $(openssl version | cut -d' ' -f1-2), $(sha256sum --version | head -n 1), $(zstd --version | sed 's/^\*\** *//; s/,.*//'), $(tar --version | head -n 1), $(cp --version | head -n 1)
- Binaries: \`cargo build --release\` at commit $(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- bundle agent builder Cargo.toml Cargo.lock || echo ' (with uncommitted changes)')
- Load average at start / end: $LOAD_START / $(cut -d' ' -f1-3 /proc/loadavg)

### Results

$(table)

### Method

- The payload is $BLOBS files of \`/dev/urandom\` bytes packed as one Hugging Face
  snapshot (\`[[huggingface]]\`), so every blob is stored raw (zstd saves nothing).
- Before every timed run its inputs are read once (\`cat > /dev/null\`) so they come
  from the page cache, and \`sync\` flushes writeback left by the previous run.
- create, verify and apply run the release binaries with \`--quiet\`; apply runs on a
  fresh node root each time (role \`gpu\`, the signing key in its trust store).
- create and apply fsync what they write, so the peer commands that write are timed
  with an fsync of exactly the files they wrote (\`sync FILE...\`): \`tar -cf - src |
  zstd -T0 -q -o peer.tar.zst && sync peer.tar.zst && sha256sum src/weights/*\` for
  create and \`cp FILES DIR && sync DIR/*\` for apply. Plain \`cp\` is shown for information.
- \`openssl dgst -sha256\` and \`sha256sum\` hash the $BLOBS blob files in one process,
  one stream. The 1-core verify row pins the agent to CPU 0 with \`taskset\`, which
  makes it start one hashing worker.
- Wall time: \`date +%s%N\` around \`/usr/bin/time\`; best of $RUNS runs. Peak RSS:
  \`/usr/bin/time -f %M\` (the largest process of the command), worst of $RUNS runs.
- Bytes read: the difference in the benchmark shell's \`rchar\` (\`/proc/self/io\`
  accumulates reaped children) across the apply run; it includes the few hundred KiB
  the loader reads to start the binary.

### Notes

$(printf '%s\n' "${NOTES[@]}")
<!-- bundle-bench:end -->
EOF
    } >"$W/section.md"
    replace_section "$OUT" '<!-- bundle-bench:begin -->' '<!-- bundle-bench:end -->' "$W/section.md"
    log "wrote $OUT"
fi
