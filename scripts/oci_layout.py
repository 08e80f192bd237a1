"""Writes single-layer OCI image layouts (image-spec 1.0) from a root
filesystem tarball, the same bytes for the same input: the layer is
gzip-compressed with no name or time in its header, and the config's
times are SOURCE_DATE_EPOCH. Used by standin-oci.py and serving-images.sh;
as a command: oci_layout.py ROOTFS.tar REF OUT_DIR CONFIG.json, where
CONFIG.json holds the image's `config` object (Entrypoint, Env, ...).
"""
import datetime
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20


def _epoch():
    return int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


class _Blobs:
    def __init__(self, out):
        self.dir = os.path.join(out, "blobs", "sha256")
        os.makedirs(self.dir, exist_ok=True)

    def put_bytes(self, data):
        digest = hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.dir, digest), "wb") as f:
            f.write(data)
        return "sha256:" + digest, len(data)

    def put_layer(self, tar_path):
        """Compresses the tarball into a blob; returns (digest, size, diff_id)."""
        plain = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".layer-")
        with os.fdopen(fd, "wb") as raw, open(tar_path, "rb") as src:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
                while chunk := src.read(CHUNK):
                    plain.update(chunk)
                    gz.write(chunk)
        packed = hashlib.sha256()
        with open(tmp, "rb") as f:
            while chunk := f.read(CHUNK):
                packed.update(chunk)
        digest = packed.hexdigest()
        size = os.path.getsize(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(self.dir, digest))
        return "sha256:" + digest, size, "sha256:" + plain.hexdigest()


def write(out, ref, rootfs_tar, config):
    """Writes the layout for `ref` into `out` (replaced if present) and
    returns the manifest's digest."""
    if os.path.exists(out):
        shutil.rmtree(out)
    blobs = _Blobs(out)
    layer, layer_size, diff_id = blobs.put_layer(rootfs_tar)
    created = datetime.datetime.fromtimestamp(_epoch(), datetime.timezone.utc)
    image_config = {
        "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    cfg, cfg_size = blobs.put_bytes(json.dumps(image_config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": cfg, "size": cfg_size},
        "layers": [{"mediaType": LAYER_GZIP, "digest": layer, "size": layer_size}],
    }
    man, man_size = blobs.put_bytes(json.dumps(manifest, sort_keys=True).encode())
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion": "1.0.0"}')
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": man,
                "size": man_size,
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f, sort_keys=True)
    return man


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: oci_layout.py ROOTFS.tar REF OUT_DIR CONFIG.json")
    tar_path, ref, out, config_path = sys.argv[1:]
    with open(config_path) as f:
        print(write(out, ref, tar_path, json.load(f)))
