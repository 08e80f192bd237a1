//! Podman's image storage: images copied in from a layout with skopeo
//! (`--preserve-digests`), names removed, and the digest stored for a name.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::reference::ImageReference;
use crate::command::Cmd;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::items::OciImage;

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

/// Detaches every mount at or below `dir`, deepest first. containers/
/// storage's overlay driver bind-mounts its own directory and leaves the
/// mount behind when skopeo exits: harmless in the live node's store, a
/// leftover on the host when the store is an image being built or a disk
/// under `--root`.
pub fn unmount_below(dir: &Path) -> Result<()> {
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).at("reading", info)?;
    let dir = dir.canonicalize().at("resolving", dir)?;
    // Field 5 is the mount point, with spaces and the like as octal escapes.
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).map_err(|e| Error::Io {
            action: "unmounting",
            path: p.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
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
        let normal = image.reference.parse::<ImageReference>()?;
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
            .arg(format!("{target}{normal}"))
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
    let normal = reference.parse::<ImageReference>()?;
    store.transport()?;
    // podman untags an image that has other names; `skopeo delete` would
    // drop the image under all of them.
    store
        .podman()
        .args(["rmi", "--ignore"])
        .arg(normal.to_string())
        .output()?;
    Ok(())
}

/// The digest of the manifest podman's storage holds for `reference`.
pub fn stored_digest(reference: &str, store: &PodmanStore) -> Result<Option<Sha256Digest>> {
    let normal = reference.parse::<ImageReference>()?;
    let image = format!("{}{normal}", store.transport()?);
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
}
