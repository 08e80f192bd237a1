//! What a bundle carries, as listed in its signed manifest: Ollama models,
//! Hugging Face snapshots, OCI images and removals. Each kind has a module
//! (`ollama`, `huggingface`, `oci`) that packs it from a spec entry and
//! materialises it into the layout its consumer reads.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;

/// An Ollama model: its manifest (stored as a blob, written verbatim under
/// `manifests/<host>/<namespace>/<model>/<tag>`) and the blobs it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OllamaModel {
    /// As the user types it: `llama3.1:8b`, `library/llama3.1:8b`, or
    /// `host/namespace/model:tag`.
    pub name: String,
    /// Digest of the Ollama manifest JSON.
    pub manifest: Sha256Digest,
    /// Config and layer blobs, in manifest order.
    pub blobs: Vec<Sha256Digest>,
}

/// A Hugging Face snapshot, for the hub cache layout vLLM reads offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfSnapshot {
    /// `org/name`.
    pub repo: String,
    /// The commit hash the snapshot directory is named after.
    pub revision: String,
    /// The ref (`refs/<ref>`) that points at `revision`; usually `main`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub files: Vec<HfFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HfFile {
    /// Relative path inside the snapshot, `/`-separated, no `..`.
    pub path: String,
    pub digest: Sha256Digest,
    pub size: u64,
}

/// An OCI image: manifest, config and layers, all stored as blobs so the
/// image arrives with its digests unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciImage {
    #[serde(rename = "ref")]
    pub reference: String,
    /// Digest of the image manifest (the digest podman reports).
    pub manifest: Sha256Digest,
    pub media_type: String,
    pub manifest_size: u64,
    /// Config and layer blobs.
    pub blobs: Vec<Sha256Digest>,
}

/// Something a bundle takes away from the node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Removal {
    Ollama(String),
    Huggingface(String),
    Oci(String),
}

/// Where the bytes of a blob come from when a bundle is packed.
#[derive(Debug, Clone)]
pub enum BlobSource {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// A blob an item packer wants in the bundle, already hashed.
#[derive(Debug, Clone)]
pub struct PackedBlob {
    pub digest: Sha256Digest,
    pub size: u64,
    pub source: BlobSource,
}

impl PackedBlob {
    pub fn from_bytes(data: Vec<u8>) -> Self {
        PackedBlob {
            digest: Sha256Digest::of(&data),
            size: data.len() as u64,
            source: BlobSource::Bytes(data),
        }
    }
}

/// Owner given to materialised trees (directories and manifests). Blobs
/// stay root-owned and read-only: they are shared hard links into the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Every digest a set of items uses: manifests, configs, layers, files.
pub fn referenced(
    ollama: &[OllamaModel],
    huggingface: &[HfSnapshot],
    oci: &[OciImage],
) -> BTreeSet<Sha256Digest> {
    let mut out = BTreeSet::new();
    for m in ollama {
        out.insert(m.manifest);
        out.extend(m.blobs.iter().copied());
    }
    for h in huggingface {
        out.extend(h.files.iter().map(|f| f.digest));
    }
    for o in oci {
        out.insert(o.manifest);
        out.extend(o.blobs.iter().copied());
    }
    out
}
