#!/usr/bin/env bash
# The main job. Image building (`owui-builder build images/allinone.toml`)
# is not built yet; until it is, this builds both tools and runs the offline
# bundle path end to end for the all-in-one role: a signing key, a signed
# bundle of a small generated model, and its verify + apply on a scratch node
# root under out/. Usage: bash scripts/main-job.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out}
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -eq 0 ] && ! command -v minisign >/dev/null; then
    apt-get update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq minisign >/dev/null
fi

echo "== building owui-builder and owui-agent (release)"
cargo build --release -p owui-builder -p owui-agent
builder=target/release/owui-builder
agent=target/release/owui-agent

mkdir -p "$out"
if [ ! -f "$out/keys/owui.key" ]; then
    echo "== generating the signing key in $out/keys"
    "$builder" key generate --out "$out/keys"
fi

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
echo "== done: Ollama models at $node/var/lib/ollama/models, HF cache at $node/var/lib/owui/huggingface/hub"
