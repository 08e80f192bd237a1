//! `owui-builder verify-image`: the signature over the manifest, then every
//! byte of the image against it, then the chain from the UKI's command line
//! to the verity tree over the root.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::sign::{PublicKey, SignatureFile};
use owui_bundle::trust::TrustStore;
use owui_bundle::{Error, Result};
use serde::Serialize;

use super::build::minisig_path;
use super::disk::{self, ESP_LABEL, ROOT_LABEL, VERITY_LABEL};
use super::manifest::{self, ImageManifest, FORMAT};
use super::rootimg;
use super::uki;

/// A manifest lists thousands of packages at most; anything near this is
/// not one of ours.
const MANIFEST_MAX: u64 = 64 << 20;

pub enum Keys {
    Files(Vec<PathBuf>),
    Store(PathBuf),
}

#[derive(Debug, Serialize)]
pub struct Verified {
    pub image: PathBuf,
    pub role: String,
    pub version: String,
    pub signed_by: String,
    pub root_hash: String,
    pub partitions: usize,
    pub checks: Vec<String>,
}

/// `<dir>/<name>.manifest.json` for `<dir>/<name>.img`.
pub fn default_manifest(image: &Path) -> PathBuf {
    image.with_extension("manifest.json")
}

fn check_signature(manifest_path: &Path, bytes: &[u8], keys: &Keys) -> Result<String> {
    let sig_path = minisig_path(manifest_path);
    let sig_text = fs::read_to_string(&sig_path).at("reading the signature", &sig_path)?;
    let what = manifest_path.display().to_string();
    match keys {
        Keys::Store(dir) => {
            let trust = TrustStore::load(dir)?;
            trust
                .verify(bytes, &sig_text, &what)
                .map(|s| s.key_id.to_string())
        }
        Keys::Files(files) => {
            let sig = SignatureFile::parse(&sig_path.display().to_string(), &sig_text)?;
            let mut last = Error::untrusted(what.clone(), "no public key given to check it with");
            for f in files {
                let text = fs::read_to_string(f).at("reading public key", f)?;
                let key = PublicKey::from_file_str(&f.display().to_string(), &text)?;
                match key.verify(bytes, &sig) {
                    Ok(()) => return Ok(key.id.to_string()),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
    }
}

pub fn verify_image(image: &Path, manifest_path: &Path, keys: &Keys) -> Result<Verified> {
    let len = fs::metadata(manifest_path)
        .at("reading", manifest_path)?
        .len();
    if len > MANIFEST_MAX {
        return Err(Error::invalid(
            manifest_path.display().to_string(),
            "too large to be an image manifest",
        ));
    }
    let bytes = fs::read(manifest_path).at("reading", manifest_path)?;
    // Nothing in the manifest is looked at before its signature checks out.
    let signed_by = check_signature(manifest_path, &bytes, keys)?;
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(manifest_path.display().to_string(), e.to_string()))?;
    if m.format != FORMAT {
        return Err(Error::invalid(
            manifest_path.display().to_string(),
            format!("format {:?}, this builder reads {FORMAT}", m.format),
        ));
    }
    let what = image.display().to_string();
    let mut checks = vec![format!("manifest signed by key {signed_by}")];

    let size = fs::metadata(image).at("reading", image)?.len();
    if size != m.image.size {
        return Err(Error::untrusted(
            &what,
            format!("is {size} bytes; the manifest says {}", m.image.size),
        ));
    }
    let gpt = disk::read_gpt(image)?;
    if gpt.len() != m.partitions.len() {
        return Err(Error::untrusted(
            &what,
            format!(
                "has {} partitions; the manifest lists {}",
                gpt.len(),
                m.partitions.len()
            ),
        ));
    }
    for (found, listed) in gpt.iter().zip(&m.partitions) {
        let digest = manifest::partition_digest(image, found)?;
        if digest != *listed {
            return Err(Error::untrusted(
                format!(
                    "{what}: partition {} (bytes {}..{})",
                    listed.label,
                    found.offset,
                    found.offset + found.size
                ),
                format!(
                    "does not match the manifest (sha256 {}, expected {})",
                    digest.sha256, listed.sha256
                ),
            ));
        }
    }
    checks.push(format!("{} partitions match their digests", gpt.len()));
    let whole = manifest::file_digest(image)?;
    if whole.sha256 != m.image.sha256 {
        return Err(Error::untrusted(
            &what,
            "the GPT headers differ from the manifest's image digest",
        ));
    }
    checks.push("image digest matches".into());

    let scratch = tempfile::Builder::new()
        .prefix(".owui-verify-")
        .tempdir_in(std::env::temp_dir())
        .at("creating a scratch directory in", &std::env::temp_dir())?;
    let part = |label: &str| {
        gpt.iter()
            .find(|p| p.label == label)
            .ok_or_else(|| Error::untrusted(&what, format!("has no {label} partition")))
    };
    // The UKI on the ESP is the one the manifest names, and its command line
    // carries the root hash the verity tree must give.
    let esp = scratch.path().join("esp.img");
    disk::extract(image, part(ESP_LABEL)?, &esp)?;
    let uki_file = scratch.path().join("uki.efi");
    Cmd::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-i")
        .arg(&esp)
        .arg(format!("::{}", m.uki.path))
        .arg(&uki_file)
        .output()?;
    let uki_bytes = fs::read(&uki_file).at("reading", &uki_file)?;
    let uki_digest = owui_bundle::Sha256Digest::of(&uki_bytes);
    if uki_digest != m.uki.sha256 {
        return Err(Error::untrusted(
            format!("{what}: {}", m.uki.path),
            "differs from the manifest",
        ));
    }
    let cmdline = uki::section(&uki_bytes, ".cmdline")?
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_default();
    let wanted = format!("owui.verity={}", m.verity.root_hash);
    if !cmdline.split_whitespace().any(|a| a == wanted) {
        return Err(Error::untrusted(
            format!("{what}: {}", m.uki.path),
            "its command line does not carry the manifest's root hash",
        ));
    }
    checks.push("UKI command line carries the root hash".into());
    let root = scratch.path().join("root");
    let hash = scratch.path().join("root.verity");
    disk::extract(image, part(ROOT_LABEL)?, &root)?;
    disk::extract(image, part(VERITY_LABEL)?, &hash)?;
    rootimg::check(&root, &hash, &m.verity.root_hash)?;
    checks.push("verity hash tree over the root matches".into());

    Ok(Verified {
        image: image.to_path_buf(),
        role: m.role,
        version: m.version,
        signed_by,
        root_hash: m.verity.root_hash,
        partitions: gpt.len(),
        checks,
    })
}
