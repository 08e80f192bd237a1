//! Checking every blob of an opened bundle: size and SHA-256, hashed in
//! parallel (one worker per core, largest blobs first).

use crate::archive::{copy_with_progress, BundleReader};
use crate::digest::HashingWriter;
use crate::error::{Error, Result};
use crate::manifest::BlobEntry;
use crate::parallel;
use crate::progress::Progress;

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
