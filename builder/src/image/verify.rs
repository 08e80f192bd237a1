//! `owui-builder verify-image`: the signature over the manifest (by a key
//! not revoked), the version floor, then every byte of the image against the
//! manifest, then the chain from the UKI's command line to the verity tree
//! over the root.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::fsutil::read_regular_capped;
use owui_bundle::sign::{read_signature, PublicKey};
use owui_bundle::trust::TrustStore;
use owui_bundle::{Error, Result};
use serde::Serialize;

use super::build::minisig_path;
use super::disk::{self, ESP_LABEL, ROOT_LABEL, VERITY_LABEL};
use super::manifest::{self, ImageManifest, ImageVersion, FORMAT};
use super::uki;
use super::verity;

/// A manifest lists thousands of packages at most; anything near this is
/// not one of ours.
const MANIFEST_MAX: u64 = 64 << 20;

/// The keys a manifest's signature is checked against.
pub enum Keys {
    /// Public key files (`--pub`).
    Files(Vec<PathBuf>),
    /// A trust store directory (`--trust`, as a node's /etc/owui/trust).
    Store(PathBuf),
}

/// What to trust: keys, with the rotations that revoke or add keys on top.
pub struct Trust {
    pub keys: Keys,
    /// A node's trust state (`--trust-state`, as its /var/lib/owui/trust).
    pub state: Option<PathBuf>,
    /// Rotation statements (`--rotation`), in sequence order.
    pub rotations: Vec<PathBuf>,
}

/// The oldest image version to accept (`--min-version`).
pub struct Floor {
    pub min_version: String,
    /// Accept an older image anyway (`--allow-downgrade`), loudly.
    pub allow_downgrade: bool,
}

#[derive(Debug, Serialize)]
pub struct Verified {
    pub image: PathBuf,
    pub role: String,
    pub version: String,
    pub signed_by: String,
    pub root_hash: String,
    pub partitions: usize,
    /// The image is older than the floor and was accepted by --allow-downgrade.
    pub downgrade_allowed: bool,
    pub checks: Vec<String>,
}

/// `<dir>/<name>.manifest.json` for `<dir>/<name>.img`.
pub fn default_manifest(image: &Path) -> PathBuf {
    image.with_extension("manifest.json")
}

fn trust_store(trust: &Trust) -> Result<TrustStore> {
    let mut store = match &trust.keys {
        Keys::Store(dir) => TrustStore::load_image(dir)?,
        Keys::Files(files) => {
            let keys = files
                .iter()
                .map(|f| PublicKey::read_file(f))
                .collect::<Result<Vec<_>>>()?;
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            TrustStore::with_keys(keys, &names.join(", "))
        }
    };
    if let Some(state) = &trust.state {
        store = store.with_state(state)?;
    }
    for statement in &trust.rotations {
        store.add_rotation(statement)?;
    }
    Ok(store)
}

/// Refuses an image older than the floor unless the operator allowed it;
/// an allowed downgrade is logged and reported. Returns the check's line.
fn check_floor(manifest_path: &Path, version: &str, floor: &Floor) -> Result<(String, bool)> {
    let what = manifest_path.display().to_string();
    let min = ImageVersion::parse("--min-version", &floor.min_version)?;
    if ImageVersion::parse(&what, version)? >= min {
        return Ok((
            format!("version {version} is not older than {}", floor.min_version),
            false,
        ));
    }
    if !floor.allow_downgrade {
        return Err(Error::refused(
            what,
            format!(
                "image version {version} is older than {} (--min-version); an older image is refused unless --allow-downgrade",
                floor.min_version
            ),
        ));
    }
    tracing::warn!(
        manifest = %what,
        version,
        floor = %floor.min_version,
        "image downgrade allowed by --allow-downgrade"
    );
    Ok((
        format!(
            "DOWNGRADE allowed by --allow-downgrade: version {version} is older than {}",
            floor.min_version
        ),
        true,
    ))
}

