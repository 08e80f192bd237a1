#!/usr/bin/env bash
# Image build benchmark: cold and warm build time of the all-in-one image,
# image size per role, boot-to-READY time under qemu (software emulation,
# UEFI), and mkosi (Debian's package) building the all-in-one package set in
# the same run.
#
#   bash benches/image.sh            # print the results table
#   bash benches/image.sh --write    # ... and write its section of docs/performance.md
#
# Environment:
#   BENCH_ROLES="allinone app db gpu"  roles whose image size is measured
#   BENCH_DIR=          scratch directory (default: mktemp -d under /var/tmp)
#   PERF_DOC=           the document --write updates (default docs/performance.md)
#
# Method (also written into docs/performance.md):
# - Release binaries; SOURCE_DATE_EPOCH=1700000000; stand-in container
#   images (scripts/standin-oci.py) as in the main job.
# - Downloaded .deb files are shared (/var/cache/owui-builder/debs, filled
#   by a first build when empty): the network is not what is measured.
# - Cold: an empty stage cache. Warm: the same spec again with the cache the
#   cold build left (the rootfs stage is reused; content, UKI, ESP, disk and
#   manifest run again).
# - Boot to READY: qemu-system-x86_64 -accel tcg (no KVM on these machines),
#   2 vCPUs, 1.5 GiB, OVMF; from starting qemu to the
#   "OWUI-AGENT READY" line on the serial console, with a seed medium.
# - mkosi: the Debian 12 package, Distribution=debian Release=trixie,
#   --format directory (mkosi 14 cannot make a verity/UKI disk from Debian
#   12's tools), --with-docs (without it mkosi 14 fails removing docs inside
#   its nspawn workspace), the same package list; timed the same way, with
#   the ratio to our cold build, or reported as failed with its last line.

set -euo pipefail
# shellcheck source=benches/lib.sh
. "$(dirname "$0")/lib.sh"
bench_args "$@"
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap)"
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

export SOURCE_DATE_EPOCH=1700000000
ROLES=${BENCH_ROLES:-"allinone app db gpu"}
DIR=${BENCH_DIR:-$(mktemp -d /var/tmp/owui-image-bench.XXXXXX)}
DEBS=/var/cache/owui-builder/debs
build_release owui-builder owui-agent
builder=$RELEASE/owui-builder
agent=$RELEASE/owui-agent
python3 scripts/standin-oci.py images/content/oci
[ -f "$DIR/keys/owui.key" ] || "$builder" key generate --out "$DIR/keys" >/dev/null

build() { # build ROLE CACHE OUT: prints seconds
    local t0; t0=$(now)
    "$builder" build "images/$1.toml" --key "$DIR/keys/owui.key" --out "$3" \
        --agent "$agent" --cache "$2" --json >"$3.json" || { cat "$3.json" >&2; die "building $1 failed"; }
    since "$t0"
}
stage_times() { # stage_times BUILD_JSON: "rootfs 41.2 s (cached), ..."
    python3 - "$1" <<'PY'
import json, sys
stages = json.load(open(sys.argv[1]))["stages"]
print(", ".join("%s %.1f s%s" % (s["stage"], s["seconds"], " (cached)" if s["cached"] else "") for s in stages))
PY
}
fresh_cache() { # a stage cache holding only the shared packages
    rm -rf "$1"; mkdir -p "$1/debs"
    if [ -d "$DEBS" ]; then cp -al "$DEBS/." "$1/debs/"; fi
}

