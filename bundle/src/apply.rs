//! Applying a verified bundle on a node, in the order DESIGN.md sets:
//! scope and sequence, free space, blobs streamed into the content store
//! (hashed as written, each byte of the bundle read once), a new generation
//! built beside the current one, then one atomic switch.
//!
//! A crash anywhere leaves the old generation or the new one; blobs already
//! committed to the store are kept, so a re-run resumes without copying them
//! again. A bad blob found part-way aborts the run and removes the blobs
//! that run had added, so a rejected bundle leaves the disk as it was.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::archive::{copy_with_progress, BundleReader};
use crate::crash;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::relative_path;
use crate::generation::{AppliedBundle, ChannelState, GenerationState, Generations};
use crate::items::{Owner, Removal};
use crate::manifest::{BlobEntry, VerifiedManifest};
use crate::oci::{self, PodmanStore};
use crate::ollama::{self, OllamaName};
use crate::progress::Progress;
use crate::role::Role;
use crate::store::ContentStore;
use crate::{huggingface, parallel};

/// Room kept free beyond the blobs themselves (directories, manifests, state).
const SPACE_MARGIN: u64 = 1 << 20;
const SPACE_PER_BLOB: u64 = 8192;

/// Where a node keeps and exposes bundle content; every path already under `--root`.
#[derive(Debug, Clone)]
pub struct Node {
    pub role: Role,
    /// The content store directory.
    pub content_dir: PathBuf,
    /// The generations directory.
    pub bundles_dir: PathBuf,
    /// Ollama's models directory (OLLAMA_MODELS): made a symlink into `current`.
    pub ollama_dir: PathBuf,
    /// The Hugging Face hub cache (HF_HUB_CACHE): made a symlink into `current`.
    pub huggingface_dir: PathBuf,
    /// Podman's image store; OCI images need one.
    pub podman: Option<PodmanStore>,
    pub owner: Option<Owner>,
    /// The `applied_at` time recorded; None is now. The image builder fixes
    /// it (SOURCE_DATE_EPOCH) so a pre-filled image is reproducible.
    pub applied_at: Option<u64>,
}

/// What the node's policy says of a verified bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Newer than anything applied on its channel.
    New,
    /// The exact bundle the channel is at.
    AlreadyApplied,
    /// Older or equal sequence, accepted only because downgrade was forced.
    ForcedDowngrade,
}

/// Checks role scope and channel sequence against the node's current state.
pub fn check_policy(
    manifest: &VerifiedManifest,
    role: Role,
    current: Option<&GenerationState>,
    allow_downgrade: bool,
) -> Result<Verdict> {
    if !manifest.roles.contains(&role) {
        let roles: Vec<&str> = manifest.roles.iter().map(|r| r.as_str()).collect();
        return Err(Error::refused(
            format!("bundle {}", manifest.digest()),
            format!(
                "is for roles [{}]; this node's role is {role}",
                roles.join(", ")
            ),
        ));
    }
    let Some(at) = current.and_then(|c| c.channels.get(&manifest.channel)) else {
        return Ok(Verdict::New);
    };
    if at.bundle == manifest.digest() {
        return Ok(Verdict::AlreadyApplied);
    }
    if manifest.sequence > at.sequence {
        return Ok(Verdict::New);
    }
    if allow_downgrade {
        tracing::warn!(
            channel = %manifest.channel,
            from = at.sequence,
            to = manifest.sequence,
            bundle = %manifest.digest(),
            "downgrade forced with --allow-downgrade"
        );
        return Ok(Verdict::ForcedDowngrade);
    }
    Err(Error::refused(
        format!("bundle {}", manifest.digest()),
        format!(
            "channel {:?} sequence {} is not newer than {} already applied (replayed or older bundle; --allow-downgrade forces it)",
            manifest.channel, manifest.sequence, at.sequence
        ),
    ))
}

/// Digests the items need that neither the bundle nor the store holds.
pub fn missing_blobs(manifest: &VerifiedManifest, store: &ContentStore) -> Vec<Sha256Digest> {
    let carried: BTreeSet<Sha256Digest> = manifest.blobs.iter().map(|b| b.digest).collect();
    manifest
        .referenced()
        .into_iter()
        .filter(|d| !carried.contains(d) && !store.contains(d))
        .collect()
}

