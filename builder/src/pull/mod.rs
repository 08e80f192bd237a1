//! Pulling container images from OCI registries, build side only (the
//! agent never links a registry client). An `[[oci]]` entry without
//! `source` names an image by digest (`name:tag@sha256:…`); it is pulled
//! into a content-addressed cache (`CACHE/oci/blobs/sha256/`) and laid out
//! as an OCI image layout that the pack code reads like any other, hashing
//! every blob again. A pull whose blobs are all cached sends nothing, so a
//! rebuild works with the registry gone.
//!
//! - `auth.rs`: credentials from a docker `config.json`.
//! - `cache.rs`: the blob cache (temp file, digest check, rename).
//! - `registry.rs`: the distribution protocol, through `oci-client`.
//! - `lock.rs`: `oci lock`, tags resolved to digests and written back.

mod auth;
mod cache;
pub mod lock;
mod registry;

use std::cell::OnceCell;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use owui_bundle::error::IoContext;
use owui_bundle::oci::{lists, ImageReference, Listed, Lists, OCI_MANIFEST};
use owui_bundle::spec::OciSpec;
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;

use cache::BlobCache;
use registry::Registry;

/// The index annotation that names the image in the layouts we write.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// How to reach registries and where pulled blobs are kept.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The builder's cache directory; blobs go to `oci/blobs/sha256/` in it.
    pub cache_dir: PathBuf,
    /// A docker `config.json` with credentials (else the conventions in
    /// `auth.rs`).
    pub registry_config: Option<PathBuf>,
    /// Per-registry certificate authorities: `DIR/<host[:port]>/*.crt`.
    pub certs_dir: PathBuf,
    /// For connecting and for each read.
    pub timeout: Duration,
    /// `(registry, mirror)`: the registry's images are fetched from the
    /// mirror (credentials and certificates are the mirror's).
    pub mirrors: Vec<(String, String)>,
    /// Pull references that name only a tag (whatever the tag points to
    /// today): off unless asked for.
    pub allow_tags: bool,
    /// Fetch nothing: everything must be in the cache.
    pub offline: bool,
}

/// One image pulled: where from, by which digests, and how much came over
/// the network this time.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// The reference as the spec writes it.
    pub reference: String,
    /// The registry (`host[:port]`) and repository the reference names.
    pub registry: String,
    pub repository: String,
    /// The mirror it was fetched from instead, if any (`None` also when
    /// everything came from the cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<String>,
    /// The digest the reference pins (an index or a manifest).
    pub digest: Sha256Digest,
    /// The linux/amd64 image manifest.
    pub manifest: Sha256Digest,
    /// The OCI image layout written for the pack code.
    #[serde(skip)]
    pub layout: PathBuf,
    /// Config and layers, and their bytes.
    pub blobs: usize,
    pub bytes: u64,
    /// Bytes of blobs fetched from the registry (0: all from the cache).
    pub fetched_bytes: u64,
}

/// The images pulled for a spec. Their layouts (links into the cache) are
/// removed when this is dropped: keep it until the content is packed.
pub struct Pulls {
    pub images: Vec<Pulled>,
    _layouts: Option<tempfile::TempDir>,
}

/// Gives every `[[oci]]` entry without a source one: the image pulled (or
/// found in the cache) and laid out in a scratch directory in the cache. A
/// reference without a digest is refused first, before anything is fetched
/// or created, naming where it is written (`locate(i)`), unless
/// `allow_tags`.
pub fn pull_missing(
    oci: &mut [OciSpec],
    opts: &PullOptions,
    locate: impl Fn(usize) -> String,
) -> Result<Pulls> {
    let mut pulls = Pulls {
        images: Vec::new(),
        _layouts: None,
    };
    if oci.iter().all(|o| o.source.is_some()) {
        return Ok(pulls);
    }
    for (i, o) in oci.iter().enumerate() {
        if o.source.is_none() {
            check_pinned(&o.reference, opts.allow_tags)
                .map_err(|e| Error::invalid(format!("{}: oci.ref", locate(i)), detail_of(e)))?;
        }
    }
    let scratch = pulls
        ._layouts
        .insert(layouts_dir(&opts.cache_dir)?)
        .path()
        .to_path_buf();
    for (i, o) in oci.iter_mut().enumerate() {
        if o.source.is_some() {
            continue;
        }
        let p = pull(&o.reference, opts, &scratch.join(format!("pulled-{i}")))?;
        o.source = Some(p.layout.clone());
        pulls.images.push(p);
    }
    Ok(pulls)
}

/// A scratch directory for pulled images' layouts (links into the cache),
/// removed when dropped.
pub fn layouts_dir(cache: &Path) -> Result<tempfile::TempDir> {
    let dir = cache.join("oci");
    fs::create_dir_all(&dir).at("creating", &dir)?;
    tempfile::Builder::new()
        .prefix("layouts-")
        .tempdir_in(&dir)
        .at("creating a directory in", &dir)
}

