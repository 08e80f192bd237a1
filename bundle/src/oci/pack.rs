//! Build side: the image a spec names, read from an OCI image layout or an
//! oci-archive, checked and packed blob for blob so digests survive.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::layout::{
    check_schema, pick_platform, select, ImageManifest, Index, Layout, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use super::reference::check_reference;
use crate::error::{Error, IoContext, Result};
use crate::items::{BlobSource, OciImage, PackedBlob};
use crate::spec::OciSpec;

/// Build side: reads and checks the image `spec` names, from an OCI image
/// layout directory or an oci-archive (extracted into `scratch`, which the
/// caller owns and must keep until the returned blobs are packed).
pub fn pack(spec: &OciSpec, scratch: &Path) -> Result<(OciImage, Vec<PackedBlob>)> {
    check_reference(&spec.reference)?;
    let Some(source) = &spec.source else {
        return Err(Error::invalid(
            format!("[[oci]] {:?}", spec.reference),
            "has no source: pull it with owui-builder (bundle create, build, oci pull), \
             or name an OCI image layout or oci-archive",
        ));
    };
    let meta = fs::metadata(source).at("reading", source)?;
    let root = if meta.is_dir() {
        source.clone()
    } else if meta.is_file() {
        extract_archive(source, scratch)?
    } else {
        return Err(Error::invalid(
            source.display().to_string(),
            "neither an OCI image layout directory nor an oci-archive file",
        ));
    };
    let layout = Layout::open(&root)?;
    let index = layout.index()?;
    let mut chosen = select(&index, &spec.reference, source)?;
    let nested;
    let mut media_type = chosen.media_type.clone().unwrap_or_default();
    if media_type == OCI_INDEX {
        let digest = layout.digest_of(chosen, "image index")?;
        let (inner, _): (Index, PathBuf) = layout.json_blob(&digest, chosen.size, "image index")?;
        check_schema(inner.schema_version, source)?;
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
            format!("image {:?} in {}", spec.reference, source.display()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::oci::fixtures::*;

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
}
