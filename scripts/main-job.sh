#!/usr/bin/env bash
# The main job: builds both tools, a signing key, and the signed all-in-one
# image that serves chat: Open WebUI, llama.cpp's llama-server, PostgreSQL
# with pgvector, Redis and nginx, with a small generated model pre-filled.
# The two container images are built from PyPI and Debian
# (scripts/serving-images.sh, cached) and pushed to a registry on this
# machine standing in for ghcr.io (scripts/local-registry.sh); a copy of
# images/ is locked to the pushed digests (`owui-builder oci lock`) and the
# builder pulls from the registry by digest as it would from ghcr.io. Then
# `owui-builder verify-image` and minisign check the image, and the offline
# bundle path runs end to end: a signed bundle of the model, verified and
# applied on a scratch node root under out/. Needs root (mmdebstrap) and
# Debian's and PyPI's package registries. Usage: bash scripts/main-job.sh [OUT_DIR]
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
# protobuf-compiler: the agent's etcd client (etcd-client) builds its gRPC code with protoc.
need="protobuf-compiler minisign mmdebstrap erofs-utils cryptsetup-bin dosfstools mtools binutils e2fsprogs systemd skopeo docker-registry apache2-utils openssl curl python3-pip python3-venv"
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

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
cache=${OWUI_CACHE:-/var/cache/owui-builder}

echo "== the model: a tiny random-weight llama model llama.cpp runs (scripts/tiny-gguf.py)"
# gguf and numpy from PyPI in a virtual environment of their own (Debian's
# Python takes no packages into its own tree).
tools="$cache/python-tools"
if ! "$tools/bin/python" -c 'import gguf, numpy' 2>/dev/null; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet gguf numpy
fi
mkdir -p "$out/sample"
"$tools/bin/python" scripts/tiny-gguf.py "$out/sample/tiny.gguf"
reg="$out/registry"
echo "== a registry on this machine standing in for ghcr.io ($reg)"
address=$(bash scripts/local-registry.sh start "$reg")
trap 'bash scripts/local-registry.sh stop "$reg"' EXIT
echo "== the container images: Open WebUI from PyPI, llama-server from Debian (built once, then cached in $cache)"
bash scripts/serving-images.sh --cache "$cache" --push "$address" \
    --cert-dir "$reg/certs.d/$address" --authfile "$reg/auth.json"
pull=(--cache "$cache" --registry-mirror "ghcr.io=$address"
      --registry-certs "$reg/certs.d" --registry-config "$reg/auth.json")

spec="$out/spec"
echo "== locking a copy of images/ to the pushed digests ($spec/images/allinone.toml)"
rm -rf "$spec"
mkdir -p "$spec/images/content/models"
cp -r images/*.toml images/overlay "$spec/images/"
cp -r units firmware "$spec/"
cp "$out/sample/tiny.gguf" "$spec/images/content/models/"
cat >>"$spec/images/allinone.toml" <<'TOML'

# Added by the main job: the model llama-server serves.
[[ollama]]
name = "tiny:latest"
gguf = "content/models/tiny.gguf"
TOML
"$builder" oci lock "$spec/images/allinone.toml" "${pull[@]}"

echo "== building the all-in-one image into $out/images (stages print their times)"
"$builder" build "$spec/images/allinone.toml" --key "$out/keys/owui.key" --out "$out/images" \
    --agent "$agent" "${pull[@]}"
img="$out/images/allinone-0.1.0.img"
"$builder" verify-image "$img" --pub "$out/keys/owui.pub"
minisign -V -m "$out/images/allinone-0.1.0.manifest.json" -p "$out/keys/owui.pub"

echo "== a signed seed for a demo node on a FAT medium labelled OWUI-SEED: $out/seed.img"
mkdir -p "$out/seed"
"$builder" seed create --node demo-1 --role allinone --key "$out/keys/owui.key" --out "$out/seed/seed.toml"
rm -f "$out/seed.img"
mkfs.vfat -C -n OWUI-SEED "$out/seed.img" 2048 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$out/seed.img" "$out/seed/seed.toml" "$out/seed/seed.toml.minisig" ::

echo "== a signed bundle for the site: the same model under another name"
mkdir -p "$out/sample/hf"
printf '{"model_type": "bert", "hidden_size": 8}\n' >"$out/sample/hf/config.json"
cat > "$out/sample/bundle.toml" <<'TOML'
channel = "models"
sequence = 1
roles = ["allinone", "gpu"]

[[ollama]]
name = "sample:tiny"
gguf = "tiny.gguf"

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
echo "== done: image $img (boot it: README, \"Boot the image\"; write it to a disk with dd: docs/images.md),"
echo "   on the scratch node: Ollama models at $node/var/lib/ollama/models, HF cache at $node/var/lib/owui/huggingface/hub"
