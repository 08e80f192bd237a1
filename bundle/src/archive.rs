//! Reading a bundle file: the bounded manifest and its signature first, the
//! signature checked before anything in the manifest is believed, then every
//! tar header checked against the manifest, and blobs read by offset.
//!
//! The file layout (docs/bundles.md): a ustar archive whose first entry is
//! `manifest.json`, second `manifest.json.minisig`, then one entry per blob
//! (`blobs/sha256/<hex>` or `blobs/sha256/<hex>.zst`) exactly where the
//! manifest says, then the end-of-archive zero blocks and nothing else.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::open_regular;
use crate::manifest::{
    blob_entry_name, padded, BlobEntry, Encoding, Manifest, VerifiedManifest, BLOCK, MANIFEST_MAX,
};
use crate::sign::SIGNATURE_MAX;
use crate::trust::TrustStore;

pub const MANIFEST_NAME: &str = "manifest.json";
pub const SIGNATURE_NAME: &str = "manifest.json.minisig";
/// Most zero padding accepted after the last entry (one default tar record).
const TRAILER_MAX: u64 = 10240;
/// The largest zstd window a blob may use; bounds decoder memory (8 MiB).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 23;
pub const IO_BUFFER: usize = 1 << 20;

/// A bundle file opened without checking its signature: only for showing
/// what it claims (`owui-builder bundle inspect`).
pub struct UncheckedBundle {
    pub manifest_bytes: Vec<u8>,
    pub signature: Option<String>,
    /// Where the blob section starts.
    pub base: u64,
}

/// A bundle whose manifest signature checked out and whose entries all sit
/// where the signed manifest says.
pub struct BundleReader {
    file: File,
    path: PathBuf,
    base: u64,
    manifest: VerifiedManifest,
}

struct Entry {
    name: String,
    size: u64,
}

fn describe(path: &Path) -> String {
    path.display().to_string()
}

fn read_block(file: &File, path: &Path, len: u64, pos: u64, what: &str) -> Result<[u8; 512]> {
    if pos + BLOCK > len {
        return Err(Error::invalid(
            describe(path),
            format!("truncated: {what} at byte offset {pos} lies past the end of the file ({len} bytes)"),
        ));
    }
    let mut block = [0u8; 512];
    file.read_exact_at(&mut block, pos).at("reading", path)?;
    Ok(block)
}

/// Parses and checks one tar header: a regular file with a safe name and a
/// correct checksum. Anything else is named with its byte offset.
fn parse_header(path: &Path, block: &[u8; 512], pos: u64) -> Result<Entry> {
    let bad = |detail: String| {
        Error::invalid(
            describe(path),
            format!("entry at byte offset {pos}: {detail}"),
        )
    };
    if block.iter().all(|&b| b == 0) {
        return Err(bad(
            "end of archive where an entry was expected (truncated bundle?)".into(),
        ));
    }
    let header = tar::Header::from_byte_slice(block);
    let stored = header
        .cksum()
        .map_err(|_| bad("header checksum field is not a number".into()))?;
    let actual: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    if stored != actual {
        return Err(bad(
            "header checksum is wrong (damaged or not a tar header)".into(),
        ));
    }
    let name = String::from_utf8_lossy(&header.path_bytes()).into_owned();
    let kind = header.entry_type();
    if !kind.is_file() {
        let what = match kind {
            tar::EntryType::Symlink => "a symbolic link",
            tar::EntryType::Link => "a hard link",
            tar::EntryType::Directory => "a directory",
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => "a pax extended header",
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => "a GNU long-name entry",
            _ => "a special file",
        };
        return Err(bad(format!(
            "{name:?} is {what}; bundles hold regular files only"
        )));
    }
    if name.starts_with('/') || name.split('/').any(|c| c == ".." || c == ".") {
        return Err(bad(format!("unsafe entry name {name:?}")));
    }
    let size = header
        .size()
        .map_err(|_| bad("size field is not a number".into()))?;
    Ok(Entry { name, size })
}

