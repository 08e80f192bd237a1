//! Packing a bundle: items from the spec, blobs deduplicated and (for a
//! delta) filtered against what the site holds, each stored raw or zstd,
//! whichever is smaller, then manifest, signature and blobs written into one
//! tar file that appears only when complete.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::archive::{copy_with_progress, MANIFEST_NAME, SIGNATURE_NAME};
use crate::digest::{HashingWriter, Sha256Digest};
use crate::error::{Error, IoContext, Result};
use crate::have::HaveList;
use crate::items::{BlobSource, PackedBlob};
use crate::manifest::{blob_entry_name, padded, BlobEntry, Encoding, Manifest, BLOCK, FORMAT};
use crate::progress::Progress;
use crate::sign::SecretKey;
use crate::spec::BundleSpec;
use crate::{huggingface, oci, ollama, parallel};

const ZSTD_LEVEL: i32 = 3;
/// Compression is tried on this much of a blob first; if it saves under 2 %
/// the blob is stored raw without compressing the rest (model weights).
const PROBE: usize = 4 << 20;

pub struct CreateOptions<'a> {
    pub spec: &'a Path,
    pub key: &'a SecretKey,
    pub out: &'a Path,
    pub have: Option<&'a HaveList>,
    /// Seconds since the epoch recorded in the manifest and tar headers.
    pub created: u64,
    pub progress: &'a dyn Progress,
}

#[derive(Debug)]
pub struct CreateReport {
    pub manifest: Manifest,
    pub manifest_digest: Sha256Digest,
    /// Blobs left out because the site already has them.
    pub omitted: usize,
    pub file_size: u64,
}

/// A blob with its storage decided.
struct Prepared {
    blob: PackedBlob,
    encoding: Encoding,
    stored_size: u64,
    /// The compressed bytes, when zstd won.
    compressed: Option<PathBuf>,
}

fn open_source(source: &BlobSource) -> Result<Box<dyn Read + Send + '_>> {
    Ok(match source {
        BlobSource::File(p) => Box::new(File::open(p).at("opening", p)?),
        BlobSource::Bytes(b) => Box::new(Cursor::new(b.as_slice())),
    })
}

fn source_name(blob: &PackedBlob) -> String {
    match &blob.source {
        BlobSource::File(p) => p.display().to_string(),
        BlobSource::Bytes(_) => format!("generated blob {}", blob.digest),
    }
}

fn changed(blob: &PackedBlob, digest: Sha256Digest, size: u64) -> Error {
    Error::invalid(
        source_name(blob),
        format!(
            "changed while packing: now {size} bytes hashing to {digest}, was {} bytes {}",
            blob.size, blob.digest
        ),
    )
}

/// Decides raw or zstd for one blob, compressing into `scratch` when it pays.
fn prepare(blob: PackedBlob, scratch: &Path) -> Result<Prepared> {
    let raw = |blob| Prepared {
        blob,
        encoding: Encoding::Raw,
        stored_size: 0,
        compressed: None,
    };
    let mut probe = Vec::with_capacity(PROBE.min(blob.size as usize));
    open_source(&blob.source)?
        .take(PROBE as u64)
        .read_to_end(&mut probe)
        .at("reading", Path::new(&source_name(&blob)))?;
    let probe_out = zstd::bulk::compress(&probe, ZSTD_LEVEL)
        .at("compressing", Path::new(&source_name(&blob)))?;
    if probe.is_empty() || probe_out.len() as f64 >= probe.len() as f64 * 0.98 {
        return Ok(raw(blob).with_stored_size());
    }
    let tmp = scratch.join(format!("{}.zst", blob.digest.hex()));
    let file = File::create(&tmp).at("creating", &tmp)?;
    let mut encoder = zstd::stream::write::Encoder::new(BufWriter::new(file), ZSTD_LEVEL)
        .at("compressing into", &tmp)?;
    let mut hashing = HashingWriter::new(&mut encoder);
    io::copy(&mut open_source(&blob.source)?, &mut hashing).at("compressing", &tmp)?;
    let (_, digest, size) = hashing.finish();
    if digest != blob.digest || size != blob.size {
        return Err(changed(&blob, digest, size));
    }
    encoder
        .finish()
        .and_then(|mut w| w.flush())
        .at("compressing into", &tmp)?;
    let compressed_size = fs::metadata(&tmp).at("reading", &tmp)?.len();
    if compressed_size >= blob.size {
        fs::remove_file(&tmp).at("removing", &tmp)?;
        return Ok(raw(blob).with_stored_size());
    }
    Ok(Prepared {
        blob,
        encoding: Encoding::Zstd,
        stored_size: compressed_size,
        compressed: Some(tmp),
    })
}