fn detail_of(e: Error) -> String {
    match e {
        Error::Invalid { what, detail } => format!("{what}: {detail}"),
        e => e.to_string(),
    }
}

/// Parses `reference` and refuses one without a digest unless `allow_tags`.
pub fn check_pinned(reference: &str, allow_tags: bool) -> Result<ImageReference> {
    let parsed: ImageReference = reference.parse()?;
    if parsed.digest().is_none() && !allow_tags {
        return Err(Error::invalid(
            format!("OCI reference {reference:?}"),
            "names no digest, so the registry decides what is pulled: pin it \
             (name:tag@sha256:…; `owui-builder oci lock SPEC` writes the digests in) \
             or pass --allow-tag-references",
        ));
    }
    Ok(parsed)
}

/// Pulls one image into the cache (what is there already is not fetched
/// again) and writes an OCI image layout for it at `layout` (blobs are
/// links into the cache).
pub fn pull(reference: &str, opts: &PullOptions, layout: &Path) -> Result<Pulled> {
    let parsed = check_pinned(reference, opts.allow_tags)?;
    let cache = BlobCache::open(&opts.cache_dir)?;
    let registry = OnceCell::new();
    let online = |what: &str| connect_once(&registry, &parsed, opts, what);

    let (top, top_digest) = match parsed.digest() {
        Some(d) => match cache.read_checked(&d)? {
            Some(data) => (data, d),
            None => {
                let (data, d) = online("manifest")?.manifest(parsed.tag(), Some(&d))?;
                cache.put(&data, &d)?;
                (data, d)
            }
        },
        None => {
            let (data, d) = online("manifest")?.manifest(parsed.tag(), None)?;
            cache.put(&data, &d)?;
            (data, d)
        }
    };
    let named = |e: Error| match e {
        Error::Invalid { what, detail } => Error::invalid(format!("{reference}: {what}"), detail),
        e => e,
    };
    let (top_type, top_lists) = lists(&top, &top_digest).map_err(named)?;
    let mut manifests = vec![(top_digest, top.len() as u64)];
    let (manifest, manifest_type, blobs) = match top_lists {
        Lists::Blobs(blobs) => (top_digest, top_type.clone(), blobs),
        Lists::Platform(chosen) => {
            let data = match cache.read_checked(&chosen.digest)? {
                Some(data) => data,
                None => {
                    let (data, d) = online("manifest")?.manifest(None, Some(&chosen.digest))?;
                    cache.put(&data, &d)?;
                    data
                }
            };
            if data.len() as u64 != chosen.size {
                return Err(Error::untrusted(
                    format!("manifest {} of {reference}", chosen.digest),
                    format!(
                        "{} bytes where the index declares {}",
                        data.len(),
                        chosen.size
                    ),
                ));
            }
            manifests.push((chosen.digest, chosen.size));
            match lists(&data, &chosen.digest).map_err(named)? {
                (media_type, Lists::Blobs(blobs)) => (chosen.digest, media_type, blobs),
                (_, Lists::Platform(_)) => {
                    return Err(Error::invalid(
                        format!("image index {top_digest} of {reference}"),
                        "its linux/amd64 entry is another index, not an image manifest",
                    ))
                }
            }
        }
    };
    if manifest_type != OCI_MANIFEST {
        // Checked before any blob is fetched: the pack would refuse it.
        return Err(Error::invalid(
            format!("{reference}: manifest {manifest}"),
            format!(
                "media type {manifest_type:?} is not an OCI image manifest: nodes import \
                 OCI manifests only (skopeo 1.9 on Debian 12 cannot import Docker ones from a \
                 layout); convert it once with `skopeo copy --format oci docker://… oci:DIR` \
                 and name DIR as the entry's source (this changes the digest)"
            ),
        ));
    }
    let mut missing: Vec<Listed> = Vec::new();
    for b in &blobs {
        if !cache.has(&b.digest, b.size)? && !missing.iter().any(|m| m.digest == b.digest) {
            missing.push(b.clone());
        }
    }
    let fetched_bytes = if missing.is_empty() {
        0
    } else {
        online("blobs")?.fetch_blobs(&missing, &cache)?
    };
    write_layout(
        layout,
        &cache,
        reference,
        (&top_type, top_digest, top.len() as u64),
        manifests
            .iter()
            .map(|(d, _)| *d)
            .chain(blobs.iter().map(|b| b.digest)),
    )?;
    let full = parsed.repository();
    let (host, repository) = full.split_once('/').unwrap_or((full.as_str(), ""));
    Ok(Pulled {
        reference: reference.to_string(),
        registry: host.to_string(),
        repository: repository.to_string(),
        mirror: registry.get().and_then(|r| r.mirror().map(str::to_string)),
        digest: top_digest,
        manifest,
        layout: layout.to_path_buf(),
        blobs: blobs.len(),
        bytes: blobs.iter().map(|b| b.size).sum(),
        fetched_bytes,
    })
}

