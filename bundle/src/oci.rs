//! OCI images. The build side reads an OCI image layout (or an oci-archive
//! of one), checks every blob against its digest and packs the manifest,
//! config and layers as they are, so digests survive the trip. The node side
//! writes the blobs back out as a layout (hard links into the content store)
//! and has skopeo copy each image into podman's storage with
//! `--preserve-digests`: the digest podman reports is the one we signed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::command::Cmd;
use crate::digest::{hash_reader, Sha256Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::items::{BlobSource, OciImage, PackedBlob};
use crate::spec::OciSpec;
use crate::store::ContentStore;

/// The index annotation that names an image inside a layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Registries refuse manifests above 4 MiB; so do we, before reading one.
const MAX_JSON: u64 = 4 << 20;
/// The only platform an appliance node runs.
const OS: &str = "linux";
const ARCH: &str = "amd64";

/// Where podman keeps images: maps to skopeo's
/// `containers-storage:[driver@graph_root+run_root]REF`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodmanStore {
    pub driver: String,
    pub graph_root: PathBuf,
    pub run_root: PathBuf,
}

impl PodmanStore {
    /// The `containers-storage:[...]` prefix. The store spec has no quoting,
    /// so characters it uses as separators cannot appear in the paths.
    fn transport(&self) -> Result<String> {
        let what = || format!("podman store {self:?}");
        if self.driver.is_empty()
            || !self
                .driver
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(Error::invalid(
                what(),
                "driver must be a name such as overlay or vfs",
            ));
        }
        let root = |p: &Path| -> Result<String> {
            match p.to_str() {
                Some(s) if p.is_absolute() && !s.contains([':', '+', ']', '[']) => Ok(s.to_string()),
                _ => Err(Error::invalid(
                    what(),
                    "graph_root and run_root must be absolute UTF-8 paths without ':', '+', '[' or ']'",
                )),
            }
        };
        Ok(format!(
            "containers-storage:[{}@{}+{}]",
            self.driver,
            root(&self.graph_root)?,
            root(&self.run_root)?
        ))
    }

    /// The global podman options that select this store.
    pub fn podman(&self) -> Cmd {
        Cmd::new("podman")
            .arg("--root")
            .arg(&self.graph_root)
            .arg("--runroot")
            .arg(&self.run_root)
            .arg("--storage-driver")
            .arg(&self.driver)
    }
}

/// Checks an image reference against the grammar skopeo and podman accept
/// (`[domain/]path[:tag][@sha256:hex]`), so a bad one fails when the bundle
/// is built rather than when a node imports it.
pub fn check_reference(reference: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("OCI reference {reference:?}"), why));
    if reference.is_empty() {
        return bad("is empty");
    }
    if reference
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad("contains whitespace or control characters");
    }
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    if let Some(d) = digest {
        if Sha256Digest::parse(d).is_err() {
            return bad("the digest after '@' must be sha256: and 64 lowercase hex characters");
        }
    }
    let (name, tag) = split_tag(name_tag);
    if let Some(tag) = tag {
        let ok = tag.len() <= 128
            && tag.bytes().enumerate().all(|(i, b)| {
                b.is_ascii_alphanumeric() || b == b'_' || (i > 0 && matches!(b, b'.' | b'-'))
            })
            && !tag.is_empty();
        if !ok {
            return bad("the tag must be 1-128 characters from A-Z a-z 0-9 _ . - (not starting with . or -)");
        }
    }
    if name.is_empty() || name.len() > 255 {
        return bad("the name must be 1-255 characters");
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && looks_like_domain(components[0]) {
        if !valid_domain(components[0]) {
            return bad("the registry host must be host[:port] with letters, digits, '-' and '.'");
        }
        components.remove(0);
    }
    if !components.iter().all(|c| valid_path_component(c)) {
        return bad("each path component must be lowercase letters and digits, separated by '.', '_', '__' or dashes");
    }
    Ok(())
}

/// Splits `name[:tag]`; a colon before the last slash is a registry port.
fn split_tag(name_tag: &str) -> (&str, Option<&str>) {
    let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
    match name_tag[slash..].rfind(':') {
        Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
        None => (name_tag, None),
    }
}

/// Docker's rule: a first component with a dot, a port or uppercase, or
/// `localhost`, names a registry; anything else is a Docker Hub path.
fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let port_ok = match port {
        None => true,
        Some(p) => !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && host.split('.').all(label_ok)
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    component
        .split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .filter(|sep| !sep.is_empty())
        .all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// The fully qualified name containers-storage files an image under
/// (`hello` is `docker.io/library/hello:latest`). Naming images this way
/// to podman also keeps a short name from being taken as an image-ID prefix.
fn normalize(reference: &str) -> String {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = split_tag(name_tag);
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, rest.to_string()),
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    out
}

