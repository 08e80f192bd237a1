//! Reading an OCI image layout: `oci-layout`, `index.json` and blobs, each
//! checked against its digest, and the image a reference picks from it;
//! [`lists`] applies the same rules to a manifest fetched from a registry.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::reference::ImageReference;
use crate::digest::{hash_reader, Sha256Digest};
use crate::error::{Error, IoContext, Result};

/// The index annotation that names an image inside a layout.
pub(super) const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Registries refuse manifests above 4 MiB; so do we, before reading one.
const MAX_JSON: u64 = 4 << 20;
/// The only platform an appliance node runs.
const OS: &str = "linux";
const ARCH: &str = "amd64";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    pub(super) media_type: Option<String>,
    pub(super) digest: String,
    pub(super) size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Index {
    pub(super) schema_version: u32,
    #[serde(default)]
    pub(super) manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageManifest {
    pub(super) schema_version: u32,
    pub(super) media_type: Option<String>,
    pub(super) config: Descriptor,
    pub(super) layers: Vec<Descriptor>,
}

/// An OCI image layout on disk, being read and checked.
pub(super) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub(super) fn open(root: &Path) -> Result<Self> {
        let marker = root.join("oci-layout");
        let text = match fs::read(&marker) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::invalid(
                    root.display().to_string(),
                    "not an OCI image layout (no oci-layout file)",
                ))
            }
            Err(e) => return Err(e).at("reading", &marker),
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Marker {
            image_layout_version: String,
        }
        let marker_json: Marker = serde_json::from_slice(&text)
            .map_err(|e| Error::invalid(marker.display().to_string(), e.to_string()))?;
        if marker_json.image_layout_version != "1.0.0" {
            return Err(Error::invalid(
                marker.display().to_string(),
                format!(
                    "image layout version {:?} is not supported (only 1.0.0)",
                    marker_json.image_layout_version
                ),
            ));
        }
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    /// Reads `index.json`, which carries no digest of its own.
    pub(super) fn index(&self) -> Result<Index> {
        let path = self.root.join("index.json");
        let file = File::open(&path).at("opening", &path)?;
        let mut data = Vec::new();
        file.take(MAX_JSON + 1)
            .read_to_end(&mut data)
            .at("reading", &path)?;
        if data.len() as u64 > MAX_JSON {
            return Err(Error::invalid(
                path.display().to_string(),
                format!("larger than {MAX_JSON} bytes"),
            ));
        }
        let index: Index = serde_json::from_slice(&data)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string()))?;
        check_schema(index.schema_version, &path)?;
        Ok(index)
    }

    pub(super) fn digest_of(&self, d: &Descriptor, what: &str) -> Result<Sha256Digest> {
        Sha256Digest::parse(&d.digest).map_err(|_| {
            Error::invalid(
                format!("{what} in {}", self.root.display()),
                format!(
                    "digest {:?}: only sha256:<64 lowercase hex> digests are supported",
                    d.digest
                ),
            )
        })
    }

    /// Checks that a blob is there, has the declared size and hashes to its
    /// name; returns its path.
    pub(super) fn verify_blob(&self, digest: &Sha256Digest, size: u64) -> Result<PathBuf> {
        let path = self.root.join("blobs").join("sha256").join(digest.hex());
        let what = || format!("blob {digest} ({})", path.display());
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::invalid(what(), "missing from the image layout"))
            }
            Err(e) => return Err(e).at("reading", &path),
        };
        if !meta.is_file() {
            return Err(Error::invalid(what(), "not a regular file"));
        }
        if meta.len() != size {
            return Err(Error::untrusted(
                what(),
                format!("{} bytes where the manifest declares {size}", meta.len()),
            ));
        }
        let file = File::open(&path).at("opening", &path)?;
        let (actual, _) =
            hash_reader(BufReader::with_capacity(1 << 20, file)).at("reading", &path)?;
        if actual != *digest {
            return Err(Error::untrusted(
                what(),
                format!("content hashes to {actual}"),
            ));
        }
        Ok(path)
    }

    /// Reads a small JSON blob (manifest or nested index), checked first.
    pub(super) fn json_blob<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Sha256Digest,
        size: u64,
        what: &str,
    ) -> Result<(T, PathBuf)> {
        if size > MAX_JSON {
            return Err(Error::invalid(
                format!("{what} {digest}"),
                format!("declared size {size} is larger than {MAX_JSON} bytes"),
            ));
        }
        let path = self.verify_blob(digest, size)?;
        let data = fs::read(&path).at("reading", &path)?;
        // The blob may have changed since it was hashed; hash what we parse.
        if Sha256Digest::of(&data) != *digest {
            return Err(Error::untrusted(
                format!("blob {digest} ({})", path.display()),
                "changed while being read",
            ));
        }
        let value = serde_json::from_slice(&data).map_err(|e| {
            Error::invalid(
                format!("{what} {digest} ({})", path.display()),
                e.to_string(),
            )
        })?;
        Ok((value, path))
    }
}

