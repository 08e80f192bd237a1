//! The image manifest: what an auditor checks an image against. Signed the
//! same way as bundles (minisign format, `minisign -Vm IMG.manifest.json`
//! works), next to the image as `<role>-<version>.manifest.json`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use owui_bundle::digest::hash_reader;
use owui_bundle::error::IoContext;
use owui_bundle::firmware::ModuleFlavour;
use owui_bundle::manifest::Manifest;
use owui_bundle::{Error, Result, Sha256Digest};
use serde::{Deserialize, Serialize};

use super::disk::GptPartition;
use super::rootfs::Package;
use super::verity::Verity;

pub const FORMAT: &str = "owui-image/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    pub format: String,
    pub role: String,
    pub version: String,
    pub source_date_epoch: u64,
    pub image: FileDigest,
    pub partitions: Vec<PartitionDigest>,
    pub verity: Verity,
    pub uki: Uki,
    /// What the content partition was pre-filled with (a bundle manifest).
    pub content: Option<Manifest>,
    /// The content's container images that were pulled from registries:
    /// from where, by which digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulled: Vec<PulledImage>,
    pub packages: Vec<Package>,
    /// The NVIDIA driver set of a gpu or allinone image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuDriver>,
    pub sbom: FileDigest,
}

/// A container image pulled from a registry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PulledImage {
    /// The `[[oci]]` reference as the spec writes it.
    pub reference: String,
    /// `host[:port]` and repository the reference names.
    pub registry: String,
    pub repository: String,
    /// The mirror (`host[:port]`) it was fetched from instead, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// The digest the reference pins (an image index or a manifest).
    pub digest: Sha256Digest,
    /// The linux/amd64 image manifest that went in.
    pub manifest: Sha256Digest,
}

/// Which driver set an image carries and the kernel its modules were built
/// for (they load into no other).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GpuDriver {
    pub driver_set: String,
    pub driver_version: String,
    pub kernel_modules: ModuleFlavour,
    /// `uname -r` of the image's kernel.
    pub kernel: String,
    /// The package that holds the built modules, in `packages`.
    pub modules_package: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    /// File name, next to the manifest.
    pub file: String,
    pub size: u64,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PartitionDigest {
    pub label: String,
    pub type_guid: String,
    pub uuid: String,
    pub offset: u64,
    pub size: u64,
    pub sha256: Sha256Digest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Uki {
    /// Path on the ESP.
    pub path: String,
    pub sha256: Sha256Digest,
    pub cmdline: String,
}

/// An image version as a floor compares it: dot-separated numbers, compared
/// number by number ("0.10.0" is newer than "0.9.2"; "1.0" equals "1.0.0").
/// The spec's version is signed in the manifest, so this order needs no
/// clock. Versions with other characters ("2.0-rc1") have no order here and
/// cannot be checked against a floor.
#[derive(Debug, Clone)]
pub struct ImageVersion(Vec<u64>);

impl ImageVersion {
    pub fn parse(what: &str, version: &str) -> Result<Self> {
        version
            .split('.')
            .map(|n| {
                n.bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| n.parse().ok())
                    .flatten()
            })
            .collect::<Option<Vec<u64>>>()
            .map(ImageVersion)
            .ok_or_else(|| {
                Error::invalid(
                    what,
                    format!("version {version:?} has no order: a version floor compares dot-separated numbers such as 1.4.2"),
                )
            })
    }

    /// Without trailing zeros, so that 1.0 and 1.0.0 are the same version.
    fn significant(&self) -> &[u64] {
        let end = self.0.iter().rposition(|n| *n != 0).map_or(0, |i| i + 1);
        &self.0[..end]
    }
}

impl PartialEq for ImageVersion {
    fn eq(&self, other: &Self) -> bool {
        self.significant() == other.significant()
    }
}

impl Eq for ImageVersion {}

impl PartialOrd for ImageVersion {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ImageVersion {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.significant().cmp(other.significant())
    }
}

pub fn file_digest(path: &Path) -> Result<FileDigest> {
    let f = File::open(path).at("reading", path)?;
    let (sha256, size) =
        hash_reader(std::io::BufReader::with_capacity(1 << 20, f)).at("reading", path)?;
    Ok(FileDigest {
        file: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
        sha256,
    })
}

pub fn partition_digest(disk: &Path, p: &GptPartition) -> Result<PartitionDigest> {
    let mut f = File::open(disk).at("reading", disk)?;
    f.seek(SeekFrom::Start(p.offset)).at("reading", disk)?;
    let (sha256, size) = hash_reader(std::io::BufReader::with_capacity(1 << 20, f.take(p.size)))
        .at("reading", disk)?;
    if size != p.size {
        return Err(owui_bundle::Error::invalid(
            disk.display().to_string(),
            format!("partition {} is truncated", p.label),
        ));
    }
    Ok(PartitionDigest {
        label: p.label.clone(),
        type_guid: p.type_guid.clone(),
        uuid: p.uuid.clone(),
        offset: p.offset,
        size: p.size,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_number_by_number() {
        let v = |s: &str| ImageVersion::parse("v", s).unwrap();
        assert!(v("0.10.0") > v("0.9.2"));
        assert!(v("1.10") > v("1.9.0"));
        assert_eq!(v("1.0"), v("1.0.0"));
        assert_eq!(v("1"), v("1.0"));
        assert!(v("1.0.1") > v("1"));
        for bad in [
            "",
            "1.",
            ".1",
            "1..2",
            "2.0-rc1",
            "v1",
            "1.+2",
            "99999999999999999999",
        ] {
            let err = ImageVersion::parse("manifest", bad).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{bad}");
        }
    }
}