impl Prepared {
    fn with_stored_size(mut self) -> Self {
        self.stored_size = self.blob.size;
        self
    }
}

/// Collects every item's blobs from the spec, deduplicated by digest, in a
/// stable order (so the same inputs give the same bundle).
fn pack_items(spec: &BundleSpec, scratch: &Path) -> Result<(Manifest, Vec<PackedBlob>)> {
    let mut blobs: BTreeMap<Sha256Digest, PackedBlob> = BTreeMap::new();
    let mut manifest = Manifest {
        format: FORMAT.to_string(),
        channel: spec.channel.clone(),
        sequence: spec.sequence,
        roles: spec.roles.clone(),
        created: 0,
        blobs: Vec::new(),
        ollama: Vec::new(),
        huggingface: Vec::new(),
        oci: Vec::new(),
        remove: spec.removals()?,
    };
    let mut add = |packed: Vec<PackedBlob>| {
        for b in packed {
            blobs.entry(b.digest).or_insert(b);
        }
    };
    for m in &spec.ollama {
        let (item, packed) = ollama::pack(m)?;
        manifest.ollama.push(item);
        add(packed);
    }
    for h in &spec.huggingface {
        let (item, packed) = huggingface::pack(h)?;
        manifest.huggingface.push(item);
        add(packed);
    }
    for (i, o) in spec.oci.iter().enumerate() {
        let dir = scratch.join(format!("oci-{i}"));
        fs::create_dir_all(&dir).at("creating", &dir)?;
        let (item, packed) = oci::pack(o, &dir)?;
        manifest.oci.push(item);
        add(packed);
    }
    Ok((manifest, blobs.into_values().collect()))
}

fn tar_header(name: &str, size: u64, mtime: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).at("naming tar entry", Path::new(name))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn write_entry_header(
    out: &mut impl Write,
    name: &str,
    size: u64,
    mtime: u64,
    path: &Path,
) -> Result<()> {
    out.write_all(tar_header(name, size, mtime)?.as_bytes())
        .at("writing", path)
}

fn write_padding(out: &mut impl Write, size: u64, path: &Path) -> Result<()> {
    let pad = (padded(size) - size) as usize;
    out.write_all(&[0u8; BLOCK as usize][..pad])
        .at("writing", path)
}

