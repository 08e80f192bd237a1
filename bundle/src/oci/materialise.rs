//! Node side: images from the content store written out as an OCI image
//! layout (blobs hard-linked), for skopeo to copy into podman's storage.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::layout::{OCI_INDEX, REF_NAME};
use super::reference::check_reference;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::items::OciImage;
use crate::store::ContentStore;

/// Node side: makes `dest` an OCI image layout holding exactly `images`,
/// blobs hard-linked from the store. Safe to run again; blobs of images no
/// longer listed are dropped so the layout does not pin them on disk.
pub fn write_layout(store: &ContentStore, images: &[OciImage], dest: &Path) -> Result<()> {
    let mut refs = BTreeSet::new();
    let mut wanted = BTreeSet::new();
    for image in images {
        check_reference(&image.reference)?;
        if !refs.insert(image.reference.as_str()) {
            return Err(Error::invalid(
                format!("OCI reference {:?}", image.reference),
                "listed twice",
            ));
        }
        for digest in std::iter::once(&image.manifest).chain(&image.blobs) {
            if !store.contains(digest) {
                return Err(Error::invalid(
                    format!("image {:?}", image.reference),
                    format!("blob {digest} is not in the content store"),
                ));
            }
            wanted.insert(*digest);
        }
    }
    let blobs_dir = dest.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir).at("creating", &blobs_dir)?;
    for digest in &wanted {
        link_blob(store, digest, &blobs_dir.join(digest.hex()))?;
    }
    fsync_dir(&blobs_dir)?;

    let manifests: Vec<serde_json::Value> = images
        .iter()
        .map(|image| {
            serde_json::json!({
                "mediaType": image.media_type,
                "digest": image.manifest.to_string(),
                "size": image.manifest_size,
                "annotations": { REF_NAME: image.reference },
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let index_bytes = serde_json::to_vec_pretty(&index)
        .map_err(|e| Error::internal("index.json", e.to_string()))?;
    write_atomic(
        &dest.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    write_atomic(&dest.join("index.json"), &index_bytes, 0o644)?;

    for entry in fs::read_dir(&blobs_dir).at("listing", &blobs_dir)? {
        let entry = entry.at("listing", &blobs_dir)?;
        let stale = entry
            .file_name()
            .to_str()
            .and_then(|n| Sha256Digest::from_hex(n).ok())
            .is_some_and(|d| !wanted.contains(&d));
        if stale {
            fs::remove_file(entry.path()).at("removing", &entry.path())?;
        }
    }
    Ok(())
}

/// Links one store blob into the layout, keeping a link that is already
/// the store's file and replacing anything else found there.
fn link_blob(store: &ContentStore, digest: &Sha256Digest, dest: &Path) -> Result<()> {
    let src = store.blob_path(digest);
    match fs::symlink_metadata(dest) {
        Ok(existing) => {
            let source = fs::metadata(&src).at("reading", &src)?;
            if existing.dev() == source.dev() && existing.ino() == source.ino() {
                return Ok(());
            }
            fs::remove_file(dest).at("removing", dest)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("reading", dest),
    }
    store.link_blob(digest, dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::fixtures::*;
    use crate::oci::pack;

    #[test]
    fn write_layout_links_blobs_and_is_idempotent() {
        let src = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let node = tempfile::tempdir().unwrap();
        layout(
            src.path(),
            &[(Some("ex.org/a:v1"), "one"), (Some("ex.org/b:v1"), "two")],
        );
        let store = ContentStore::open(&node.path().join("store")).unwrap();
        let (a, blobs) = pack(&spec("ex.org/a:v1", src.path()), scratch.path()).unwrap();
        crate::store::commit_packed(&store, &blobs);
        let (b, blobs) = pack(&spec("ex.org/b:v1", src.path()), scratch.path()).unwrap();
        crate::store::commit_packed(&store, &blobs);

        let dest = node.path().join("layout");
        write_layout(&store, &[a.clone(), b.clone()], &dest).unwrap();
        write_layout(&store, &[a.clone(), b.clone()], &dest).unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dest.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
        assert_eq!(
            index["manifests"][0]["annotations"][REF_NAME],
            "ex.org/a:v1"
        );
        assert_eq!(index["manifests"][0]["digest"], a.manifest.to_string());
        let blob = dest.join("blobs/sha256").join(a.manifest.hex());
        assert_eq!(
            fs::metadata(&blob).unwrap().ino(),
            fs::metadata(store.blob_path(&a.manifest)).unwrap().ino()
        );
        // The written layout reads back as the same image.
        let (again, _) = pack(&spec("ex.org/b:v1", &dest), scratch.path()).unwrap();
        assert_eq!(again, b);

        // Dropping an image drops the blobs only it used.
        write_layout(&store, std::slice::from_ref(&b), &dest).unwrap();
        assert!(!blob.exists());
        let held = fs::read_dir(dest.join("blobs/sha256")).unwrap().count();
        assert_eq!(held, 1 + b.blobs.len());

        let mut missing = b.clone();
        missing.blobs.push(Sha256Digest::of(b"nowhere"));
        let err = write_layout(&store, &[missing], &dest).unwrap_err();
        assert!(
            err.to_string().contains("not in the content store"),
            "{err}"
        );
    }
}
