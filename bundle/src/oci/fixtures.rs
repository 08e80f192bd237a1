//! Test fixtures shared by the OCI unit tests: tiny images written into an
//! OCI image layout by hand.

use std::fs;
use std::path::Path;

use super::layout::{OCI_MANIFEST, REF_NAME};
use crate::digest::Sha256Digest;
use crate::spec::OciSpec;

pub(super) const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// A tiny image in a layout: one uncompressed layer holding a file
/// whose text is `content`. Returns the manifest digest.
pub(super) fn add_image(root: &Path, content: &str) -> (Sha256Digest, u64) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, "hello.txt", content.as_bytes())
        .unwrap();
    let layer = tar.into_inner().unwrap();
    let (layer_d, layer_n) = put(root, &layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_d.to_string()] },
    }))
    .unwrap();
    let (config_d, config_n) = put(root, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config_d.to_string(), "size": config_n },
        "layers": [{ "mediaType": LAYER, "digest": layer_d.to_string(), "size": layer_n }],
    }))
    .unwrap();
    put(root, &manifest)
}

pub(super) fn put(root: &Path, data: &[u8]) -> (Sha256Digest, u64) {
    let d = Sha256Digest::of(data);
    let dir = root.join("blobs/sha256");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(d.hex()), data).unwrap();
    (d, data.len() as u64)
}

pub(super) fn entry(d: Sha256Digest, n: u64, media: &str, name: Option<&str>) -> serde_json::Value {
    let mut e = serde_json::json!({ "mediaType": media, "digest": d.to_string(), "size": n });
    if let Some(name) = name {
        e["annotations"] = serde_json::json!({ REF_NAME: name });
    }
    e
}

pub(super) fn write_index(root: &Path, entries: Vec<serde_json::Value>) {
    fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": entries });
    fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A layout with one image per (name, content).
pub(super) fn layout(root: &Path, images: &[(Option<&str>, &str)]) -> Vec<Sha256Digest> {
    let mut entries = Vec::new();
    let mut digests = Vec::new();
    for (name, content) in images {
        let (d, n) = add_image(root, content);
        entries.push(entry(d, n, OCI_MANIFEST, *name));
        digests.push(d);
    }
    write_index(root, entries);
    digests
}

pub(super) fn spec(reference: &str, source: &Path) -> OciSpec {
    OciSpec {
        reference: reference.to_string(),
        source: Some(source.to_path_buf()),
    }
}