/// Reads a whole small entry at `pos`, with a size cap.
fn read_small_entry(
    file: &File,
    path: &Path,
    len: u64,
    pos: u64,
    expect: &str,
    cap: u64,
) -> Result<(Vec<u8>, u64)> {
    let block = read_block(file, path, len, pos, &format!("the {expect} entry"))?;
    let entry = parse_header(path, &block, pos)?;
    if entry.name != expect {
        let err = format!(
            "entry at byte offset {pos} is {:?}; expected {expect}",
            entry.name
        );
        return Err(if expect == SIGNATURE_NAME {
            Error::untrusted(describe(path), format!("no signature: {err}"))
        } else {
            Error::invalid(describe(path), err)
        });
    }
    if entry.size > cap {
        return Err(Error::invalid(
            describe(path),
            format!("{expect} is {} bytes, over its {cap}-byte cap", entry.size),
        ));
    }
    let data_pos = pos + BLOCK;
    if data_pos + entry.size > len {
        return Err(Error::invalid(
            describe(path),
            format!("truncated inside {expect} (file is {len} bytes)"),
        ));
    }
    let mut data = vec![0u8; entry.size as usize];
    file.read_exact_at(&mut data, data_pos)
        .at("reading", path)?;
    Ok((data, data_pos + padded(entry.size)))
}

/// Opens the bundle file; a FIFO or device is refused at once, not read.
fn open_file(path: &Path) -> Result<(File, u64)> {
    let file = open_regular(path, "a bundle")?;
    let len = file.metadata().at("reading", path)?.len();
    Ok((file, len))
}

impl UncheckedBundle {
    pub fn open(path: &Path) -> Result<Self> {
        let (file, len) = open_file(path)?;
        let (manifest_bytes, next) =
            read_small_entry(&file, path, len, 0, MANIFEST_NAME, MANIFEST_MAX)?;
        let (signature, base) =
            match read_small_entry(&file, path, len, next, SIGNATURE_NAME, SIGNATURE_MAX) {
                Ok((sig, base)) => (Some(String::from_utf8_lossy(&sig).into_owned()), base),
                Err(_) => (None, next),
            };
        Ok(UncheckedBundle {
            manifest_bytes,
            signature,
            base,
        })
    }
}

impl BundleReader {
    /// Opens a bundle: signature first, then the manifest's rules, then every
    /// entry header against the manifest. Blob contents are not read here.
    pub fn open(path: &Path, trust: &TrustStore) -> Result<Self> {
        let (file, len) = open_file(path)?;
        let (manifest_bytes, next) =
            read_small_entry(&file, path, len, 0, MANIFEST_NAME, MANIFEST_MAX)?;
        let (sig, base) = read_small_entry(&file, path, len, next, SIGNATURE_NAME, SIGNATURE_MAX)?;
        let sig_text = String::from_utf8(sig)
            .map_err(|_| Error::untrusted(describe(path), "signature is not UTF-8"))?;
        let signer = trust.verify(
            &manifest_bytes,
            &sig_text,
            &format!("{}: manifest signature", describe(path)),
        )?;
        let manifest = Manifest::parse(&manifest_bytes)
            .map_err(|e| Error::invalid(describe(path), e.to_string()))?;
        let digest = Sha256Digest::of(&manifest_bytes);
        let reader = BundleReader {
            file,
            path: path.to_path_buf(),
            base,
            manifest: VerifiedManifest::new(manifest, digest, signer),
        };
        reader.check_entries(len)?;
        Ok(reader)
    }