fn require_complete(manifest: &VerifiedManifest, store: &ContentStore) -> Result<()> {
    match missing_blobs(manifest, store).first() {
        None => Ok(()),
        Some(d) => Err(Error::refused(
            format!("bundle {}", manifest.digest()),
            format!("is a delta that needs blob {d}, which this node does not hold (export `bundle have` from this node and rebuild it)"),
        )),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    pub bundle: Sha256Digest,
    pub channel: String,
    pub sequence: u64,
    pub verdict: Verdict,
    pub generation: u64,
    pub blobs_written: usize,
    pub bytes_written: u64,
    pub blobs_reused: usize,
}

fn available_space(path: &Path) -> Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| Error::Io {
        action: "checking free space on",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(st.blocks_available() as u64 * st.fragment_size() as u64)
}

/// The symlink that exposes a tree of `current` at a configured path.
struct Exposure {
    link: PathBuf,
    target: PathBuf,
}

fn exposures(node: &Node, generations: &Generations) -> Vec<Exposure> {
    let current = generations.current_link();
    [
        (&node.ollama_dir, "ollama"),
        (&node.huggingface_dir, "huggingface"),
    ]
    .into_iter()
    .map(|(link, sub)| {
        let parent = link.parent().unwrap_or(Path::new("/"));
        Exposure {
            link: link.clone(),
            target: relative_path(parent, &current.join(sub)),
        }
    })
    .collect()
}

/// Refuses to take over a path that holds something else (checked before
/// any change is made).
fn check_exposures(node: &Node, generations: &Generations) -> Result<()> {
    for e in exposures(node, generations) {
        match fs::read_link(&e.link) {
            Ok(t) if t == e.target => {}
            Err(err) if err.kind() == ErrorKind::NotFound && !e.link.exists() => {}
            _ => {
                return Err(Error::refused(
                    e.link.display().to_string(),
                    format!(
                        "exists and is not owui-agent's link to {}; move it aside (its models can be packed into a bundle)",
                        e.target.display()
                    ),
                ))
            }
        }
    }
    Ok(())
}

fn ensure_exposures(node: &Node, generations: &Generations) -> Result<()> {
    for e in exposures(node, generations) {
        if fs::read_link(&e.link).is_ok_and(|t| t == e.target) {
            continue;
        }
        if let Some(parent) = e.link.parent() {
            fs::create_dir_all(parent).at("creating", parent)?;
        }
        symlink(&e.target, &e.link).at("creating link", &e.link)?;
    }
    Ok(())
}

fn finish_oci_removals(state: &GenerationState, node: &Node) -> Result<()> {
    if state.oci_removals.is_empty() {
        return Ok(());
    }
    let store = node.podman.as_ref().ok_or_else(|| {
        Error::invalid(
            "agent config",
            "the bundle removes OCI images but no podman store is configured",
        )
    })?;
    for reference in &state.oci_removals {
        // A ref the new generation still carries (re-added) stays.
        if !state.oci.iter().any(|o| &o.reference == reference) {
            oci::remove(reference, store)?;
        }
        crash::point("oci-removed");
    }
    Ok(())
}

fn same_ollama_model(a: &str, b: &str) -> bool {
    match (OllamaName::parse(a), OllamaName::parse(b)) {
        (Ok(x), Ok(y)) => x.manifest_rel_path() == y.manifest_rel_path(),
        _ => a == b,
    }
}

/// The next generation's contents: the current one, less removals, with the
/// bundle's items added (replacing any of the same name).
fn next_state(
    current: Option<&GenerationState>,
    manifest: &VerifiedManifest,
    applied: AppliedBundle,
) -> GenerationState {
    let mut next = current.cloned().unwrap_or_default();
    next.oci_removals.clear();
    for r in &manifest.remove {
        match r {
            Removal::Ollama(name) => next.ollama.retain(|m| !same_ollama_model(&m.name, name)),
            Removal::Huggingface(repo) => next.huggingface.retain(|h| &h.repo != repo),
            Removal::Oci(reference) => {
                if next.oci.iter().any(|o| &o.reference == reference) {
                    next.oci_removals.push(reference.clone());
                }
                next.oci.retain(|o| &o.reference != reference);
            }
        }
    }
    for m in &manifest.ollama {
        next.ollama.retain(|x| !same_ollama_model(&x.name, &m.name));
        next.ollama.push(m.clone());
    }
    for h in &manifest.huggingface {
        next.huggingface.retain(|x| x.repo != h.repo);
        next.huggingface.push(h.clone());
    }
    for o in &manifest.oci {
        next.oci.retain(|x| x.reference != o.reference);
        next.oci.push(o.clone());
    }
    next.channels.insert(
        manifest.channel.clone(),
        ChannelState {
            sequence: manifest.sequence,
            bundle: manifest.digest(),
        },
    );
    next.applied = Some(applied);
    next
}

/// Streams the blobs the store lacks into it, in parallel. On failure the
/// blobs this call added are removed again.
fn write_blobs(
    reader: &BundleReader,
    store: &ContentStore,
    needed: &[&BlobEntry],
    progress: &dyn Progress,
) -> Result<()> {
    let added = Mutex::new(Vec::new());
    progress.stage(
        "apply",
        needed.iter().map(|b| b.size).fold(0, u64::saturating_add),
    );
    let result = parallel::for_each(needed, |blob| {
        let mut w = store.writer(blob.digest, blob.size)?;
        copy_with_progress(reader.blob_reader(blob)?, &mut w, |n| progress.advance(n)).map_err(
            |e| {
                Error::untrusted(
                    format!("{}: blob {}", reader.path().display(), blob.digest),
                    e.to_string(),
                )
            },
        )?;
        w.commit().map_err(|e| {
            Error::untrusted(
                format!("{}: blob {}", reader.path().display(), blob.digest),
                e.to_string(),
            )
        })?;
        if let Ok(mut a) = added.lock() {
            a.push(blob.digest);
        }
        crash::point("blob-committed");
        Ok(())
    });
    progress.finish();
    if result.is_err() {
        for d in added.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let _ = store.remove(&d);
        }
        let _ = store.clear_partials();
    }
    result
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub fn apply(
    reader: &BundleReader,
    node: &Node,
    allow_downgrade: bool,
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let manifest = reader.manifest();
    let store = ContentStore::open(&node.content_dir)?;
    let generations = Generations::open(&node.bundles_dir)?;
    let _lock = generations.lock()?;
    let current = generations.current()?;
    let verdict = check_policy(manifest, node.role, current.as_ref(), allow_downgrade)?;
    let report = |generation, written: &[&BlobEntry]| ApplyReport {
        bundle: manifest.digest(),
        channel: manifest.channel.clone(),
        sequence: manifest.sequence,
        verdict,
        generation,
        blobs_written: written.len(),
        bytes_written: written.iter().fold(0u64, |n, b| n.saturating_add(b.size)),
        blobs_reused: manifest.blobs.len() - written.len(),
    };
    check_exposures(node, &generations)?;
    if verdict == Verdict::AlreadyApplied {
        // Finish what a crash after the switch may have left undone.
        let state = current.unwrap_or_default();
        ensure_exposures(node, &generations)?;
        finish_oci_removals(&state, node)?;
        return Ok(report(state.generation, &[]));
    }
    require_complete(manifest, &store)?;
    if !manifest.oci.is_empty() && node.podman.is_none() {
        return Err(Error::invalid(
            "agent config",
            "the bundle carries OCI images but no podman store is configured",
        ));
    }

    let needed: Vec<&BlobEntry> = manifest
        .blobs
        .iter()
        .filter(|b| !store.contains(&b.digest))
        .collect();
    let need = needed.iter().fold(SPACE_MARGIN, |n, b| {
        n.saturating_add(b.size).saturating_add(SPACE_PER_BLOB)
    });
    let available = available_space(&node.content_dir)?;
    if need > available {
        return Err(Error::NoSpace {
            path: node.content_dir.clone(),
            needed: need,
            available,
        });
    }

    generations.recover()?;
    store.clear_partials()?;
    write_blobs(reader, &store, &needed, progress)?;

    let staged = generations.stage()?;
    let applied = AppliedBundle {
        channel: manifest.channel.clone(),
        sequence: manifest.sequence,
        bundle: manifest.digest(),
        signed_by: manifest.signer().key_id.to_string(),
        applied_at: node.applied_at.unwrap_or_else(now),
        downgrade_forced: verdict == Verdict::ForcedDowngrade,
    };
    let mut next = next_state(current.as_ref(), manifest, applied);
    next.generation = staged.number;

    ollama::materialise(&store, &next.ollama, &staged.dir.join("ollama"), node.owner)?;
    crash::point("ollama-written");
    huggingface::materialise(
        &store,
        &next.huggingface,
        &staged.dir.join("huggingface"),
        node.owner,
    )?;
    crash::point("huggingface-written");
    let layout = staged.dir.join("oci");
    oci::write_layout(&store, &next.oci, &layout)?;
    crash::point("oci-layout-written");
    if let Some(podman) = &node.podman {
        if !manifest.oci.is_empty() {
            oci::import(&layout, &manifest.oci, podman)?;
            crash::point("oci-imported");
        }
    }
    let generation = staged.number;
    generations.commit(staged, &next)?;
    ensure_exposures(node, &generations)?;
    finish_oci_removals(&next, node)?;
    Ok(report(generation, &needed))
}

/// What `bundle gc` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub generations_removed: Vec<u64>,
    pub blobs_removed: usize,
    pub bytes_freed: u64,
}