/// The registry client, made on first use; with `--offline`, an error
/// saying what is missing from the cache.
fn connect_once<'a>(
    cell: &'a OnceCell<Registry>,
    reference: &ImageReference,
    opts: &PullOptions,
    what: &str,
) -> Result<&'a Registry> {
    if opts.offline {
        return Err(Error::invalid(
            format!("{what} of {reference}"),
            format!(
                "not in the cache {} and --offline fetches nothing",
                opts.cache_dir.join("oci").display()
            ),
        ));
    }
    if let Some(r) = cell.get() {
        return Ok(r);
    }
    let r = Registry::connect(reference, opts)?;
    Ok(cell.get_or_init(|| r))
}

/// An OCI image layout at `dir` naming one image (`top`), its blobs links
/// to the cached files.
fn write_layout(
    dir: &Path,
    cache: &BlobCache,
    reference: &str,
    (media_type, digest, size): (&str, Sha256Digest, u64),
    blobs: impl Iterator<Item = Sha256Digest>,
) -> Result<()> {
    let blob_dir = dir.join("blobs/sha256");
    fs::create_dir_all(&blob_dir).at("creating", &blob_dir)?;
    for d in blobs {
        let link = blob_dir.join(d.hex());
        if fs::symlink_metadata(&link).is_err() {
            symlink(cache.path(&d), &link).at("linking", &link)?;
        }
    }
    let marker = dir.join("oci-layout");
    fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#).at("writing", &marker)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": size,
            "annotations": { REF_NAME: reference },
        }],
    });
    let path = dir.join("index.json");
    fs::write(&path, index.to_string()).at("writing", &path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny image's blobs put straight into the cache; returns the
    /// manifest's digest.
    fn cached_image(cache_dir: &Path) -> Sha256Digest {
        let cache = BlobCache::open(cache_dir).unwrap();
        let put = |data: &[u8]| {
            let d = Sha256Digest::of(data);
            cache.put(data, &d).unwrap();
            (d, data.len())
        };
        let (layer, layer_n) = put(b"not really a tar");
        let (config, config_n) = put(br#"{"architecture":"amd64","os":"linux"}"#);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": owui_bundle::oci::OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                        "digest": config.to_string(), "size": config_n },
            "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar",
                         "digest": layer.to_string(), "size": layer_n }],
        });
        put(manifest.to_string().as_bytes()).0
    }

    fn options(cache_dir: &Path) -> PullOptions {
        PullOptions {
            cache_dir: cache_dir.to_path_buf(),
            registry_config: None,
            certs_dir: cache_dir.join("no-certs"),
            timeout: Duration::from_secs(1),
            mirrors: Vec::new(),
            allow_tags: false,
            offline: true,
        }
    }

    #[test]
    fn a_cached_image_is_laid_out_for_the_pack_with_no_network() {
        let dir = tempfile::tempdir().unwrap();
        let digest = cached_image(dir.path());
        // Nothing listens on port 9 of a documentation address: any fetch
        // would fail, and --offline forbids one anyway.
        let reference = format!("192.0.2.1:9/owui/app:v1@{digest}");
        let layout = dir.path().join("layout");
        let pulled = pull(&reference, &options(dir.path()), &layout).unwrap();
        assert_eq!((pulled.manifest, pulled.digest), (digest, digest));
        assert_eq!((pulled.blobs, pulled.fetched_bytes), (2, 0));
        assert_eq!(pulled.registry, "192.0.2.1:9");
        let spec = OciSpec {
            reference: reference.clone(),
            source: Some(layout),
        };
        let scratch = tempfile::tempdir().unwrap();
        let (image, blobs) = owui_bundle::oci::pack(&spec, scratch.path()).unwrap();
        assert_eq!(image.manifest, digest);
        assert_eq!(blobs.len(), 3);
    }

    #[test]
    fn offline_names_what_the_cache_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let reference = format!("reg.example/owui/app@sha256:{}", "1".repeat(64));
        let err = pull(&reference, &options(dir.path()), &dir.path().join("l")).unwrap_err();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.contains("--offline") && text.contains("reg.example/owui/app"),
            "{text}"
        );
    }

    #[test]
    fn tag_references_are_refused_where_written_before_any_pull() {
        let dir = tempfile::tempdir().unwrap();
        let mut oci = vec![
            OciSpec {
                reference: "reg.example/a:1".into(),
                source: Some(dir.path().to_path_buf()),
            },
            OciSpec {
                reference: "reg.example/b:2".into(),
                source: None,
            },
        ];
        let err = pull_missing(&mut oci, &options(dir.path()), |i| {
            format!("spec.toml line {}", 10 * i)
        })
        .err()
        .unwrap();
        assert_eq!(err.exit_code(), 3);
        let text = err.to_string();
        assert!(
            text.starts_with("spec.toml line 10: oci.ref") && text.contains("names no digest"),
            "{text}"
        );
        assert!(!dir.path().join("oci").exists());
    }
}
