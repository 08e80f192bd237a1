#!/usr/bin/env python3
"""Stand-in OCI images under the names the gpu and app specs pre-fill.

No public container registry is reachable where the appliance is built and
tested, so the image benchmark and the image tests fill
images/content/oci/<name> with one-file OCI image layouts (a single STAND-IN
file) carrying the real references; they cannot run. Images that do run are
built by serving-images.sh. Usage: standin-oci.py DIR
"""
import io, os, sys, tarfile, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oci_layout  # noqa: E402

root = sys.argv[1]
refs = {
    "open-webui": "ghcr.io/open-webui/open-webui:v0.6.5",
    "open-terminal": "ghcr.io/open-webui/open-terminal:v0.1.0",
    "ollama": "docker.io/ollama/ollama:0.6.5",
    "vllm-openai": "docker.io/vllm/vllm-openai:v0.8.4",
}
for name, ref in refs.items():
    with tempfile.NamedTemporaryFile(suffix=".tar") as layer:
        with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as t:
            text = f"stand-in for {ref}: put the real image here\n".encode()
            info = tarfile.TarInfo("STAND-IN")
            info.size, info.mtime = len(text), 0
            t.addfile(info, io.BytesIO(text))
        layer.flush()
        oci_layout.write(os.path.join(root, name), ref, layer.name, {"Cmd": ["/STAND-IN"]})