/// The tag of a reference, which is what `skopeo copy ... oci:DIR:TAG`
/// writes as the ref.name annotation.
fn tag_of(reference: &str) -> Option<&str> {
    let name_tag = reference.split('@').next().unwrap_or(reference);
    split_tag(name_tag).1
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: Option<String>,
    digest: String,
    size: u64,
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
struct Index {
    schema_version: u32,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest {
    schema_version: u32,
    media_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// An OCI image layout on disk, being read and checked.
struct Layout {
    root: PathBuf,
}

impl Layout {
    fn open(root: &Path) -> Result<Self> {
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
    fn index(&self) -> Result<Index> {
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

    fn digest_of(&self, d: &Descriptor, what: &str) -> Result<Sha256Digest> {
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
    fn verify_blob(&self, digest: &Sha256Digest, size: u64) -> Result<PathBuf> {
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
    fn json_blob<T: serde::de::DeserializeOwned>(
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

fn check_schema(version: u32, path: &Path) -> Result<()> {
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
fn select<'a>(index: &'a Index, reference: &str, layout: &Path) -> Result<&'a Descriptor> {
    let named = |name: &str| -> Vec<&'a Descriptor> {
        index
            .manifests
            .iter()
            .filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(name))
            .collect()
    };
    let mut candidates = named(reference);
    if candidates.is_empty() {
        if let Some(tag) = tag_of(reference) {
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
fn pick_platform<'a>(index: &'a Index, digest: &Sha256Digest) -> Result<&'a Descriptor> {
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

/// Build side: reads and checks the image `spec` names, from an OCI image
/// layout directory or an oci-archive (extracted into `scratch`, which the
/// caller owns and must keep until the returned blobs are packed).
pub fn pack(spec: &OciSpec, scratch: &Path) -> Result<(OciImage, Vec<PackedBlob>)> {
    check_reference(&spec.reference)?;
    let meta = fs::metadata(&spec.source).at("reading", &spec.source)?;
    let root = if meta.is_dir() {
        spec.source.clone()
    } else if meta.is_file() {
        extract_archive(&spec.source, scratch)?
    } else {
        return Err(Error::invalid(
            spec.source.display().to_string(),
            "neither an OCI image layout directory nor an oci-archive file",
        ));
    };
    let layout = Layout::open(&root)?;
    let index = layout.index()?;
    let mut chosen = select(&index, &spec.reference, &spec.source)?;
    let nested;
    let mut media_type = chosen.media_type.clone().unwrap_or_default();
    if media_type == OCI_INDEX {
        let digest = layout.digest_of(chosen, "image index")?;
        let (inner, _): (Index, PathBuf) = layout.json_blob(&digest, chosen.size, "image index")?;
        check_schema(inner.schema_version, &spec.source)?;
        nested = inner;
        chosen = pick_platform(&nested, &digest)?;
        media_type = chosen.media_type.clone().unwrap_or_default();
    }
    if media_type != OCI_MANIFEST {
        // skopeo's oci: transport finds only OCI manifests in a layout, so a
        // Docker one could be packed but never imported on a node.
        let hint = if media_type.starts_with("application/vnd.docker.") {
            "; re-create the layout with `skopeo copy --format oci` (this changes the digest)"
        } else {
            ""
        };
        return Err(Error::invalid(
            format!("image {:?} in {}", spec.reference, spec.source.display()),
            format!(
                "media type {media_type:?} is not an OCI image manifest ({OCI_MANIFEST}){hint}"
            ),
        ));
    }
    let manifest_digest = layout.digest_of(chosen, "manifest")?;
    let (manifest, manifest_path): (ImageManifest, PathBuf) =
        layout.json_blob(&manifest_digest, chosen.size, "manifest")?;
    if manifest.schema_version != 2
        || manifest
            .media_type
            .as_ref()
            .is_some_and(|m| *m != media_type)
    {
        return Err(Error::invalid(
            format!("manifest {manifest_digest} ({})", manifest_path.display()),
            format!(
                "schemaVersion {} / mediaType {:?} do not match the index entry ({media_type})",
                manifest.schema_version, manifest.media_type
            ),
        ));
    }

    let mut blobs = vec![PackedBlob {
        digest: manifest_digest,
        size: chosen.size,
        source: BlobSource::File(manifest_path.clone()),
    }];
    let config_type = manifest.config.media_type.as_deref().unwrap_or_default();
    if config_type != OCI_CONFIG {
        // An artifact (a Helm chart, a signature) is not something podman runs.
        return Err(Error::invalid(
            format!("manifest {manifest_digest} ({})", manifest_path.display()),
            format!(
                "config media type {config_type:?} is not a container image config ({OCI_CONFIG})"
            ),
        ));
    }
    let mut seen = BTreeMap::from([(manifest_digest, chosen.size)]);
    let mut item_blobs = Vec::new();
    let parts = std::iter::once(("config", &manifest.config))
        .chain(manifest.layers.iter().map(|l| ("layer", l)));
    for (what, d) in parts {
        let digest = layout.digest_of(d, what)?;
        // Images often repeat a layer (empty ones); ship and list it once.
        if let Some(size) = seen.insert(digest, d.size) {
            if size != d.size {
                return Err(Error::invalid(
                    format!("manifest {manifest_digest} ({})", manifest_path.display()),
                    format!("blob {digest} is listed with sizes {size} and {}", d.size),
                ));
            }
            continue;
        }
        let path = layout.verify_blob(&digest, d.size)?;
        item_blobs.push(digest);
        blobs.push(PackedBlob {
            digest,
            size: d.size,
            source: BlobSource::File(path),
        });
    }
    let image = OciImage {
        reference: spec.reference.clone(),
        manifest: manifest_digest,
        media_type,
        manifest_size: chosen.size,
        blobs: item_blobs,
    };
    Ok((image, blobs))
}

/// Unpacks an oci-archive into a fresh directory under `scratch`. Only
/// regular files and directories are taken: a link could point the blobs
/// we later hash and ship somewhere outside the archive.
fn extract_archive(archive: &Path, scratch: &Path) -> Result<PathBuf> {
    let dest = tempfile::Builder::new()
        .prefix("oci-archive-")
        .tempdir_in(scratch)
        .at("creating a directory in", scratch)?
        .keep();
    let file = File::open(archive).at("opening", archive)?;
    let mut tar = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    for entry in tar.entries().at("reading", archive)? {
        let mut entry = entry.at("reading", archive)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let name = entry.path().at("reading", archive)?.display().to_string();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(Error::invalid(
                format!("{} entry {name:?}", archive.display()),
                "an oci-archive may hold only regular files and directories",
            ));
        }
        if !entry.unpack_in(&dest).at("extracting into", &dest)? {
            return Err(Error::invalid(
                format!("{} entry {name:?}", archive.display()),
                "path leads outside the archive",
            ));
        }
    }
    Ok(dest)
}

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

/// `oci:DIR:REF`; the transport splits at the first colon, so DIR has none.
fn layout_ref(layout: &Path, reference: &str) -> Result<String> {
    match layout.to_str() {
        Some(dir) if !dir.contains(':') => Ok(format!("oci:{dir}:{reference}")),
        _ => Err(Error::invalid(
            format!("image layout {}", layout.display()),
            "the path must be UTF-8 without ':' for skopeo's oci: transport",
        )),
    }
}

/// Node side: copies each image from the layout into podman's storage,
/// skipping those already there with the same manifest digest, and checks
/// the digest podman ends up with.
pub fn import(layout: &Path, images: &[OciImage], store: &PodmanStore) -> Result<()> {
    let target = store.transport()?;
    fs::create_dir_all(&store.graph_root).at("creating", &store.graph_root)?;
    // skopeo stages whole layers in $TMPDIR (/var/tmp by default, maybe
    // small or read-only on a node); the graph root has room for them.
    let staging = tempfile::Builder::new()
        .prefix(".owui-import-")
        .tempdir_in(&store.graph_root)
        .at("creating a directory in", &store.graph_root)?;
    for image in images {
        check_reference(&image.reference)?;
        if stored_digest(&image.reference, store)? == Some(image.manifest) {
            tracing::debug!(image = %image.reference, digest = %image.manifest, "already in podman storage");
            continue;
        }
        // The bundle's signature and digests were checked before we got
        // here; the node's policy.json is about registries, not this copy.
        Cmd::new("skopeo")
            .env("TMPDIR", staging.path())
            .args(["--insecure-policy", "copy", "--quiet", "--preserve-digests"])
            .arg(layout_ref(layout, &image.reference)?)
            .arg(format!("{target}{}", normalize(&image.reference)))
            .output()?;
        match stored_digest(&image.reference, store)? {
            Some(d) if d == image.manifest => {
                tracing::info!(image = %image.reference, digest = %d, "imported into podman storage");
            }
            other => {
                return Err(Error::tool(
                    "skopeo",
                    format!(
                        "{} was copied but podman storage holds {} where {} was expected",
                        image.reference,
                        other.map_or("nothing".to_string(), |d| d.to_string()),
                        image.manifest
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// Removes one name from podman's storage (the image goes with its last
/// name); absent is fine, an image a container uses is an error.
pub fn remove(reference: &str, store: &PodmanStore) -> Result<()> {
    check_reference(reference)?;
    store.transport()?;
    // podman untags an image that has other names; `skopeo delete` would
    // drop the image under all of them.
    store
        .podman()
        .args(["rmi", "--ignore"])
        .arg(normalize(reference))
        .output()?;
    Ok(())
}

/// The digest of the manifest podman's storage holds for `reference`.
pub fn stored_digest(reference: &str, store: &PodmanStore) -> Result<Option<Sha256Digest>> {
    check_reference(reference)?;
    let image = format!("{}{}", store.transport()?, normalize(reference));
    match Cmd::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(&image)
        .output()
    {
        // The raw manifest is exactly the bytes the digest was taken of.
        Ok(raw) => Ok(Some(Sha256Digest::of(&raw))),
        Err(Error::Tool { detail, .. }) if is_not_found(&detail) => Ok(None),
        Err(e) => Err(e),
    }
}

/// skopeo has no "exists" exit code; containers/image words a missing
/// name this way (ErrNoSuchImage), from skopeo 1.9 to current.
fn is_not_found(detail: &str) -> bool {
    detail.contains("does not resolve to an image ID")
        || detail.contains("identifier is not an image")
}

#[cfg(test)]
mod tests {
    //! Without external tools. Against real skopeo and podman:
    //! `tests/tests/podman_import.rs`.

    use super::*;
    use std::io::Write;

    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

    /// A tiny image in a layout: one uncompressed layer holding a file
    /// whose text is `content`. Returns the manifest digest.
    fn add_image(root: &Path, content: &str) -> (Sha256Digest, u64) {
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

    fn put(root: &Path, data: &[u8]) -> (Sha256Digest, u64) {
        let d = Sha256Digest::of(data);
        let dir = root.join("blobs/sha256");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(d.hex()), data).unwrap();
        (d, data.len() as u64)
    }

    fn entry(d: Sha256Digest, n: u64, media: &str, name: Option<&str>) -> serde_json::Value {
        let mut e = serde_json::json!({ "mediaType": media, "digest": d.to_string(), "size": n });
        if let Some(name) = name {
            e["annotations"] = serde_json::json!({ REF_NAME: name });
        }
        e
    }

    fn write_index(root: &Path, entries: Vec<serde_json::Value>) {
        fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let index = serde_json::json!({ "schemaVersion": 2, "manifests": entries });
        fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }

    /// A layout with one image per (name, content).
    fn layout(root: &Path, images: &[(Option<&str>, &str)]) -> Vec<Sha256Digest> {
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

    fn spec(reference: &str, source: &Path) -> OciSpec {
        OciSpec {
            reference: reference.to_string(),
            source: source.to_path_buf(),
        }
    }

    fn layer_of(root: &Path, manifest: &Sha256Digest) -> PathBuf {
        let m: serde_json::Value = serde_json::from_slice(
            &fs::read(root.join("blobs/sha256").join(manifest.hex())).unwrap(),
        )
        .unwrap();
        let d = Sha256Digest::parse(m["layers"][0]["digest"].as_str().unwrap()).unwrap();
        root.join("blobs/sha256").join(d.hex())
    }

    #[test]
    fn packs_from_a_layout_directory() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let ref_ = "ghcr.io/example/hello:v1";
        let digests = layout(dir.path(), &[(Some(ref_), "hello")]);
        let (image, blobs) = pack(&spec(ref_, dir.path()), scratch.path()).unwrap();
        assert_eq!(image.reference, ref_);
        assert_eq!(image.manifest, digests[0]);
        assert_eq!(image.media_type, OCI_MANIFEST);
        assert_eq!(image.blobs.len(), 2);
        assert_eq!(blobs.len(), 3);
        assert_eq!(blobs[0].digest, image.manifest);
        assert_eq!(blobs[0].size, image.manifest_size);
        assert_eq!(
            blobs[1..].iter().map(|b| b.digest).collect::<Vec<_>>(),
            image.blobs
        );
        for b in &blobs {
            let BlobSource::File(p) = &b.source else {
                panic!("expected a file")
            };
            assert_eq!(Sha256Digest::of(&fs::read(p).unwrap()), b.digest);
            assert!(p.starts_with(dir.path()));
        }
    }

    #[test]
    fn packs_from_an_oci_archive() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let ref_ = "ghcr.io/example/hello:v1";
        let digests = layout(dir.path(), &[(Some("v1"), "hello")]);
        let archive = scratch.path().join("image.tar");
        let mut tar = tar::Builder::new(File::create(&archive).unwrap());
        tar.append_dir_all(".", dir.path()).unwrap();
        tar.finish().unwrap();
        drop(tar);

        let (image, blobs) = pack(&spec(ref_, &archive), scratch.path()).unwrap();
        assert_eq!(image.manifest, digests[0]);
        for b in &blobs {
            let BlobSource::File(p) = &b.source else {
                panic!("expected a file")
            };
            assert!(p.starts_with(scratch.path()), "{}", p.display());
            assert_eq!(fs::metadata(p).unwrap().len(), b.size);
        }
    }

    #[test]
    fn archive_with_a_symlink_is_refused() {
        let scratch = tempfile::tempdir().unwrap();
        let archive = scratch.path().join("image.tar");
        let mut tar = tar::Builder::new(File::create(&archive).unwrap());
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, "blobs", "/etc").unwrap();
        tar.finish().unwrap();
        drop(tar);
        let err = pack(&spec("a:b", &archive), scratch.path()).unwrap_err();
        assert!(err.to_string().contains("regular files"), "{err}");
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

    #[test]
    fn docker_manifests_are_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = tempfile::tempdir().unwrap();
        let (d, n) = add_image(dir.path(), "hello");
        let docker = "application/vnd.docker.distribution.manifest.v2+json";
        write_index(dir.path(), vec![entry(d, n, docker, Some("v1"))]);
        let err = pack(&spec("x/y:v1", dir.path()), scratch.path()).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        assert!(err.to_string().contains("--format oci"), "{err}");
    }

    #[test]
    fn references_are_checked_and_normalized() {
        for good in [
            "ghcr.io/open-webui/open-webui:v0.6.5",
            "hello",
            "library/hello:latest",
            "localhost:5000/a/b_c__d---e.f:1.0-rc_1",
            "Registry.Example.COM/x/y",
            &format!("x/y@sha256:{}", "a".repeat(64)),
            &format!("x/y:t@sha256:{}", "a".repeat(64)),
        ] {
            check_reference(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "",
            " ",
            "a b",
            "a\tb",
            "a\u{7}b",
            "x/Upper",
            "x/y:",
            "x/y:.tag",
            "x/-y",
            "x/y.",
            "x/a..b",
            "x/y@sha256:abc",
            "x/y@md5:00",
            "-rm",
            "host:port/x",
            &format!("x/y:{}", "t".repeat(129)),
        ] {
            let err = check_reference(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 3, "{bad}");
        }
        assert_eq!(normalize("hello"), "docker.io/library/hello:latest");
        assert_eq!(normalize("a/b:1"), "docker.io/a/b:1");
        assert_eq!(normalize("localhost/x"), "localhost/x:latest");
        assert_eq!(normalize("ghcr.io/o/w:v1"), "ghcr.io/o/w:v1");
        assert_eq!(normalize("reg:5000/o/w"), "reg:5000/o/w:latest");
        let digest = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalize(&format!("x@{digest}")),
            format!("docker.io/library/x@{digest}")
        );
        assert_eq!(tag_of("reg:5000/o/w"), None);
        assert_eq!(tag_of(&format!("reg:5000/o/w:t@{digest}")), Some("t"));
    }

    #[test]
    fn podman_store_paths_are_checked() {
        let store = |driver: &str, g: &str| PodmanStore {
            driver: driver.into(),
            graph_root: g.into(),
            run_root: "/run/containers/storage".into(),
        };
        assert_eq!(
            store("overlay", "/var/lib/containers/storage")
                .transport()
                .unwrap(),
            "containers-storage:[overlay@/var/lib/containers/storage+/run/containers/storage]"
        );
        for (driver, graph) in [
            ("", "/g"),
            ("over@lay", "/g"),
            ("vfs", "rel"),
            ("vfs", "/a+b"),
            ("vfs", "/a:b"),
        ] {
            assert!(
                store(driver, graph).transport().is_err(),
                "{driver} {graph}"
            );
        }
    }

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
