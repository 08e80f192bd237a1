//! Small filesystem steps that crash safety depends on.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

/// Opens `path` for reading only if it is a regular file: a FIFO would
/// block forever and a device (`/dev/zero`) never ends. Opened with
/// O_NONBLOCK so even the open of a FIFO returns at once; the type is
/// checked on the opened descriptor, not on a name that could change.
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .at("opening", path)?;
    let meta = file.metadata().at("reading", path)?;
    if !meta.file_type().is_file() {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("{what} must be a regular file, not a FIFO, device, socket or directory"),
        ));
    }
    Ok(file)
}

/// Reads a whole regular file of at most `cap` bytes (see [`open_regular`]).
pub fn read_regular_capped(path: &Path, cap: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path, what)?;
    let len = file.metadata().at("reading", path)?.len();
    if len > cap {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("{what} is {len} bytes, over its {cap}-byte cap"),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    // The length may grow after the check; never read past the cap.
    file.take(cap + 1)
        .read_to_end(&mut out)
        .at("reading", path)?;
    if out.len() as u64 > cap {
        return Err(Error::invalid(
            path.display().to_string(),
            format!("{what} grew past its {cap}-byte cap while being read"),
        ));
    }
    Ok(out)
}

/// Refuses a store's own subdirectory (`blobs/`, `tmp/`, `generations/`,
/// `staging/`) that exists as anything but a real directory: a symlink
/// planted there would send the store's writes elsewhere. Absent is fine
/// (the store makes it).
pub fn refuse_unless_real_dir(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) => Err(Error::refused(
            path.display().to_string(),
            if meta.file_type().is_symlink() {
                "is a symbolic link; the store's own directories must be real directories (remove the link)"
            } else {
                "is not a directory; the store's own directories must be real directories"
            },
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at("reading", path),
    }
}

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
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        for p in [fifo.as_path(), Path::new("/dev/zero"), dir.path()] {
            let err = read_regular_capped(p, 10, "a key").unwrap_err();
            assert_eq!(err.exit_code(), 3, "{}: {err}", p.display());
            assert!(err.to_string().contains("regular file"), "{err}");
        }
        let big = dir.path().join("big");
        fs::write(&big, [0u8; 11]).unwrap();
        assert!(read_regular_capped(&big, 10, "a key")
            .unwrap_err()
            .to_string()
            .contains("11 bytes"));
        fs::write(&big, b"ok").unwrap();
        assert_eq!(read_regular_capped(&big, 10, "a key").unwrap(), b"ok");
    }

    #[test]
    fn own_directories_must_be_real() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(refuse_unless_real_dir(&real).is_ok());
        assert!(refuse_unless_real_dir(&dir.path().join("absent")).is_ok());
        for p in [&link, &file] {
            let err = refuse_unless_real_dir(p).unwrap_err();
            assert_eq!(err.exit_code(), 5, "{err}");
            assert!(err.to_string().contains(&*p.to_string_lossy()), "{err}");
        }
    }

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