log "all-in-one: first build fills the package cache when empty"
mkdir -p "$DEBS"
fresh_cache "$DIR/cache-cold"
cold=$(build allinone "$DIR/cache-cold" "$DIR/out-cold") || exit 1
cp -al "$DIR/cache-cold/debs/." "$DEBS/" 2>/dev/null || true
warm=$(build allinone "$DIR/cache-cold" "$DIR/out-warm") || exit 1
stages_cold=$(stage_times "$DIR/out-cold.json")
# The NVIDIA step of the cold build (DKMS compile and packing), from the
# .seconds file nvidia-modules.sh leaves beside the module package it built.
nvidia_s=$(cat "$DIR"/cache-cold/nvidia-modules/*.seconds 2>/dev/null | awk '{ s += $2 } END { print s + 0 }')
stages_warm=$(stage_times "$DIR/out-warm.json")
log "cold $cold s, warm $warm s"

sizes=""
for role in $ROLES; do
    out="$DIR/out-cold"
    if [ "$role" != allinone ]; then
        out="$DIR/out-$role"
        build "$role" "$DIR/cache-cold" "$out" >/dev/null || exit 1
    fi
    img=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"])' "$out.json")
    bytes=$(stat -c %s "$img")
    sizes+="| $role | $(( bytes / 1048576 )) MiB |"$'\n'
    log "$role: $bytes bytes"
done

log "boot to READY under qemu (tcg)"
boot="$DIR/boot"; mkdir -p "$boot"
img=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["image"])' "$DIR/out-cold.json")
# Room for the data partition first boot makes (partitions.data; sparse).
data_mib=$(python3 - <<'PY'
import tomllib
base = tomllib.load(open("images/base.toml", "rb")).get("partitions", {})
role = tomllib.load(open("images/allinone.toml", "rb")).get("partitions", {})
print({**base, **role}["data"])
PY
)
cp "$img" "$boot/disk.img"; truncate -s "+$(( data_mib + 1024 ))M" "$boot/disk.img"
printf 'node = "bench-1"\nrole = "allinone"\n' >"$boot/seed.toml"
rm -f "$boot/seed.img"; mkfs.vfat -C -n OWUI-SEED "$boot/seed.img" 2048 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i "$boot/seed.img" "$boot/seed.toml" ::seed.toml
cp /usr/share/OVMF/OVMF_VARS_4M.fd "$boot/vars.fd"; rm -f "$boot/serial.log"
t0=$(now)
qemu-system-x86_64 -machine q35 -accel tcg -m 1536 -smp 2 -display none -nodefaults -no-reboot \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive "if=pflash,format=raw,unit=1,file=$boot/vars.fd" \
    -drive "if=virtio,format=raw,file=$boot/disk.img" \
    -drive "if=virtio,format=raw,readonly=on,file=$boot/seed.img" \
    -serial "file:$boot/serial.log" & qemu=$!
ready="not seen in 600 s"
for _ in $(seq 1 1200); do
    if grep -aq 'OWUI-AGENT READY' "$boot/serial.log" 2>/dev/null; then ready="$(since "$t0") s"; break; fi
    sleep 0.5
done
kill "$qemu" 2>/dev/null || true; wait "$qemu" 2>/dev/null || true
log "READY: $ready"

mkosi_result="mkosi not installed (apt-get install mkosi)"
if command -v mkosi >/dev/null; then
    m="$DIR/mkosi"; rm -rf "$m"; mkdir -p "$m"
    pkgs=$(python3 - <<'PY'
import tomllib
base = tomllib.load(open("images/base.toml", "rb"))["debian"]["packages"]
role = tomllib.load(open("images/allinone.toml", "rb"))["debian"]["packages"]
print(",".join(sorted(set(base + role))))
PY
)
    t0=$(now)
    if (cd "$m" && timeout 900 mkosi --distribution debian --release trixie --format directory --with-docs \
            --package "$pkgs" --output image build >"$m/log" 2>&1); then
        mkosi_s=$(since "$t0")
        ratio=$(awk -v a="$cold" -v b="$mkosi_s" 'BEGIN { printf "%.2f", a / b }')
        # mkosi installs the spec's packages only, not the GPU set's modules.
        ratio_no_gpu=$(awk -v a="$cold" -v n="$nvidia_s" -v b="$mkosi_s" 'BEGIN { printf "%.2f", (a - n) / b }')
        mkosi_result="$mkosi_s s ($(mkosi --version 2>/dev/null | head -1), directory output: package install only, no initrd/erofs/verity/UKI/disk, no NVIDIA modules); our cold build takes ${ratio}x its time, ${ratio_no_gpu}x without its NVIDIA step"
    else
        mkosi_result="failed after $(since "$t0") s ($(mkosi --version 2>/dev/null | head -1)): $(grep -v '^$' "$m/log" | tail -1 | cut -c1-160)"
    fi
fi
log "mkosi: $mkosi_result"

section=$(mktemp)
{
    echo '<!-- image-bench:begin -->'
    echo '## Image builds (`bash benches/image.sh --write`)'
    echo
    echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; method in benches/image.sh."
    echo
    echo '| measure | result |'
    echo '| --- | --- |'
    echo "| all-in-one, cold (empty stage cache, packages already downloaded) | $cold s ($stages_cold) |"
    echo "| of which the NVIDIA step (driver set download, DKMS compile for the image kernel, packing) | $nvidia_s s |"
    echo "| all-in-one, warm (unchanged spec, rootfs stage reused) | $warm s ($stages_warm) |"
    echo "| boot to READY under qemu -accel tcg (no KVM), 2 vCPUs | $ready |"
    echo "| mkosi, the same package set | $mkosi_result |"
    echo
    echo '| role | image size |'
    echo '| --- | --- |'
    printf '%s' "$sizes"
    echo '<!-- image-bench:end -->'
} >"$section"
cat "$section"
if [ "$WRITE" = 1 ]; then
    replace_section "${PERF_DOC:-docs/performance.md}" '<!-- image-bench:begin -->' '<!-- image-bench:end -->' "$section"
fi
rm -f "$section"
