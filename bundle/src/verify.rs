//! Checking every blob of an opened bundle: size and SHA-256, hashed in
//! parallel (one worker per core, largest blobs first), and the blobs
//! items are built from (Ollama manifests) against their items.

use std::io::Read;

use crate::archive::{copy_with_progress, BundleReader};
use crate::digest::{HashingWriter, Sha256Digest};
use crate::error::{Error, Result};
use crate::fsutil::read_regular_capped;
use crate::manifest::BlobEntry;
use crate::progress::Progress;
use crate::store::ContentStore;
use crate::{ollama, parallel};

/// Hashes one blob as stored in the bundle and compares size and digest.
pub fn check_blob(reader: &BundleReader, blob: &BlobEntry, progress: &dyn Progress) -> Result<()> {
    let what = || format!("{}: blob {}", reader.path().display(), blob.digest);
    let mut sink = HashingWriter::new(std::io::sink());
    copy_with_progress(reader.blob_reader(blob)?, &mut sink, |n| {
        progress.advance(n)
    })
    .map_err(|e| Error::untrusted(what(), e.to_string()))?;
    let (_, digest, size) = sink.finish();
    if size != blob.size {
        return Err(Error::untrusted(
            what(),
            format!("{size} bytes where the manifest declares {}", blob.size),
        ));
    }
    if digest != blob.digest {
        return Err(Error::untrusted(
            what(),
            format!("content hashes to {digest}"),
        ));
    }
    Ok(())
}

/// Checks every blob in the bundle.
pub fn check_all_blobs(reader: &BundleReader, progress: &dyn Progress) -> Result<()> {
    let mut blobs: Vec<&BlobEntry> = reader.manifest().blobs.iter().collect();
    blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
    progress.stage(
        "verify",
        blobs.iter().map(|b| b.size).fold(0, u64::saturating_add),
    );
    parallel::for_each(&blobs, |b| check_blob(reader, b, progress))?;
    progress.finish();
    Ok(())
}

/// Checks what the node would lay out from blob contents, before a byte is
/// written: each Ollama manifest (read from the bundle, or from the store
/// for a delta) must name exactly the blobs its item lists.
pub fn check_item_blobs(reader: &BundleReader, store: &ContentStore) -> Result<()> {
    let manifest = reader.manifest();
    for model in &manifest.ollama {
        let bytes = match manifest.blobs.iter().find(|b| b.digest == model.manifest) {
            Some(blob) => read_small_blob(reader, blob)?,
            None => {
                let path = store.blob_path(&model.manifest);
                read_regular_capped(&path, ollama::MAX_MANIFEST, "a stored blob")?
            }
        };
        ollama::check_manifest(model, &bytes)?;
    }
    Ok(())
}

/// A whole small blob from the bundle, its size and digest checked.
fn read_small_blob(reader: &BundleReader, blob: &BlobEntry) -> Result<Vec<u8>> {
    let what = || format!("{}: blob {}", reader.path().display(), blob.digest);
    if blob.size > ollama::MAX_MANIFEST {
        return Err(Error::invalid(
            what(),
            format!("an Ollama manifest over {} bytes", ollama::MAX_MANIFEST),
        ));
    }
    let mut bytes = Vec::new();
    reader
        .blob_reader(blob)?
        .take(blob.size + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::untrusted(what(), e.to_string()))?;
    if bytes.len() as u64 != blob.size || Sha256Digest::of(&bytes) != blob.digest {
        return Err(Error::untrusted(
            what(),
            "content does not match its size and digest",
        ));
    }
    Ok(bytes)
}
