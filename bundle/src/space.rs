//! Free space before anything is written: the bytes and inodes each
//! destination filesystem must take, added up per filesystem (the content
//! store and the generations may be on one or on two).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Bytes and inodes the apply will take on one filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Need {
    pub(crate) bytes: u64,
    pub(crate) inodes: u64,
}

/// The nearest existing directory at or above `path`: the filesystem a
/// directory not made yet will be on.
fn existing_ancestor(path: &Path) -> &Path {
    let mut at = path;
    while !at.exists() {
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    at
}

pub(crate) fn device_of(path: &Path) -> Result<u64> {
    let at = existing_ancestor(path);
    Ok(fs::metadata(at).at("reading", at)?.dev())
}

/// Checks each destination filesystem for the bytes and inodes it must
/// take; destinations on one filesystem are added up.
pub(crate) fn check_space(needs: &[(&Path, Need)]) -> Result<()> {
    let mut by_device: BTreeMap<u64, (&Path, Need)> = BTreeMap::new();
    for &(path, need) in needs {
        let entry = by_device
            .entry(device_of(path)?)
            .or_insert((path, Need::default()));
        entry.1.bytes = entry.1.bytes.saturating_add(need.bytes);
        entry.1.inodes = entry.1.inodes.saturating_add(need.inodes);
    }
    for (path, need) in by_device.into_values() {
        let at = existing_ancestor(path);
        let st = nix::sys::statvfs::statvfs(at).map_err(|e| Error::Io {
            action: "checking free space on",
            path: at.to_path_buf(),
            source: e.into(),
        })?;
        let no_space = |needed, available, unit| Error::NoSpace {
            path: path.to_path_buf(),
            needed,
            available,
            unit,
        };
        let bytes = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
        if need.bytes > bytes {
            return Err(no_space(need.bytes, bytes, "bytes"));
        }
        // A filesystem that does not count inodes (btrfs) reports none.
        let inodes = st.files_available() as u64;
        if st.files() > 0 && need.inodes > inodes {
            return Err(no_space(need.inodes, inodes, "inodes"));
        }
    }
    Ok(())
}