/// Packs a bundle from a spec already loaded (and, for `[[oci]]` entries
/// without a source, pulled by the builder); `opts.spec` is only named in
/// errors.
pub fn create_from_spec(spec: &BundleSpec, opts: &CreateOptions) -> Result<CreateReport> {
    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let scratch = tempfile::Builder::new()
        .prefix(".owui-pack-")
        .tempdir_in(&out_dir)
        .at("creating a scratch directory in", &out_dir)?;
    let (mut manifest, all_blobs) = pack_items(spec, scratch.path())?;
    manifest.created = opts.created;

    let total = all_blobs.len();
    let wanted: Vec<PackedBlob> = all_blobs
        .into_iter()
        .filter(|b| opts.have.is_none_or(|h| !h.digests.contains(&b.digest)))
        .collect();
    let omitted = total - wanted.len();

    opts.progress
        .stage("compress", wanted.iter().map(|b| b.size).sum());
    let slots: Vec<Mutex<Option<PackedBlob>>> =
        wanted.into_iter().map(|b| Mutex::new(Some(b))).collect();
    let results: Vec<Mutex<Option<Prepared>>> = slots.iter().map(|_| Mutex::new(None)).collect();
    let indices: Vec<usize> = (0..slots.len()).collect();
    parallel::for_each(&indices, |&i| {
        let blob = slots[i]
            .lock()
            .map_err(|_| Error::invalid("packing", "a worker panicked"))?
            .take()
            .ok_or_else(|| Error::invalid("packing", "blob taken twice"))?;
        let size = blob.size;
        let prepared = prepare(blob, scratch.path())?;
        opts.progress.advance(size);
        *results[i]
            .lock()
            .map_err(|_| Error::invalid("packing", "a worker panicked"))? = Some(prepared);
        Ok(())
    })?;
    opts.progress.finish();
    let prepared: Vec<Prepared> = results
        .into_iter()
        .filter_map(|m| m.into_inner().ok().flatten())
        .collect();

    let mut offset = BLOCK;
    for p in &prepared {
        manifest.blobs.push(BlobEntry {
            digest: p.blob.digest,
            size: p.blob.size,
            encoding: p.encoding,
            stored_size: p.stored_size,
            offset,
        });
        offset += padded(p.stored_size) + BLOCK;
    }
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::internal("serialising the manifest", e.to_string()))?;
    let manifest_digest = Sha256Digest::of(&manifest_bytes);
    let signature = opts
        .key
        .sign(&manifest_bytes, &manifest.trusted_comment(&manifest_digest));

    let tmp = tempfile::Builder::new()
        .prefix(".owui-bundle-")
        .tempfile_in(&out_dir)
        .at("creating a temporary file in", &out_dir)?;
    let tmp_path = tmp.path().to_path_buf();
    let mut out = BufWriter::with_capacity(1 << 20, tmp.as_file());
    let mtime = opts.created;
    for (name, data) in [
        (MANIFEST_NAME, manifest_bytes.as_slice()),
        (SIGNATURE_NAME, signature.as_bytes()),
    ] {
        write_entry_header(&mut out, name, data.len() as u64, mtime, &tmp_path)?;
        out.write_all(data).at("writing", &tmp_path)?;
        write_padding(&mut out, data.len() as u64, &tmp_path)?;
    }
    opts.progress
        .stage("write", prepared.iter().map(|p| p.stored_size).sum());
    for p in &prepared {
        write_entry_header(
            &mut out,
            &blob_entry_name(&p.blob.digest, p.encoding),
            p.stored_size,
            mtime,
            &tmp_path,
        )?;
        match &p.compressed {
            Some(zst) => {
                let n = copy_with_progress(File::open(zst).at("opening", zst)?, &mut out, |n| {
                    opts.progress.advance(n)
                })
                .at("writing", &tmp_path)?;
                if n != p.stored_size {
                    return Err(Error::invalid(
                        zst.display().to_string(),
                        "compressed file changed size",
                    ));
                }
            }
            None => {
                // Hash raw sources again as they are copied: a file changed since
                // it was hashed must not go out under its old digest.
                let mut hashing = HashingWriter::new(&mut out);
                copy_with_progress(open_source(&p.blob.source)?, &mut hashing, |n| {
                    opts.progress.advance(n)
                })
                .at("writing", &tmp_path)?;
                let (_, digest, size) = hashing.finish();
                if digest != p.blob.digest || size != p.blob.size {
                    return Err(changed(&p.blob, digest, size));
                }
            }
        }
        write_padding(&mut out, p.stored_size, &tmp_path)?;
    }
    out.write_all(&[0u8; 2 * BLOCK as usize])
        .at("writing", &tmp_path)?;
    out.flush().at("writing", &tmp_path)?;
    drop(out);
    opts.progress.finish();
    tmp.as_file().sync_all().at("syncing", &tmp_path)?;
    let file_size = tmp.as_file().metadata().at("reading", &tmp_path)?.len();
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp_path, fs::Permissions::from_mode(0o644))
            .at("setting mode of", &tmp_path)?;
    }
    tmp.persist(opts.out)
        .map_err(|e| e.error)
        .at("renaming into", opts.out)?;
    crate::fsutil::fsync_dir(&out_dir)?;
    Ok(CreateReport {
        manifest,
        manifest_digest,
        omitted,
        file_size,
    })
}
