//! The content store: every blob a node holds, once, named by its SHA-256.
//!
//! Blobs enter only through [`BlobWriter::commit`], which checks size and
//! digest of the bytes actually written, fsyncs, and renames into place, so a
//! file under `blobs/sha256/` is always complete and correct. Trees that
//! Ollama, Hugging Face or OCI tools read are hard links into this store.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, refuse_unless_real_dir};

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let store = Self::open_read_only(root)?;
        fs::create_dir_all(store.blobs_dir()).at("creating", &store.blobs_dir())?;
        fs::create_dir_all(store.tmp_dir()).at("creating", &store.tmp_dir())?;
        Ok(store)
    }

    /// Opens the store at `root` for reading only: creates nothing, and a
    /// store not made yet holds no blob. A link planted where our own
    /// directories belong is refused, for reading as for writing.
    pub fn open_read_only(root: &Path) -> Result<Self> {
        let store = ContentStore {
            root: root.to_path_buf(),
        };
        for own in ["blobs", "blobs/sha256", "tmp"] {
            refuse_unless_real_dir(&store.root.join(own))?;
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    pub fn contains(&self, digest: &Sha256Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Every digest held, sorted.
    pub fn digests(&self) -> Result<Vec<Sha256Digest>> {
        let dir = self.blobs_dir();
        let mut out = Vec::new();
        let entries = match fs::read_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            r => r.at("listing", &dir)?,
        };
        for entry in entries {
            let entry = entry.at("listing", &dir)?;
            // Anything not named like a digest is not ours; leave it alone.
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Sha256Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Total bytes of the blobs held.
    pub fn size_of(&self, digest: &Sha256Digest) -> Result<u64> {
        let p = self.blob_path(digest);
        Ok(fs::metadata(&p).at("reading", &p)?.len())
    }

    /// Starts writing a blob that must come out as `expected` with `size` bytes.
    pub fn writer(&self, expected: Sha256Digest, size: u64) -> Result<BlobWriter> {
        let tmp = self.tmp_dir().join(format!("{}.partial", expected.hex()));
        let file = File::create(&tmp).at("creating", &tmp)?;
        Ok(BlobWriter {
            out: HashingWriter::new(file),
            tmp,
            dest: self.blob_path(&expected),
            expected,
            size,
        })
    }

    pub fn remove(&self, digest: &Sha256Digest) -> Result<()> {
        let p = self.blob_path(digest);
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at("removing", &p),
            _ => Ok(()),
        }
    }

    /// Drops partial files left by an interrupted write.
    pub fn clear_partials(&self) -> Result<()> {
        let dir = self.tmp_dir();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let path = entry.at("listing", &dir)?.path();
            fs::remove_file(&path).at("removing", &path)?;
        }
        Ok(())
    }

    /// Makes `dest` a hard link to the blob (a copy if `dest` is on another
    /// filesystem). Replaces nothing: `dest` must not exist.
    pub fn link_blob(&self, digest: &Sha256Digest, dest: &Path) -> Result<()> {
        let src = self.blob_path(digest);
        match fs::hard_link(&src, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                fs::copy(&src, dest).at("copying into", dest)?;
                Ok(())
            }
            Err(e) => Err(e).at("linking", dest),
        }
    }
}

/// A blob being written; only [`BlobWriter::commit`] makes it visible.
pub struct BlobWriter {
    out: HashingWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    expected: Sha256Digest,
    size: u64,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Checks what was written against the expected digest and size, then
    /// fsyncs and renames it into the store. On mismatch the partial file is
    /// removed and nothing enters the store.
    pub fn commit(self) -> Result<()> {
        let (file, digest, written) = self.out.finish();
        if written != self.size || digest != self.expected {
            drop(file);
            let _ = fs::remove_file(&self.tmp);
            let detail = if written != self.size {
                format!("{written} bytes where {} were declared", self.size)
            } else {
                format!("content hashes to {digest}")
            };
            return Err(Error::untrusted(format!("blob {}", self.expected), detail));
        }
        file.sync_all().at("syncing", &self.tmp)?;
        fs::set_permissions(&self.tmp, fs::Permissions::from_mode(0o444))
            .at("setting mode of", &self.tmp)?;
        drop(file);
        crate::crash::point("blob-synced");
        fs::rename(&self.tmp, &self.dest).at("renaming into", &self.dest)?;
        if let Some(parent) = self.dest.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }
}

/// Test support: puts packed blobs straight into a store, as if a bundle
/// holding them had been applied. Panics on any failure.
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used)]
pub fn commit_packed(store: &ContentStore, blobs: &[crate::items::PackedBlob]) {
    use crate::items::BlobSource;
    for blob in blobs {
        let data = match &blob.source {
            BlobSource::File(p) => fs::read(p).unwrap(),
            BlobSource::Bytes(b) => b.clone(),
        };
        let mut w = store.writer(blob.digest, blob.size).unwrap();
        w.write_all(&data).unwrap();
        w.commit().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_checks_digest_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = Sha256Digest::of(b"hello");

        let mut w = store.writer(good, 5).unwrap();
        w.write_all(b"hellx").unwrap();
        assert_eq!(w.commit().unwrap_err().exit_code(), 4);
        assert!(!store.contains(&good));

        let mut w = store.writer(good, 5).unwrap();
        w.write_all(b"hello").unwrap();
        w.commit().unwrap();
        assert!(store.contains(&good));
        assert_eq!(store.digests().unwrap(), vec![good]);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
