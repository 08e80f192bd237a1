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
