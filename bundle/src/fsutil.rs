//! Small filesystem steps that crash safety depends on.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Makes a directory's entries (renames, new files) durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("syncing", dir)
}

/// Writes `data` to `path` through a temporary file in the same directory,
/// fsync and rename: readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".owui-tmp-")
        .tempfile_in(dir)
        .at("creating a temporary file in", dir)?;
    tmp.write_all(data).at("writing", tmp.path())?;
    tmp.as_file().sync_all().at("syncing", tmp.path())?;
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(mode))
        .at("setting mode of", path)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .at("renaming into", path)?;
    fsync_dir(dir)
}

/// The path from directory `from` to `to`, both absolute, as `../..`-style
/// relative path, so a symlink keeps working when the tree is mounted
/// elsewhere (`--root`) or booted.
pub fn relative_path(from: &Path, to: &Path) -> std::path::PathBuf {
    let from: Vec<_> = from.components().collect();
    let to_c: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to_c).take_while(|(a, b)| a == b).count();
    let mut out = std::path::PathBuf::new();
    for _ in common..from.len() {
        out.push("..");
    }
    for c in &to_c[common..] {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(
                Path::new("/r/var/lib/ollama"),
                Path::new("/r/var/lib/owui/bundles/current/ollama")
            ),
            Path::new("../owui/bundles/current/ollama")
        );
        assert_eq!(
            relative_path(Path::new("/r/srv"), Path::new("/r/var/lib/x")),
            Path::new("../var/lib/x")
        );
        assert_eq!(
            relative_path(Path::new("/a"), Path::new("/a/b")),
            Path::new("b")
        );
    }
}
