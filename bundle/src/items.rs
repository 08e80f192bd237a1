//! What a bundle carries, as listed in its signed manifest: Ollama models,
//! Hugging Face snapshots, OCI images and removals. Each kind has a module
//! (`ollama`, `huggingface`, `oci`) that packs it from a spec entry and
//! materialises it into the layout its consumer reads.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::ollama::OllamaName;
use crate::{huggingface, oci};

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

/// As the bundle spec's `[[remove]]` key names it: `ollama llama3:8b`.
impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Removal::Ollama(name) => write!(f, "ollama {name}"),
            Removal::Huggingface(repo) => write!(f, "huggingface {repo}"),
            Removal::Oci(reference) => write!(f, "oci {reference}"),
        }
    }
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

/// What a node holds an item under: a later bundle that names the same key
/// replaces or removes it. Ollama names are normalised (`tiny:1b` and
/// `registry.ollama.ai/library/tiny:1b` are one model).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemKey {
    Ollama(String),
    Huggingface(String),
    Oci(String),
}

impl ItemKey {
    /// Checks the name against Ollama's grammar.
    pub fn ollama(name: &str) -> Result<Self> {
        let n = OllamaName::parse(name)?;
        Ok(ItemKey::Ollama(format!(
            "{}/{}/{}:{}",
            n.host, n.namespace, n.model, n.tag
        )))
    }

    /// Checks the repo id against huggingface_hub's rules.
    pub fn huggingface(repo: &str) -> Result<Self> {
        huggingface::check_repo(repo)?;
        Ok(ItemKey::Huggingface(repo.to_string()))
    }

    /// Checks the reference against the grammar skopeo and podman accept.
    pub fn oci(reference: &str) -> Result<Self> {
        oci::check_reference(reference)?;
        Ok(ItemKey::Oci(reference.to_string()))
    }

    pub fn of_removal(r: &Removal) -> Result<Self> {
        match r {
            Removal::Ollama(name) => Self::ollama(name),
            Removal::Huggingface(repo) => Self::huggingface(repo),
            Removal::Oci(reference) => Self::oci(reference),
        }
    }
}

impl std::fmt::Display for ItemKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ItemKey::Ollama(n) => write!(f, "ollama:{n}"),
            ItemKey::Huggingface(r) => write!(f, "huggingface:{r}"),
            ItemKey::Oci(r) => write!(f, "oci:{r}"),
        }
    }
}

/// Every item a set installs, by key, with whether two items share the key.
/// The checks are the ones the node applies when it lays items out, so a
/// bundle whose items could not be laid out is refused before anything is
/// written (and by `verify`).
pub fn keyed<'a>(
    ollama: &'a [OllamaModel],
    hf: &'a [HfSnapshot],
    oci_images: &'a [OciImage],
) -> Result<Vec<(ItemKey, Installed<'a>)>> {
    let mut out: Vec<(ItemKey, Installed<'a>)> = Vec::new();
    for m in ollama {
        out.push((ItemKey::ollama(&m.name)?, Installed::Ollama(m)));
    }
    for h in hf {
        huggingface::check_snapshot(h)?;
        out.push((ItemKey::huggingface(&h.repo)?, Installed::Huggingface(h)));
    }
    for o in oci_images {
        out.push((ItemKey::oci(&o.reference)?, Installed::Oci(o)));
    }
    let mut seen = BTreeSet::new();
    for (key, _) in &out {
        if !seen.insert(key) {
            return Err(Error::invalid(key.to_string(), "listed twice"));
        }
    }
    Ok(out)
}

/// One installed item, borrowed from a manifest or a generation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed<'a> {
    Ollama(&'a OllamaModel),
    Huggingface(&'a HfSnapshot),
    Oci(&'a OciImage),
}

impl Installed<'_> {
    /// Same content: the same manifest (Ollama, OCI) or the same files at
    /// the same revision (Hugging Face). Names may be spelt differently.
    pub fn same_content(self, other: Installed<'_>) -> bool {
        match (self, other) {
            (Installed::Ollama(a), Installed::Ollama(b)) => {
                a.manifest == b.manifest && a.blobs == b.blobs
            }
            (Installed::Huggingface(a), Installed::Huggingface(b)) => {
                a.revision == b.revision && a.git_ref == b.git_ref && a.files == b.files
            }
            (Installed::Oci(a), Installed::Oci(b)) => a == b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> OllamaModel {
        OllamaModel {
            name: name.into(),
            manifest: Sha256Digest::of(name.as_bytes()),
            blobs: Vec::new(),
        }
    }

    #[test]
    fn removals_read_as_the_spec_writes_them() {
        assert_eq!(
            Removal::Ollama("llama3:8b".into()).to_string(),
            "ollama llama3:8b"
        );
        assert_eq!(
            Removal::Huggingface("acme/embed".into()).to_string(),
            "huggingface acme/embed"
        );
        assert_eq!(Removal::Oci("a/b:1".into()).to_string(), "oci a/b:1");
    }

    #[test]
    fn keys_are_normalised_checked_and_unique() {
        assert_eq!(
            ItemKey::ollama("tiny:1b").unwrap(),
            ItemKey::ollama("registry.ollama.ai/library/tiny:1b").unwrap()
        );
        assert_eq!(
            ItemKey::ollama("tiny").unwrap().to_string(),
            "ollama:registry.ollama.ai/library/tiny:latest"
        );
        for bad in ["a/../b:1", "tiny model:1b", "x/y/z/w:1", ""] {
            assert_eq!(ItemKey::ollama(bad).unwrap_err().exit_code(), 3, "{bad}");
        }
        assert!(ItemKey::huggingface("acme/../x").is_err());
        assert!(ItemKey::oci("Evil Image:1").is_err());
        let err = keyed(&[model("tiny:1b"), model("library/tiny:1b")], &[], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
    }
}
