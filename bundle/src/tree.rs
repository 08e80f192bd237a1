//! Steps shared by the Ollama and Hugging Face trees: directories owned by
//! the service user, blobs linked in atomically, leftovers of a crash removed.
//!
//! The trees are owned by a less privileged user while we run as root, so
//! nothing below the root follows a symlink: a planted link must not make
//! us create or chown something elsewhere.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::fsync_dir;
use crate::items::Owner;
use crate::store::ContentStore;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

/// Prefix of `fsutil::write_atomic`'s temporary files and of ours.
pub(crate) const TEMP_PREFIX: &str = ".owui-tmp-";

/// Changes owner without following a symlink.
pub(crate) fn chown(path: &Path, owner: Option<Owner>) -> Result<()> {
    match owner {
        Some(o) => {
            std::os::unix::fs::lchown(path, Some(o.uid), Some(o.gid)).at("changing owner of", path)
        }
        None => Ok(()),
    }
}

/// Creates the tree's root if missing (it may itself be a symlink the
/// operator set up) and gives it to `owner`.
pub(crate) fn ensure_root(root: &Path, owner: Option<Owner>) -> Result<()> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(
                root.display().to_string(),
                "exists and is not a directory",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(root)
                .at("creating", root)?;
            fs::set_permissions(root, fs::Permissions::from_mode(0o755))
                .at("setting mode of", root)?;
            if let Some(parent) = root.parent() {
                fsync_dir(parent)?;
            }
        }
        Err(e) => return Err(e).at("reading", root),
    }
    if let Some(o) = owner {
        nix::unistd::chown(
            root,
            Some(nix::unistd::Uid::from_raw(o.uid)),
            Some(nix::unistd::Gid::from_raw(o.gid)),
        )
        .map_err(io::Error::from)
        .at("changing owner of", root)?;
    }
    Ok(())
}

/// Creates each directory of `rel` below `root` (mode 0755, owned by
/// `owner`), refusing symlinks and non-directories on the way. Returns
/// the full path.
pub(crate) fn ensure_dirs(root: &Path, rel: &Path, owner: Option<Owner>) -> Result<PathBuf> {
    let mut dir = root.to_path_buf();
    for part in rel.components() {
        let std::path::Component::Normal(part) = part else {
            return Err(Error::invalid(
                rel.display().to_string(),
                "not a plain relative path",
            ));
        };
        let parent = dir.clone();
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(
                    dir.display().to_string(),
                    "exists and is not a directory (symlinks are refused)",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::DirBuilder::new().mode(0o755).create(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        if !fs::symlink_metadata(&dir).at("reading", &dir)?.is_dir() {
                            return Err(Error::invalid(
                                dir.display().to_string(),
                                "exists and is not a directory",
                            ));
                        }
                    }
                    Err(e) => return Err(e).at("creating", &dir),
                }
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .at("setting mode of", &dir)?;
                fsync_dir(&parent)?;
            }
            Err(e) => return Err(e).at("reading", &dir),
        }
        chown(&dir, owner)?;
    }
    Ok(dir)
}

/// Refuses to put a file where a directory is (a rename would fail later
/// with a less clear error).
pub(crate) fn refuse_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Err(Error::invalid(
            path.display().to_string(),
            "is a directory where a file belongs",
        )),
        _ => Ok(()),
    }
}

/// Removes `.owui-tmp-*` entries a crash left in `dir`.
pub(crate) fn remove_stale_temps(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).at("listing", dir)? {
        let entry = entry.at("listing", dir)?;
        let stale = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        if stale && !entry.file_type().at("reading", &entry.path())?.is_dir() {
            let p = entry.path();
            fs::remove_file(&p).at("removing", &p)?;
        }
    }
    Ok(())
}

/// Makes `target` a link to the store's blob unless something is already
/// there. Linked under a temporary name and renamed, so a crash never
/// leaves a partial blob under the real name (the store copies across
/// filesystems).
pub(crate) fn place_blob(store: &ContentStore, digest: &Sha256Digest, target: &Path) -> Result<()> {
    match fs::symlink_metadata(target) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("reading", target),
    }
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("blob");
    let tmp = target.with_file_name(format!("{TEMP_PREFIX}{name}"));
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).at("removing", &tmp),
        _ => {}
    }
    store.link_blob(digest, &tmp)?;
    fs::rename(&tmp, target).at("renaming into", target)
}
