//! Helpers shared by the end-to-end tests.

pub mod cluster;
pub mod dbus;
pub mod fake_http;
pub mod image;
pub mod netns;
pub mod nginx;
pub mod nspawn;
pub mod open_webui;
pub mod pki;
pub mod postgres;
pub mod qemu;
pub mod redis;
pub mod registry;
pub mod sbom;
pub mod serving;
pub mod site;
pub mod site_harness;

use std::fs;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `N` distinct loopback ports nobody listens on right now (all held open
/// together while chosen, so no two are the same).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// Writes `data` as a blob of the layout at `dir`; returns `sha256:<hex>`.
fn put_blob(dir: &Path, data: &[u8]) -> io::Result<String> {
    let hex = hex::encode(Sha256::digest(data));
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs)?;
    fs::write(blobs.join(&hex), data)?;
    Ok(format!("sha256:{hex}"))
}

/// A tar with fixed owners, modes and times, so its bytes depend only on
/// the files in it.
fn deterministic_tar(files: &[(&str, &[u8])]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_ustar();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(0);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_size(0);
    tar.append_data(&mut dir, "etc/", io::empty())?;
    for (path, data) in files {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        tar.append_data(&mut header, path, *data)?;
    }
    tar.into_inner()
}

/// Adds a tiny image named `reference` to the OCI image layout in `dir`
/// (creating the layout if needed, replacing an image of the same name)
/// and returns its manifest digest, `sha256:<hex>`.
///
/// The image has one uncompressed layer holding `/etc/owui-test-image`,
/// whose text is the reference: the same reference always gives the same
/// bytes and digest, and different references give different images. It
/// has no binaries, so it can be stored, listed and removed but not run.
pub fn build_test_oci_layout(dir: &Path, reference: &str) -> io::Result<String> {
    build_test_oci_image(dir, reference, &format!("{reference}\n"))
}

/// As [`build_test_oci_layout`], with `content` as the text of
/// `/etc/owui-test-image`: a different content under the same name is a
/// newer image.
pub fn build_test_oci_image(dir: &Path, reference: &str, content: &str) -> io::Result<String> {
    let layer = deterministic_tar(&[("etc/owui-test-image", content.as_bytes())])?;
    let layer_digest = put_blob(dir, &layer)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": { "Labels": { "org.opencontainers.image.title": reference } },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    }))?;
    let config_digest = put_blob(dir, &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }))?;
    let manifest_digest = put_blob(dir, &manifest)?;
    name_in_layout(
        dir,
        reference,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
        }),
    )?;
    Ok(manifest_digest)
}

/// Adds to the layout at `dir` an image index named `name` over one tiny
/// image per `(architecture, content)` (each also named `name-ARCH`);
/// returns the index's digest.
pub fn build_test_oci_index(
    dir: &Path,
    name: &str,
    platforms: &[(&str, &str)],
) -> io::Result<String> {
    let mut entries = Vec::new();
    for (arch, content) in platforms {
        let digest = build_test_oci_image(dir, &format!("{name}-{arch}"), content)?;
        let size = fs::metadata(dir.join("blobs/sha256").join(&digest[7..]))?.len();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "platform": { "os": "linux", "architecture": arch },
        }));
    }
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    }))?;
    let digest = put_blob(dir, &index)?;
    name_in_layout(
        dir,
        name,
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": digest,
            "size": index.len(),
        }),
    )?;
    Ok(digest)
}

/// Lists `entry` in the layout's index.json under `name`, replacing an
/// entry of that name.
fn name_in_layout(dir: &Path, name: &str, mut entry: serde_json::Value) -> io::Result<()> {
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let index_path = dir.join("index.json");
    let mut manifests = match fs::read(&index_path) {
        Ok(data) => {
            let index: serde_json::Value = serde_json::from_slice(&data)?;
            index["manifests"].as_array().cloned().unwrap_or_default()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    manifests.retain(|m| m["annotations"][REF_NAME] != name);
    entry["annotations"] = serde_json::json!({ REF_NAME: name });
    manifests.push(entry);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    fs::write(&index_path, serde_json::to_vec_pretty(&index)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_image_is_deterministic_and_layouts_accumulate() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        let a = build_test_oci_layout(one.path(), "registry.example/owui/a:v1").unwrap();
        assert_eq!(
            build_test_oci_layout(two.path(), "registry.example/owui/a:v1").unwrap(),
            a
        );
        let manifest = fs::read(one.path().join("blobs/sha256").join(&a[7..])).unwrap();
        assert_eq!(
            format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
            a
        );

        let b = build_test_oci_layout(one.path(), "registry.example/owui/b:v1").unwrap();
        assert_ne!(a, b);
        // Building a name again replaces its entry instead of adding one.
        build_test_oci_layout(one.path(), "registry.example/owui/a:v1").unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(one.path().join("index.json")).unwrap()).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["annotations"][REF_NAME].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["registry.example/owui/b:v1", "registry.example/owui/a:v1"]
        );
    }

    #[test]
    fn the_bundle_packer_accepts_the_test_image() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let reference = "registry.example/owui/hello:v1";
        let digest = build_test_oci_layout(dir.path(), reference).unwrap();
        build_test_oci_layout(dir.path(), "registry.example/owui/other:v1").unwrap();
        let spec = owui_bundle::spec::OciSpec {
            reference: reference.to_string(),
            source: Some(dir.path().to_path_buf()),
        };
        let (image, blobs) = owui_bundle::oci::pack(&spec, scratch.path()).unwrap();
        assert_eq!(image.manifest.to_string(), digest);
        assert_eq!(blobs.len(), 3);
    }
}
