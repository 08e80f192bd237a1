#!/usr/bin/env python3
"""Stand-in OCI images under the names images/allinone.toml pre-fills.

No container registry is reachable where the appliance is built and tested,
so the main job and the image benchmark fill images/content/oci/<name> with
one-file OCI image layouts (a single STAND-IN file) carrying the real
references. Put real OCI layouts (skopeo copy ... oci:DIR:REF) there for a
real image. Usage: standin-oci.py DIR
"""
import hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
refs = {
    "open-webui": "ghcr.io/open-webui/open-webui:v0.6.5",
    "open-terminal": "ghcr.io/open-webui/open-terminal:v0.1.0",
    "ollama": "docker.io/ollama/ollama:0.6.5",
    "vllm-openai": "docker.io/vllm/vllm-openai:v0.8.4",
}
for name, ref in refs.items():
    d = os.path.join(root, name)
    blobs = os.path.join(d, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    def put(data):
        h = hashlib.sha256(data).hexdigest()
        open(os.path.join(blobs, h), "wb").write(data)
        return "sha256:" + h, len(data)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        text = f"stand-in for {ref}: put the real image here\n".encode()
        info = tarfile.TarInfo("STAND-IN")
        info.size, info.mtime = len(text), 0
        t.addfile(info, io.BytesIO(text))
    layer, layer_size = put(buf.getvalue())
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/STAND-IN"]},
                         "rootfs": {"type": "layers", "diff_ids": [layer]}}).encode()
    cfg, cfg_size = put(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": layer_size}]}).encode()
    man, man_size = put(manifest)
    open(os.path.join(d, "oci-layout"), "w").write('{"imageLayoutVersion": "1.0.0"}')
    json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": man, "size": man_size, "annotations": {"org.opencontainers.image.ref.name": ref}}]},
        open(os.path.join(d, "index.json"), "w"))