    pub fn manifest(&self) -> &VerifiedManifest {
        &self.manifest
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_entries(&self, len: u64) -> Result<()> {
        let mut end = self.base;
        for blob in &self.manifest.blobs {
            let pos = self.base + blob.offset - BLOCK;
            let expect = blob_entry_name(&blob.digest, blob.encoding);
            let block = read_block(
                &self.file,
                &self.path,
                len,
                pos,
                &format!("blob {}", blob.digest),
            )?;
            let entry = parse_header(&self.path, &block, pos)?;
            if entry.name != expect {
                return Err(Error::invalid(
                    describe(&self.path),
                    format!("entry at byte offset {pos} is {:?}; the signed manifest puts {expect} there", entry.name),
                ));
            }
            if entry.size != blob.stored_size {
                return Err(Error::invalid(
                    describe(&self.path),
                    format!(
                        "entry {expect} at byte offset {pos} is {} bytes; the signed manifest declares {}",
                        entry.size, blob.stored_size
                    ),
                ));
            }
            end = self.base + blob.offset + padded(blob.stored_size);
        }
        self.check_trailer(end, len)
    }

    /// After the last listed entry only end-of-archive zeros may follow.
    fn check_trailer(&self, end: u64, len: u64) -> Result<()> {
        if end + 2 * BLOCK > len {
            return Err(Error::invalid(
                describe(&self.path),
                format!(
                    "truncated: the archive should continue past byte offset {len} to at least {}",
                    end + 2 * BLOCK
                ),
            ));
        }
        let block = read_block(&self.file, &self.path, len, end, "end of archive")?;
        if block.iter().any(|&b| b != 0) {
            let detail = match parse_header(&self.path, &block, end) {
                Ok(entry) => {
                    let listed = self
                        .manifest
                        .blobs
                        .iter()
                        .any(|b| blob_entry_name(&b.digest, b.encoding) == entry.name);
                    if listed || entry.name == MANIFEST_NAME || entry.name == SIGNATURE_NAME {
                        format!("duplicate entry {:?} at byte offset {end}", entry.name)
                    } else {
                        format!(
                            "entry {:?} at byte offset {end} is not listed in the signed manifest",
                            entry.name
                        )
                    }
                }
                Err(e) => e.to_string(),
            };
            return Err(Error::invalid(describe(&self.path), detail));
        }
        if len - end > TRAILER_MAX {
            return Err(Error::invalid(
                describe(&self.path),
                format!(
                    "{} bytes follow the end of the archive at byte offset {end}",
                    len - end
                ),
            ));
        }
        let mut rest = vec![0u8; (len - end) as usize];
        self.file
            .read_exact_at(&mut rest, end)
            .at("reading", &self.path)?;
        if let Some(i) = rest.iter().position(|&b| b != 0) {
            return Err(Error::invalid(
                describe(&self.path),
                format!(
                    "data after the end of the archive at byte offset {}",
                    end + i as u64
                ),
            ));
        }
        Ok(())
    }

    /// The blob's own bytes (decompressed if stored with zstd). Yields an
    /// error if a zstd blob expands past its declared size.
    pub fn blob_reader(&self, blob: &BlobEntry) -> Result<Box<dyn Read + Send + '_>> {
        let range = RangeReader {
            file: &self.file,
            pos: self.base + blob.offset,
            end: self.base + blob.offset + blob.stored_size,
        };
        Ok(match blob.encoding {
            Encoding::Raw => Box::new(range),
            Encoding::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(
                    io::BufReader::with_capacity(1 << 16, range),
                )
                .at("starting zstd decoder for", &self.path)?;
                decoder
                    .window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .at("configuring zstd decoder for", &self.path)?;
                Box::new(SizeLimit {
                    inner: decoder,
                    left: blob.size,
                    digest: blob.digest,
                })
            }
        })
    }
}

/// Reads `[pos, end)` of a file with positioned reads, so workers share one handle.
struct RangeReader<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "bundle file shrank while reading",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Fails once more than the declared number of bytes come out.
struct SizeLimit<R> {
    inner: R,
    left: u64,
    digest: Sha256Digest,
}

impl<R: Read> Read for SizeLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("zstd blob {} expands past its declared size", self.digest),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Copies with a large buffer, reporting progress per chunk.
pub fn copy_with_progress(
    mut from: impl Read,
    mut to: impl io::Write,
    mut on_chunk: impl FnMut(u64),
) -> io::Result<u64> {
    let mut buf = vec![0u8; IO_BUFFER];
    let mut total = 0;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        on_chunk(n as u64);
    }
}