/// The root and verity partitions as the Discoverable Partitions
/// Specification wants them, so systemd-dissect and systemd-gpt-auto-generator
/// find the root from its hash: UUIDs the raw halves of the root hash, GPT's
/// read-only attribute set.
fn check_discoverable(what: &str, gpt: &[disk::GptPartition], root_hash: &str) -> Result<()> {
    let (data_uuid, hash_uuid) = verity::partition_uuids(root_hash)?;
    for (label, uuid) in [(ROOT_LABEL, data_uuid), (VERITY_LABEL, hash_uuid)] {
        let Some(p) = gpt.iter().find(|p| p.label == label) else {
            return Err(Error::untrusted(what, format!("has no {label} partition")));
        };
        if p.uuid != uuid {
            return Err(Error::untrusted(
                format!("{what}: partition {label}"),
                format!("has UUID {}; the root hash makes it {uuid}", p.uuid),
            ));
        }
        if p.attributes & disk::GPT_READ_ONLY == 0 {
            return Err(Error::untrusted(
                format!("{what}: partition {label}"),
                "lacks GPT's read-only attribute (bit 60)",
            ));
        }
    }
    Ok(())
}

pub fn verify_image(
    image: &Path,
    manifest_path: &Path,
    trust: &Trust,
    floor: Option<&Floor>,
) -> Result<Verified> {
    let bytes = read_regular_capped(manifest_path, MANIFEST_MAX, "an image manifest")?;
    // Nothing in the manifest is looked at before its signature checks out.
    let trust = trust_store(trust)?;
    let sig_text = read_signature(&minisig_path(manifest_path))?;
    let signed_by = trust
        .verify(&bytes, &sig_text, &manifest_path.display().to_string())?
        .key_id
        .to_string();
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(manifest_path.display().to_string(), e.to_string()))?;
    if m.format != FORMAT {
        return Err(Error::invalid(
            manifest_path.display().to_string(),
            format!("format {:?}, this builder reads {FORMAT}", m.format),
        ));
    }
    let mut checks = vec![format!("manifest signed by key {signed_by}")];
    let mut downgrade_allowed = false;
    if let Some(floor) = floor {
        let (line, allowed) = check_floor(manifest_path, &m.version, floor)?;
        checks.push(line);
        downgrade_allowed = allowed;
    }
    let what = image.display().to_string();

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
    check_discoverable(&what, &gpt, &m.verity.root_hash)?;
    checks.push("root and verity partitions: UUIDs are the root hash's halves, read-only".into());
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
    verity::check(&root, &hash, &m.verity.root_hash)?;
    checks.push("verity hash tree over the root matches".into());

    Ok(Verified {
        image: image.to_path_buf(),
        role: m.role,
        version: m.version,
        signed_by,
        root_hash: m.verity.root_hash,
        partitions: gpt.len(),
        downgrade_allowed,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The UUIDs earlier builders gave (version bits set) and a missing
    /// read-only attribute are refused, each naming the partition.
    #[test]
    fn root_partitions_must_be_discoverable() {
        let hash = "e1ca6ba18c247b7a76774a01a4af1f8fc95ef95969f8ac73fa0fa916b8b5b805";
        let part = |label: &str, uuid: &str, attributes: u64| disk::GptPartition {
            label: label.into(),
            type_guid: String::new(),
            uuid: uuid.into(),
            offset: 0,
            size: 0,
            attributes,
        };
        let ro = disk::GPT_READ_ONLY;
        let good = [
            part(ROOT_LABEL, "e1ca6ba1-8c24-7b7a-7677-4a01a4af1f8f", ro),
            part(VERITY_LABEL, "c95ef959-69f8-ac73-fa0f-a916b8b5b805", ro),
        ];
        check_discoverable("img", &good, hash).unwrap();
        let mut versioned = good.clone();
        versioned[0].uuid = "e1ca6ba1-8c24-4b7a-b677-4a01a4af1f8f".into();
        let err = check_discoverable("img", &versioned, hash).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains(ROOT_LABEL), "{err}");
        let mut writable = good.clone();
        writable[1].attributes = 0;
        let err = check_discoverable("img", &writable, hash).unwrap_err();
        assert!(
            err.to_string().contains(VERITY_LABEL) && err.to_string().contains("read-only"),
            "{err}"
        );
    }
}
