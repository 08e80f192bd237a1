#!/usr/bin/env bash
# The main job: builds both tools, a signing key, and the signed all-in-one
# image (`owui-builder build images/allinone.toml`) with stand-in container
# images (no registry is reachable here: each is a one-file OCI image under
# the real name, written to images/content/oci), then checks it with
# `owui-builder verify-image` and minisign. Then the offline bundle path end
# to end: a signed bundle of a small generated model, verified and applied on
# a scratch node root under out/. Needs root (mmdebstrap) and Debian's
# package registry. Usage: bash scripts/main-job.sh [OUT_DIR]
set -euo pipefail
# What this writes is read back as a trust store, which a node refuses when
# group or others could change it: make nothing group- or world-writable.
umask 022
cd "$(dirname "$0")/.."
out=${1:-out}
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    echo "main-job.sh: run as root (mmdebstrap builds the image's root filesystem)" >&2
    exit 1
fi
need="minisign mmdebstrap erofs-utils cryptsetup-bin dosfstools mtools binutils e2fsprogs systemd skopeo"
missing=$(for p in $need; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing >/dev/null
fi

echo "== building owui-builder and owui-agent (release)"
cargo build --release -p owui-builder -p owui-agent
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
builder=$target/release/owui-builder
agent=$target/release/owui-agent

mkdir -p "$out"
if [ ! -f "$out/keys/owui.key" ]; then
    echo "== generating the signing key in $out/keys"
    "$builder" key generate --out "$out/keys"
fi

echo "== stand-in container images in images/content/oci (no registry here)"
python3 scripts/standin-oci.py images/content/oci

echo "== building the all-in-one image into $out/images (stages print their times)"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
"$builder" build images/allinone.toml --key "$out/keys/owui.key" --out "$out/images" --agent "$agent"
img="$out/images/allinone-0.1.0.img"
"$builder" verify-image "$img" --pub "$out/keys/owui.pub"
minisign -V -m "$out/images/allinone-0.1.0.manifest.json" -p "$out/keys/owui.pub"

echo "== generating a small sample model in $out/sample"
mkdir -p "$out/sample/hf"
python3 - "$out/sample" <<'PY'
import os, struct, sys
d = sys.argv[1]
def s(b): return struct.pack('<Q', len(b)) + b
gguf = (b'GGUF' + struct.pack('<IQQ', 3, 0, 2)
        + s(b'general.architecture') + struct.pack('<I', 8) + s(b'llama')
        + s(b'general.file_type') + struct.pack('<II', 4, 2)
        + bytes(range(256)) * 4096)
open(os.path.join(d, 'sample.gguf'), 'wb').write(gguf)
open(os.path.join(d, 'sample.tmpl'), 'w').write('{{ .System }}\n{{ .Prompt }}\n')
open(os.path.join(d, 'hf', 'config.json'), 'w').write('{"model_type": "bert", "hidden_size": 8}\n')
PY
cat > "$out/sample/bundle.toml" <<'TOML'
channel = "models"
sequence = 1
roles = ["allinone", "gpu"]

[[ollama]]
name = "sample:tiny"
gguf = "sample.gguf"
template = "sample.tmpl"

[[huggingface]]
repo = "owui/sample-embed"
revision = "0000000000000000000000000000000000000001"
path = "hf"
TOML

echo "== packing $out/sample.owb"
"$builder" bundle create "$out/sample/bundle.toml" --key "$out/keys/owui.key" --out "$out/sample.owb"

echo "== checking the signature with minisign"
"$builder" bundle inspect "$out/sample.owb" --extract "$out/sample/extracted" >/dev/null
minisign -V -m "$out/sample/extracted/manifest.json" -p "$out/keys/owui.pub"

node="$out/node"
echo "== verifying and applying on a scratch all-in-one node at $node"
rm -rf "$node"
mkdir -p "$node/etc/owui/trust"
cp "$out/keys/owui.pub" "$node/etc/owui/trust/"
printf 'node = "allinone-1"\nrole = "allinone"\n' > "$node/etc/owui/seed.toml"
"$agent" --root "$node" bundle verify "$out/sample.owb"
"$agent" --root "$node" bundle apply "$out/sample.owb"
"$agent" --root "$node" bundle list
echo "== done: image $img (write it to a disk with dd; docs/images.md),"
echo "   Ollama models at $node/var/lib/ollama/models, HF cache at $node/var/lib/owui/huggingface/hub"