pub(super) fn check_schema(version: u32, path: &Path) -> Result<()> {
    if version == 2 {
        Ok(())
    } else {
        Err(Error::invalid(
            path.display().to_string(),
            format!("schemaVersion {version} is not supported (only 2)"),
        ))
    }
}

/// Picks the index entry for `reference`: the one named by the full
/// reference, else by its tag, else the only entry.
pub(super) fn select<'a>(
    index: &'a Index,
    reference: &str,
    layout: &Path,
) -> Result<&'a Descriptor> {
    let named = |name: &str| -> Vec<&'a Descriptor> {
        index
            .manifests
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name))
            .collect()
    };
    let mut candidates = named(reference);
    if candidates.is_empty() {
        if let Some(tag) = reference.parse::<ImageReference>()?.tag() {
            candidates = named(tag);
        }
    }
    if candidates.is_empty() && index.manifests.len() == 1 {
        candidates = index.manifests.iter().collect();
    }
    let digests: BTreeSet<&str> = candidates.iter().map(|d| d.digest.as_str()).collect();
    match (candidates.first(), digests.len()) {
        (Some(d), 1) => Ok(d),
        (_, 0) => {
            let names: Vec<&str> = index
                .manifests
                .iter()
                .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
                .collect();
            Err(Error::invalid(
                format!("image layout {}", layout.display()),
                format!(
                    "no image named {reference:?}; it holds {} image(s), named: {}",
                    index.manifests.len(),
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ))
        }
        _ => Err(Error::invalid(
            format!("image layout {}", layout.display()),
            format!("{reference:?} names more than one different image"),
        )),
    }
}

/// Resolves a multi-platform index to its linux/amd64 manifest.
pub(super) fn pick_platform<'a>(index: &'a Index, digest: &Sha256Digest) -> Result<&'a Descriptor> {
    let matching = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == OS && p.architecture == ARCH)
    };
    // A plain amd64 build runs everywhere; variants (v2, v3) may not.
    let plain = index.manifests.iter().filter(matching).find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.variant.as_deref().unwrap_or("").is_empty())
    });
    if let Some(d) = plain.or_else(|| index.manifests.iter().find(matching)) {
        return Ok(d);
    }
    let platforms: Vec<String> = index
        .manifests
        .iter()
        .map(|d| match &d.platform {
            Some(p) => match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            },
            None => "(no platform)".to_string(),
        })
        .collect();
    Err(Error::invalid(
        format!("image index {digest}"),
        format!(
            "has no {OS}/{ARCH} image; it holds: {}",
            platforms.join(", ")
        ),
    ))
}

/// A blob a manifest or index lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub digest: Sha256Digest,
    pub size: u64,
    pub media_type: String,
}

/// What a manifest or index leads to, by the rules [`super::pack`] applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lists {
    /// An image index: its linux/amd64 manifest.
    Platform(Listed),
    /// An image manifest: its config, then its layers.
    Blobs(Vec<Listed>),
}

