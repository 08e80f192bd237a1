//! `owui-builder bundle`: create and inspect bundle files.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::archive::{UncheckedBundle, MANIFEST_NAME, SIGNATURE_NAME};
use owui_bundle::create::{create_from_spec, CreateOptions};
use owui_bundle::error::IoContext;
use owui_bundle::have::HaveList;
use owui_bundle::manifest::{Encoding, Manifest};
use owui_bundle::progress::Progress;
use owui_bundle::spec::BundleSpec;
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;

use crate::keys::load_secret;
use crate::pull::lock::ref_lines;
use crate::pull::{pull_missing, PullOptions, Pulled};

#[derive(Debug, Serialize)]
pub struct Created {
    pub file: PathBuf,
    pub bundle: Sha256Digest,
    pub channel: String,
    pub sequence: u64,
    pub blobs: usize,
    pub blobs_compressed: usize,
    pub blobs_omitted: usize,
    pub content_bytes: u64,
    pub file_bytes: u64,
    /// The `[[oci]]` images pulled from registries (or found in the cache).
    pub pulled: Vec<Pulled>,
}

/// SOURCE_DATE_EPOCH when set (reproducible bundles), else now.
fn creation_time() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v.trim().parse().map_err(|_| {
            Error::invalid(
                "SOURCE_DATE_EPOCH",
                format!("{v:?} is not a number of seconds"),
            )
        }),
        Err(_) => Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())),
    }
}

pub fn run_create(
    spec: &Path,
    key: &Path,
    out: &Path,
    have: Option<&Path>,
    pulls: &PullOptions,
    progress: &dyn Progress,
) -> Result<Created> {
    let key = load_secret(key)?;
    let have = have.map(HaveList::load).transpose()?;
    let mut bundle_spec = BundleSpec::load(spec)?;
    let text = fs::read_to_string(spec).at("reading bundle spec", spec)?;
    let lines = ref_lines(spec, &text)?;
    let locate = |i: usize| match lines.get(i).copied().flatten() {
        Some(line) => format!("{} line {line}", spec.display()),
        None => spec.display().to_string(),
    };
    // Kept until packed: the pulled images' layouts live as long.
    let pulled = pull_missing(&mut bundle_spec.oci, pulls, locate)?;
    let report = create_from_spec(
        &bundle_spec,
        &CreateOptions {
            spec,
            key: &key,
            out,
            have: have.as_ref(),
            created: creation_time()?,
            progress,
        },
    )?;
    let m = &report.manifest;
    Ok(Created {
        file: out.to_path_buf(),
        bundle: report.manifest_digest,
        channel: m.channel.clone(),
        sequence: m.sequence,
        blobs: m.blobs.len(),
        blobs_compressed: m
            .blobs
            .iter()
            .filter(|b| b.encoding == Encoding::Zstd)
            .count(),
        blobs_omitted: report.omitted,
        content_bytes: m.total_size(),
        file_bytes: report.file_size,
        pulled: pulled.images,
    })
}

#[derive(Debug, Serialize)]
pub struct Inspected {
    pub bundle: Sha256Digest,
    pub signed: bool,
    /// Not checked against any trust store: `owui-agent bundle verify` does that.
    pub signature_trusted_comment: Option<String>,
    pub manifest: Manifest,
}

pub fn run_inspect(file: &Path, extract: Option<&Path>) -> Result<Inspected> {
    let b = UncheckedBundle::open(file)?;
    let manifest = Manifest::parse(&b.manifest_bytes)
        .map_err(|e| Error::invalid(file.display().to_string(), e.to_string()))?;
    if let Some(dir) = extract {
        fs::create_dir_all(dir).at("creating", dir)?;
        fs::write(dir.join(MANIFEST_NAME), &b.manifest_bytes)
            .at("writing", &dir.join(MANIFEST_NAME))?;
        if let Some(sig) = &b.signature {
            fs::write(dir.join(SIGNATURE_NAME), sig).at("writing", &dir.join(SIGNATURE_NAME))?;
        }
    }
    let trusted_comment = b.signature.as_deref().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("trusted comment: "))
            .map(str::to_string)
    });
    Ok(Inspected {
        bundle: Sha256Digest::of(&b.manifest_bytes),
        signed: b.signature.is_some(),
        signature_trusted_comment: trusted_comment,
        manifest,
    })
}

pub fn print_created(c: &Created) {
    println!(
        "{}: bundle {} channel {} sequence {}: {} blobs ({} compressed, {} left out as held by the site), {} bytes",
        c.file.display(), c.bundle, c.channel, c.sequence, c.blobs, c.blobs_compressed, c.blobs_omitted, c.file_bytes
    )
}

pub fn print_inspected(i: &Inspected) {
    let m = &i.manifest;
    let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
    println!("bundle    {}", i.bundle);
    println!("channel   {} (sequence {})", m.channel, m.sequence);
    println!("roles     {}", roles.join(", "));
    println!(
        "signed    {}",
        if i.signed {
            "yes (not checked here)"
        } else {
            "NO SIGNATURE"
        }
    );
    println!("blobs     {} ({} bytes)", m.blobs.len(), m.total_size());
    for o in &m.ollama {
        println!("ollama    {} ({} blobs)", o.name, o.blobs.len() + 1);
    }
    for h in &m.huggingface {
        println!(
            "hf        {}@{} ({} files)",
            h.repo,
            h.revision,
            h.files.len()
        );
    }
    for o in &m.oci {
        println!("oci       {} {}", o.reference, o.manifest);
    }
    for r in &m.remove {
        println!("remove    {r}");
    }
}
