//! The pulled-blob cache: `CACHE/oci/blobs/sha256/<hex>`, content-addressed.
//! A blob is written to `CACHE/oci/tmp/` and renamed into place only after
//! its digest checked out, so the cache never holds a half-written or wrong
//! blob under a digest's name; a failed pull leaves nothing behind.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result, Sha256Digest};

pub struct BlobCache {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl BlobCache {
    /// Opens (creating) the cache under the builder's cache directory.
    pub fn open(cache_dir: &Path) -> Result<BlobCache> {
        let root = cache_dir.join("oci");
        let blobs = root.join("blobs/sha256");
        let tmp = root.join("tmp");
        for dir in [&blobs, &tmp] {
            fs::create_dir_all(dir).at("creating", dir)?;
        }
        Ok(BlobCache { blobs, tmp })
    }

    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether a blob of this digest and size is cached (its bytes are
    /// hashed again when the image is packed).
    pub fn has(&self, digest: &Sha256Digest, size: u64) -> Result<bool> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.is_file() && m.len() == size),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).at("reading", &path),
        }
    }

    /// Reads a small cached blob (a manifest or index) and checks its
    /// digest; `None` when it is not cached.
    pub fn read_checked(&self, digest: &Sha256Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at("reading", &path),
        };
        let actual = Sha256Digest::of(&data);
        if actual != *digest {
            return Err(Error::untrusted(
                format!("cached blob {}", path.display()),
                format!("hashes to {actual}; remove it and pull again"),
            ));
        }
        Ok(Some(data))
    }

    /// A fresh temporary file next to the blobs, removed when dropped
    /// unless [`BlobCache::commit`] renames it into place.
    pub fn temp(&self) -> Result<tempfile::NamedTempFile> {
        tempfile::Builder::new()
            .prefix("partial-")
            .tempfile_in(&self.tmp)
            .at("creating a file in", &self.tmp)
    }

    /// Moves a checked temporary file to its digest's name.
    pub fn commit(&self, tmp: tempfile::NamedTempFile, digest: &Sha256Digest) -> Result<PathBuf> {
        let path = self.path(digest);
        tmp.as_file().sync_all().at("writing", tmp.path())?;
        tmp.persist(&path).map_err(|e| Error::Io {
            action: "moving into the cache",
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }

    /// Stores a small blob (a manifest) whose digest the caller checked.
    pub fn put(&self, data: &[u8], digest: &Sha256Digest) -> Result<PathBuf> {
        use std::io::Write;
        let mut tmp = self.temp()?;
        tmp.write_all(data).at("writing", tmp.path())?;
        self.commit(tmp, digest)
    }
}