/// Reads a manifest or index fetched from elsewhere (a registry) whose
/// digest was checked: its media type and what it lists.
pub fn lists(data: &[u8], digest: &Sha256Digest) -> Result<(String, Lists)> {
    let what = |kind: &str| format!("{kind} {digest}");
    if data.len() as u64 > MAX_JSON {
        return Err(Error::invalid(
            what("manifest"),
            format!("larger than {MAX_JSON} bytes"),
        ));
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Kind {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let kind: Kind = serde_json::from_slice(data)
        .map_err(|e| Error::invalid(what("manifest"), e.to_string()))?;
    let listed = |d: &Descriptor, what: &str| -> Result<Listed> {
        Ok(Listed {
            digest: Sha256Digest::parse(&d.digest).map_err(|_| {
                Error::invalid(
                    format!("{what} in {digest}"),
                    format!("digest {:?}: only sha256 digests are supported", d.digest),
                )
            })?,
            size: d.size,
            media_type: d.media_type.clone().unwrap_or_default(),
        })
    };
    if kind.manifests.is_some() {
        let index: Index = serde_json::from_slice(data)
            .map_err(|e| Error::invalid(what("image index"), e.to_string()))?;
        check_schema(index.schema_version, Path::new(&what("image index")))?;
        let media_type = kind.media_type.unwrap_or_else(|| OCI_INDEX.to_string());
        let chosen = listed(pick_platform(&index, digest)?, "manifest")?;
        return Ok((media_type, Lists::Platform(chosen)));
    }
    let manifest: ImageManifest = serde_json::from_slice(data)
        .map_err(|e| Error::invalid(what("manifest"), e.to_string()))?;
    check_schema(manifest.schema_version, Path::new(&what("manifest")))?;
    let media_type = kind.media_type.unwrap_or_else(|| OCI_MANIFEST.to_string());
    let blobs = std::iter::once(listed(&manifest.config, "config"))
        .chain(manifest.layers.iter().map(|l| listed(l, "layer")))
        .collect::<Result<_>>()?;
    Ok((media_type, Lists::Blobs(blobs)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::fixtures::*;
    use crate::oci::pack;
    use std::io::Write;

    fn layer_of(root: &Path, manifest: &Sha256Digest) -> PathBuf {
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join("blobs/sha256").join(manifest.hex())).unwrap(),
        )
        .unwrap();
        let d = Sha256Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
        root.join("blobs/sha256").join(d.hex())
    }

    #[test]
    fn selects_by_full_name_then_tag_then_the_only_image() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let d = layout(
            dir.path(),
            &[
                (Some("ghcr.io/example/a:v1"), "one"),
                (Some("v2"), "two"),
                (None, "three"),
            ],
        );
        let pick = |r: &str| pack(&spec(r, dir.path()), scratch.path()).map(|(i, _)| i.manifest);
        assert_eq!(pick("ghcr.io/example/a:v1").unwrap(), d[0]);
        assert_eq!(pick("other.example/b:v2").unwrap(), d[1]);
        let err = pick("ghcr.io/example/a:v3").unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("ghcr.io/example/a:v1")
                && text.contains("v2")
                && text.contains("3 image"),
            "{text}"
        );

        let single = tempfile::tempdir().unwrap();
        let d = layout(single.path(), &[(None, "only")]);
        let (image, _) =
            pack(&spec("anything.example/x:y", single.path()), scratch.path()).unwrap();
        assert_eq!(image.manifest, d[0]);
    }

    #[test]
    fn multi_arch_index_resolves_to_linux_amd64() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (arm, arm_n) = add_image(dir.path(), "arm");
        let (amd, amd_n) = add_image(dir.path(), "amd");
        let mut arm_e = entry(arm, arm_n, OCI_MANIFEST, None);
        arm_e["platform"] = serde_json::json!({ "os": "linux", "architecture": "arm64" });
        let mut amd_e = entry(amd, amd_n, OCI_MANIFEST, None);
        amd_e["platform"] = serde_json::json!({ "os": "linux", "architecture": "amd64" });
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [arm_e.clone(), amd_e],
        }))
        .unwrap();
        let (idx, idx_n) = put(dir.path(), &nested);
        write_index(dir.path(), vec![entry(idx, idx_n, OCI_INDEX, Some("v1"))]);
        let (image, blobs) = pack(&spec("example.org/m:v1", dir.path()), scratch.path()).unwrap();
        assert_eq!(image.manifest, amd);
        assert_eq!(blobs.len(), 3);

        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [arm_e],
        }))
        .unwrap();
        let (idx, idx_n) = put(dir.path(), &nested);
        write_index(dir.path(), vec![entry(idx, idx_n, OCI_INDEX, Some("v1"))]);
        let err = pack(&spec("example.org/m:v1", dir.path()), scratch.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("linux/amd64") && text.contains("linux/arm64"),
            "{text}"
        );
    }

    #[test]
    fn missing_blob_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let d = layout(dir.path(), &[(Some("v1"), "hello")]);
        let layer = layer_of(dir.path(), &d[0]);
        fs::remove_file(&layer).unwrap();
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains(&layer.display().to_string()) && text.contains("missing"),
            "{text}"
        );
    }

    #[test]
    fn wrong_digest_or_size_is_untrusted() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let d = layout(dir.path(), &[(Some("v1"), "hello")]);
        let layer = layer_of(dir.path(), &d[0]);
        let good = fs::read(&layer).unwrap();

        let mut flipped = good.clone();
        flipped[0] ^= 1;
        fs::write(&layer, &flipped).unwrap();
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        let text = err.to_string();
        assert!(
            text.contains(&layer.display().to_string()) && text.contains("hashes to"),
            "{text}"
        );

        fs::OpenOptions::new()
            .append(true)
            .open(&layer)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(
            err.to_string()
                .contains("bytes where the manifest declares"),
            "{err}"
        );
    }

    #[test]
    fn malformed_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        layout(dir.path(), &[(Some("v1"), "hello")]);
        fs::write(
            dir.path().join("index.json"),
            b"{\"schemaVersion\": 2, \"manifests\": [",
        )
        .unwrap();
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("index.json"), "{err}");

        let (bad, n) = put(dir.path(), b"not json");
        write_index(dir.path(), vec![entry(bad, n, OCI_MANIFEST, Some("v1"))]);
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("manifest") && text.contains(&bad.hex()),
            "{text}"
        );

        fs::remove_file(dir.path().join("oci-layout")).unwrap();
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert!(err.to_string().contains("oci-layout"), "{err}");
    }
}
