//! Every file the audit reads is confined to the audit's root (a link to
//! the host's `/etc` reads the node's own) and bounded; a failure is a
//! reason for [`Audit::errors`](super::Audit::errors), never a panic.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::layout::Root;

/// Largest configuration file read (env files, units, redis.conf).
pub(super) const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A path of the node's namespace resolved inside `root` as every agent
/// path is (symlinks followed, never out of the root: [`Root::host`]);
/// Err(reason) when it cannot be.
pub(super) fn under_root(root: &Path, path: &Path) -> Result<PathBuf, String> {
    Root::new(root)
        .host(path)
        .map_err(|e| format!("{e}: cannot audit"))
}

pub(super) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "not found: cannot audit".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied: cannot audit".to_string(),
        _ => format!("{e}: cannot audit"),
    }
}

/// Opens a regular file without blocking on a FIFO; the error is a reason.
pub(super) fn open_regular(host: &Path) -> Result<(File, u32), String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(host)
        .map_err(|e| io_reason(&e))?;
    let meta = file.metadata().map_err(|e| io_reason(&e))?;
    if !meta.is_file() {
        return Err("not a regular file: cannot audit".to_string());
    }
    Ok((file, meta.permissions().mode()))
}

/// Reads a text file of at most [`MAX_FILE_BYTES`]; also returns its mode.
pub(super) fn read_text(root: &Path, path: &Path) -> Result<(String, u32), String> {
    let (file, mode) = open_regular(&under_root(root, path)?)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_reason(&e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes: cannot audit"));
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), mode))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::hardening::fixture::*;

    #[test]
    fn paths_stay_under_the_root() {
        assert_eq!(
            under_root(Path::new("/r"), Path::new("/etc/owui/x.env")).unwrap(),
            Path::new("/r/etc/owui/x.env")
        );
        assert_eq!(
            under_root(Path::new("/r"), Path::new("/etc/../../x")).unwrap(),
            Path::new("/r/x")
        );
        assert_eq!(
            under_root(Path::new("/r"), Path::new("relative")).unwrap(),
            Path::new("/r/relative")
        );
    }

    #[test]
    fn a_link_to_the_hosts_etc_reads_the_nodes_file() {
        let n = Node::compliant();
        // The node's env file is a link to /etc/passwd: the node's own
        // (holding the compliant settings), never the host's.
        n.write("/etc/passwd", COMPLIANT_ENV, 0o600);
        fs::remove_file(n.host(ENV)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", n.host(ENV)).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.errors.is_empty(), "{a:#?}");
    }
}