/// Keeps the current generation and the `keep - 1` newest others; removes
/// the rest, then every blob no kept generation uses.
pub fn gc(node: &Node, keep: usize) -> Result<GcReport> {
    let store = ContentStore::open(&node.content_dir)?;
    let generations = Generations::open(&node.bundles_dir)?;
    let _lock = generations.lock()?;
    generations.recover()?;
    store.clear_partials()?;
    let current = generations.current()?.map(|s| s.generation);
    let mut report = GcReport::default();
    let mut others: Vec<u64> = generations
        .numbers()?
        .into_iter()
        .filter(|n| Some(*n) != current)
        .collect();
    let keep_others = keep.saturating_sub(usize::from(current.is_some()));
    let drop_count = others.len().saturating_sub(keep_others);
    for n in others.drain(..drop_count) {
        generations.remove(n)?;
        report.generations_removed.push(n);
    }
    let referenced: BTreeSet<Sha256Digest> = generations
        .all()?
        .iter()
        .flat_map(|s| s.referenced())
        .collect();
    for d in store.digests()? {
        if !referenced.contains(&d) {
            report.bytes_freed += store.size_of(&d)?;
            store.remove(&d)?;
            report.blobs_removed += 1;
        }
    }
    Ok(report)
}

/// A problem `bundle check` found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub what: String,
    pub detail: String,
}

