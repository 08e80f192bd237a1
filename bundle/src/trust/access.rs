//! Who may change what the trust store reads. A key is only as trustworthy
//! as the accounts that can replace it, so every directory on the way to a
//! trust directory and every file read in it must be owned by root (or by
//! the user running us, for a builder's own keys) and writable by no one
//! else, and a key may not be a link out of its directory.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

const WRITABLE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;

fn may_own(uid: u32) -> bool {
    uid == 0 || uid == nix::unistd::geteuid().as_raw()
}

/// Refuses `path` unless root or we own it and neither group nor others may
/// write it. A root-owned sticky directory on the way (like /tmp) is
/// allowed: there no one else may rename or remove what we own.
fn check_owner_and_mode(path: &Path, meta: &Metadata, on_the_way: bool) -> Result<()> {
    if !may_own(meta.uid()) {
        return Err(Error::untrusted(
            path.display().to_string(),
            format!(
                "owned by uid {}: only root (or the user running this) may own what the trust store reads",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode();
    let sticky_root_dir = on_the_way && meta.uid() == 0 && mode & STICKY != 0;
    if mode & WRITABLE_BY_OTHERS != 0 && !sticky_root_dir {
        return Err(Error::untrusted(
            path.display().to_string(),
            format!(
                "mode {:04o} is writable by group or others, who could change the trusted keys (chmod go-w)",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks a trust directory and every directory the kernel passes through
/// to reach it (those holding any link on the way included). Returns its
/// resolved path, or `None` when it does not exist.
pub(super) fn check_dir(dir: &Path) -> Result<Option<PathBuf>> {
    let given = std::path::absolute(dir).at("resolving", dir)?;
    let resolved = match fs::canonicalize(&given) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.at("resolving", dir)?,
    };
    let meta = fs::metadata(&resolved).at("reading", dir)?;
    if !meta.is_dir() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "is not a directory",
        ));
    }
    check_owner_and_mode(dir, &meta, false)?;
    let mut checked = BTreeSet::from([resolved.clone()]);
    for prefix in given.ancestors() {
        let prefix = fs::canonicalize(prefix).at("resolving", prefix)?;
        for on_the_way in prefix.ancestors() {
            if checked.insert(on_the_way.to_path_buf()) {
                let meta = fs::metadata(on_the_way).at("reading", on_the_way)?;
                check_owner_and_mode(on_the_way, &meta, true)?;
            }
        }
    }
    Ok(Some(resolved))
}

/// Checks a file of the trust directory `dir` (as resolved by
/// [`check_dir`]) before it is read: root or we own it and no one else may
/// write it. A link is refused, or with `links_inside` followed only to a
/// file directly in `dir`. The reader then refuses anything but a regular
/// file.
pub(super) fn check_file(dir: &Path, path: &Path, links_inside: bool) -> Result<()> {
    let meta = fs::symlink_metadata(path).at("reading", path)?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).at("reading link", path)?;
        if !links_inside {
            return Err(Error::untrusted(
                path.display().to_string(),
                format!(
                    "is a link (to {}); only files are kept here",
                    target.display()
                ),
            ));
        }
        let resolved = fs::canonicalize(path).at("resolving", path)?;
        if resolved.parent() != Some(dir) {
            return Err(Error::untrusted(
                path.display().to_string(),
                format!(
                    "is a link to {}, outside the trust directory {}",
                    resolved.display(),
                    dir.display()
                ),
            ));
        }
    }
    let meta = fs::metadata(path).at("reading", path)?;
    check_owner_and_mode(path, &meta, false)
}
