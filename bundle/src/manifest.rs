//! The signed manifest at the head of every bundle: what the bundle is for
//! (channel, sequence, roles), where each blob sits in the file, and what to
//! build from the blobs.
//!
//! Only [`VerifiedManifest`] may be applied, and only signature verification
//! (`archive::BundleReader::open`) makes one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::items::{HfSnapshot, ItemKey, OciImage, OllamaModel, Removal};
use crate::role::Role;
use crate::spec::check_channel;
use crate::trust::Signer;

pub const FORMAT: &str = "owui-bundle/1";
/// The manifest is read whole into memory before its signature is checked;
/// this bounds what an untrusted file can make us allocate.
pub const MANIFEST_MAX: u64 = 16 << 20;
pub const BLOCK: u64 = 512;
/// No bundle or blob comes near this (4 EiB); bounding sizes here keeps all
/// later offset arithmetic free of overflow, whatever a manifest claims.
pub const SIZE_LIMIT: u64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Raw,
    Zstd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobEntry {
    pub digest: Sha256Digest,
    /// Bytes of the blob itself.
    pub size: u64,
    pub encoding: Encoding,
    /// Bytes as stored in the bundle (after compression).
    pub stored_size: u64,
    /// Where the stored bytes start, counted from the first byte after the
    /// signature entry (the blob section), so the manifest need not know its
    /// own length.
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub channel: String,
    pub sequence: u64,
    pub roles: Vec<Role>,
    /// Seconds since the epoch (SOURCE_DATE_EPOCH when set).
    pub created: u64,
    pub blobs: Vec<BlobEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ollama: Vec<OllamaModel>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub huggingface: Vec<HfSnapshot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oci: Vec<OciImage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<Removal>,
}

/// The padded length of a tar entry's data.
pub fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// The tar entry name of a stored blob.
pub fn blob_entry_name(digest: &Sha256Digest, encoding: Encoding) -> String {
    match encoding {
        Encoding::Raw => format!("blobs/sha256/{}", digest.hex()),
        Encoding::Zstd => format!("blobs/sha256/{}.zst", digest.hex()),
    }
}

impl Manifest {
    /// Parses and checks the rules a well-formed manifest keeps.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("manifest.json", e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    fn check(&self) -> Result<()> {
        let bad = |detail: String| Error::invalid("manifest.json", detail);
        if self.format != FORMAT {
            return Err(bad(format!("format {:?} is not {FORMAT}", self.format)));
        }
        check_channel(&self.channel)?;
        if self.roles.is_empty() {
            return Err(bad("lists no roles".into()));
        }
        let mut seen = BTreeSet::new();
        let mut next_offset = BLOCK;
        for (i, b) in self.blobs.iter().enumerate() {
            if !seen.insert(b.digest) {
                return Err(bad(format!("blob {} is listed twice", b.digest)));
            }
            if b.encoding == Encoding::Raw && b.stored_size != b.size {
                return Err(bad(format!(
                    "blobs[{i}] ({}) is raw but stored_size {} differs from size {}",
                    b.digest, b.stored_size, b.size
                )));
            }
            if b.size > SIZE_LIMIT || b.stored_size > SIZE_LIMIT {
                return Err(bad(format!(
                    "blobs[{i}] ({}) declares an impossible size",
                    b.digest
                )));
            }
            // Blobs are packed back to back; no gaps where other entries could hide.
            if b.offset != next_offset {
                return Err(bad(format!(
                    "blobs[{i}] ({}) offset {} should be {next_offset}",
                    b.digest, b.offset
                )));
            }
            next_offset = b.offset + padded(b.stored_size) + BLOCK;
            if next_offset > SIZE_LIMIT {
                return Err(bad(format!(
                    "blobs[{i}] ({}) ends past any possible file size",
                    b.digest
                )));
            }
        }
        // Item names and paths are checked here, after the signature and
        // before anything is written, so `verify` refuses what `apply` would.
        crate::items::keyed(&self.ollama, &self.huggingface, &self.oci)
            .map_err(|e| bad(e.to_string()))?;
        for (i, r) in self.remove.iter().enumerate() {
            ItemKey::of_removal(r).map_err(|e| bad(format!("remove[{i}]: {e}")))?;
        }
        Ok(())
    }

    /// Every digest the items reference (manifests and blobs), whether or not
    /// this bundle carries it (a delta bundle relies on the node's store).
    pub fn referenced(&self) -> BTreeSet<Sha256Digest> {
        crate::items::referenced(&self.ollama, &self.huggingface, &self.oci)
    }

    pub fn total_size(&self) -> u64 {
        self.blobs
            .iter()
            .fold(0u64, |n, b| n.saturating_add(b.size))
    }

    /// The line the signature's trusted comment carries, readable in
    /// `minisign -V` output.
    pub fn trusted_comment(&self, digest: &Sha256Digest) -> String {
        let roles: Vec<&str> = self.roles.iter().map(|r| r.as_str()).collect();
        format!(
            "owui-bundle channel={} sequence={} roles={} manifest={}",
            self.channel,
            self.sequence,
            roles.join(","),
            digest
        )
    }
}

/// A manifest whose signature has been checked against the trust store.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    manifest: Manifest,
    digest: Sha256Digest,
    signer: Signer,
}

impl VerifiedManifest {
    /// Only the archive reader calls this, after the signature checked out.
    pub(crate) fn new(manifest: Manifest, digest: Sha256Digest, signer: Signer) -> Self {
        VerifiedManifest {
            manifest,
            digest,
            signer,
        }
    }

    /// The SHA-256 of the manifest bytes: the bundle's identity.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }
}

impl std::ops::Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_blobs(blobs: serde_json::Value) -> Result<Manifest> {
        let m = serde_json::json!({
            "format": FORMAT, "channel": "models", "sequence": 1, "roles": ["gpu"], "created": 0, "blobs": blobs
        });
        Manifest::parse(&serde_json::to_vec(&m).unwrap())
    }

    #[test]
    fn offsets_must_be_contiguous_and_sizes_bounded() {
        let d = |n: u8| Sha256Digest::of(&[n]).to_string();
        with_blobs(serde_json::json!([
            {"digest": d(1), "size": 10, "encoding": "raw", "stored_size": 10, "offset": 512},
            {"digest": d(2), "size": 99, "encoding": "zstd", "stored_size": 20, "offset": 1536}
        ]))
        .unwrap();
        for (blobs, needle) in [
            (
                serde_json::json!([{"digest": d(1), "size": 10, "encoding": "raw", "stored_size": 10, "offset": 1024}]),
                "should be 512",
            ),
            (
                serde_json::json!([{"digest": d(1), "size": 10, "encoding": "raw", "stored_size": 9, "offset": 512}]),
                "differs",
            ),
            (
                serde_json::json!([
                    {"digest": d(1), "size": 10, "encoding": "raw", "stored_size": 10, "offset": 512},
                    {"digest": d(1), "size": 10, "encoding": "raw", "stored_size": 10, "offset": 1536}
                ]),
                "listed twice",
            ),
            (
                serde_json::json!([{"digest": d(1), "size": u64::MAX, "encoding": "zstd", "stored_size": 1, "offset": 512}]),
                "impossible size",
            ),
            (
                serde_json::json!([{"digest": d(1), "size": 1, "encoding": "zstd", "stored_size": SIZE_LIMIT, "offset": 512}]),
                "past any possible",
            ),
        ] {
            let err = with_blobs(blobs).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let err = Manifest::parse(b"{\"format\": \"owui-bundle/1\", \"extra\": 1}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("extra") || err.contains("unknown field"),
            "{err}"
        );
    }
}