/// Re-hashes every blob in the store and checks that every generation's
/// blobs are present.
pub fn check(node: &Node, progress: &dyn Progress) -> Result<Vec<Problem>> {
    let store = ContentStore::open(&node.content_dir)?;
    let generations = Generations::open(&node.bundles_dir)?;
    let digests = store.digests()?;
    let problems = Mutex::new(Vec::new());
    let mut total = 0;
    for d in &digests {
        total += store.size_of(d)?;
    }
    progress.stage("check", total);
    parallel::for_each(&digests, |d| {
        let path = store.blob_path(d);
        let file = fs::File::open(&path).at("opening", &path)?;
        let mut sink = crate::digest::HashingWriter::new(std::io::sink());
        copy_with_progress(file, &mut sink, |n| progress.advance(n)).at("reading", &path)?;
        let (_, actual, _) = sink.finish();
        if actual != *d {
            if let Ok(mut p) = problems.lock() {
                p.push(Problem {
                    what: path.display().to_string(),
                    detail: format!("content hashes to {actual}"),
                });
            }
        }
        Ok(())
    })?;
    progress.finish();
    let mut problems = problems.into_inner().unwrap_or_else(|p| p.into_inner());
    for state in generations.all()? {
        for d in state.referenced() {
            if !store.contains(&d) {
                problems.push(Problem {
                    what: format!("generation {}", state.generation),
                    detail: format!("uses blob {d}, which the store does not hold"),
                });
            }
        }
    }
    Ok(problems)
}
