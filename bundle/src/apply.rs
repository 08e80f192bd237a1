//! Applying a verified bundle on a node, in the order DESIGN.md sets:
//! scope, the channel's sequence floor and item ownership, free space on
//! every filesystem written to, blobs streamed into the content store
//! (hashed as written, each byte of the bundle read once), a new generation
//! built beside the current one, the floor raised, then one atomic switch.
//! Every check that can refuse a bundle runs before anything is written.
//!
//! A crash anywhere leaves the old generation or the new one; blobs already
//! committed to the store are kept, so a re-run resumes without copying them
//! again. A bad blob found part-way aborts the run and removes the blobs
//! that run had added, so a rejected bundle leaves the disk as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::archive::{copy_with_progress, BundleReader};
use crate::channels::ChannelFloors;
use crate::crash;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::relative_path;
use crate::generation::{AppliedBundle, ChannelState, GenerationState, Generations, Takeover};
use crate::items::{self, Installed, ItemKey, Owner, Removal};
use crate::manifest::{BlobEntry, VerifiedManifest};
use crate::oci::{self, PodmanStore};
use crate::ollama;
use crate::progress::Progress;
use crate::role::Role;
use crate::space::{check_space, device_of, Need};
use crate::store::ContentStore;
use crate::verify::check_item_blobs;
use crate::{huggingface, parallel};

pub use crate::upkeep::{check, gc, GcReport, Problem};

/// Room kept free beyond the blobs themselves (directories, manifests, state).
const SPACE_MARGIN: u64 = 1 << 20;
const SPACE_PER_BLOB: u64 = 8192;
/// Inodes kept free beyond the estimate (directories, temporary files, state).
const INODE_MARGIN: u64 = 32;

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
    /// llama-server's `--models-dir` (the Ollama models as `<name>.gguf`),
    /// made a symlink into `current`; None: not exposed.
    pub gguf_dir: Option<PathBuf>,
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
    /// Newer than its channel's floor.
    New,
    /// The exact bundle its channel's floor names, and the current
    /// generation holds every item it installs.
    AlreadyApplied,
    /// The exact bundle its channel's floor names, but the node no longer
    /// holds all it installed (an interrupted apply, a forced change since):
    /// applied again.
    Reapply,
    /// Older or equal sequence, accepted only because downgrade was forced.
    ForcedDowngrade,
}

/// The unsafe paths an operator may force; each is logged and recorded in
/// the generation it produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forces {
    /// Accept a sequence not newer than the channel's floor.
    pub allow_downgrade: bool,
    /// Let the bundle replace or remove items another channel installed.
    pub allow_takeover: bool,
}

/// The policy's answer: the verdict and the items taken from other channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub takeovers: Vec<Takeover>,
}

/// Checks role scope, the channel's sequence floor and item ownership
/// against the node's state. Writes nothing.
pub fn check_policy(
    manifest: &VerifiedManifest,
    role: Role,
    floors: &ChannelFloors,
    current: Option<&GenerationState>,
    forces: Forces,
) -> Result<Decision> {
    let what = || format!("bundle {}", manifest.digest());
    if !manifest.roles.contains(&role) {
        let roles: Vec<&str> = manifest.roles.iter().map(|r| r.as_str()).collect();
        return Err(Error::refused(
            what(),
            format!(
                "is for roles [{}]; this node's role is {role}",
                roles.join(", ")
            ),
        ));
    }
    let verdict = match floors.get(&manifest.channel) {
        None => Verdict::New,
        Some(floor) if floor.bundle == manifest.digest() => {
            if holds(current, manifest)? {
                return Ok(Decision {
                    verdict: Verdict::AlreadyApplied,
                    takeovers: Vec::new(),
                });
            }
            Verdict::Reapply
        }
        Some(floor) if manifest.sequence > floor.sequence => Verdict::New,
        Some(_) if forces.allow_downgrade => Verdict::ForcedDowngrade,
        Some(floor) => {
            return Err(Error::refused(
                what(),
                format!(
                    "channel {:?} sequence {} is not newer than {} already applied (replayed or older bundle; --allow-downgrade forces it)",
                    manifest.channel, manifest.sequence, floor.sequence
                ),
            ))
        }
    };
    let takeovers = takeovers(manifest, current)?;
    if let Some(t) = takeovers.first().filter(|_| !forces.allow_takeover) {
        return Err(Error::refused(
            format!("{}: item {}", what(), t.item),
            format!(
                "was installed by channel {:?}; a bundle on channel {:?} may not replace or remove it (--allow-takeover forces it){}",
                t.from_channel,
                manifest.channel,
                match takeovers.len() {
                    1 => String::new(),
                    n => format!("; {} items in all", n),
                }
            ),
        ));
    }
    Ok(Decision { verdict, takeovers })
}

/// Whether the generation holds every item the bundle installs, with the
/// same content.
fn holds(current: Option<&GenerationState>, manifest: &VerifiedManifest) -> Result<bool> {
    let have = match current {
        Some(c) => c.keyed()?,
        None => BTreeMap::new(),
    };
    let installs = items::keyed(&manifest.ollama, &manifest.huggingface, &manifest.oci)?;
    Ok(installs
        .iter()
        .all(|(key, item)| have.get(key).is_some_and(|held| held.same_content(*item))))
}

/// The items the bundle would replace (with other content) or remove that
/// another channel installed.
fn takeovers(
    manifest: &VerifiedManifest,
    current: Option<&GenerationState>,
) -> Result<Vec<Takeover>> {
    let Some(current) = current else {
        return Ok(Vec::new());
    };
    let have = current.keyed()?;
    let mut touched = BTreeSet::new();
    for r in &manifest.remove {
        let key = ItemKey::of_removal(r)?;
        if have.contains_key(&key) {
            touched.insert(key);
        }
    }
    for (key, item) in items::keyed(&manifest.ollama, &manifest.huggingface, &manifest.oci)? {
        if have.get(&key).is_some_and(|held| !held.same_content(item)) {
            touched.insert(key);
        }
    }
    Ok(touched
        .into_iter()
        .filter_map(|key| {
            let owner = current.owners.get(&key.to_string())?;
            (owner != &manifest.channel).then(|| Takeover {
                item: key.to_string(),
                from_channel: owner.clone(),
            })
        })
        .collect())
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
    /// Items taken from other channels (forced with --allow-takeover).
    pub takeovers: Vec<Takeover>,
}

/// The symlink that exposes a tree of `current` at a configured path.
struct Exposure {
    link: PathBuf,
    target: PathBuf,
}

fn exposures(node: &Node, generations: &Generations) -> Vec<Exposure> {
    let current = generations.current_link();
    [
        (Some(&node.ollama_dir), "ollama"),
        (Some(&node.huggingface_dir), "huggingface"),
        (node.gguf_dir.as_ref(), "gguf"),
    ]
    .into_iter()
    .filter_map(|(link, sub)| link.map(|l| (l, sub)))
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

/// The next generation's contents: the current one, less removals, with the
/// bundle's items added (replacing any of the same key). Each item the
/// bundle installs is owned by its channel from now on, unless the node
/// already held that exact content under another owner.
fn next_state(
    current: Option<&GenerationState>,
    manifest: &VerifiedManifest,
    applied: AppliedBundle,
) -> Result<GenerationState> {
    let mut next = current.cloned().unwrap_or_default();
    next.oci_removals.clear();
    let held: BTreeMap<ItemKey, Installed> = match current {
        Some(c) => c.keyed()?,
        None => BTreeMap::new(),
    };
    let key_is = |key: &ItemKey, other: Result<ItemKey>| other.is_ok_and(|k| &k == key);
    let mut owners = next.owners.clone();
    for r in &manifest.remove {
        let key = ItemKey::of_removal(r)?;
        owners.remove(&key.to_string());
        match r {
            Removal::Ollama(_) => next
                .ollama
                .retain(|m| !key_is(&key, ItemKey::ollama(&m.name))),
            Removal::Huggingface(repo) => next.huggingface.retain(|h| &h.repo != repo),
            Removal::Oci(reference) => {
                if next.oci.iter().any(|o| &o.reference == reference) {
                    next.oci_removals.push(reference.clone());
                }
                next.oci.retain(|o| &o.reference != reference);
            }
        }
    }
    for (key, item) in items::keyed(&manifest.ollama, &manifest.huggingface, &manifest.oci)? {
        let unchanged = held.get(&key).is_some_and(|h| h.same_content(item));
        if !unchanged || !owners.contains_key(&key.to_string()) {
            owners.insert(key.to_string(), manifest.channel.clone());
        }
        match item {
            Installed::Ollama(m) => {
                next.ollama
                    .retain(|x| !key_is(&key, ItemKey::ollama(&x.name)));
                next.ollama.push(m.clone());
            }
            Installed::Huggingface(h) => {
                next.huggingface.retain(|x| x.repo != h.repo);
                next.huggingface.push(h.clone());
            }
            Installed::Oci(o) => {
                next.oci.retain(|x| x.reference != o.reference);
                next.oci.push(o.clone());
            }
        }
    }
    next.owners = owners;
    next.channels.insert(
        manifest.channel.clone(),
        ChannelState {
            sequence: manifest.sequence,
            bundle: manifest.digest(),
        },
    );
    next.applied = Some(applied);
    Ok(next)
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

/// What the store and the new generation will take: the store gets the
/// blobs it lacks; the generation gets links to every blob it uses, which
/// are copies when the generations are on another filesystem.
fn space_needs<'a>(
    node: &'a Node,
    manifest: &VerifiedManifest,
    store: &ContentStore,
    needed: &[&BlobEntry],
    next: &GenerationState,
) -> Result<Vec<(&'a Path, Need)>> {
    let store_need = Need {
        bytes: needed.iter().fold(SPACE_MARGIN, |n, b| {
            n.saturating_add(b.size).saturating_add(SPACE_PER_BLOB)
        }),
        inodes: needed.len() as u64 + INODE_MARGIN,
    };
    let referenced = next.referenced();
    let hf_files: usize = next.huggingface.iter().map(|h| h.files.len()).sum();
    let items = next.ollama.len() + next.huggingface.len() + next.oci.len();
    let mut tree = Need {
        bytes: SPACE_MARGIN,
        // A link per blob, a symlink per snapshot file, and a few
        // directories and manifests per item.
        inodes: (referenced.len() + hf_files + 8 * items) as u64 + INODE_MARGIN,
    };
    if device_of(&node.bundles_dir)? != device_of(&node.content_dir)? {
        for d in &referenced {
            let size = match manifest.blobs.iter().find(|b| &b.digest == d) {
                Some(b) => b.size,
                // One the store lacks is named when the tree is built.
                None if !store.contains(d) => 0,
                None => store.size_of(d)?,
            };
            tree.bytes = tree.bytes.saturating_add(size);
        }
    }
    Ok(vec![
        (node.content_dir.as_path(), store_need),
        (node.bundles_dir.as_path(), tree),
    ])
}

/// Everything decided before a byte is written.
struct Plan<'a> {
    decision: Decision,
    current: Option<GenerationState>,
    floors: ChannelFloors,
    /// The generation to build (the current one when already applied).
    next: GenerationState,
    /// Blobs the store lacks.
    needed: Vec<&'a BlobEntry>,
}

/// Runs every check that can refuse the bundle: policy, exposures, delta
/// completeness, item contents, free space. Reads only.
fn plan<'a>(reader: &'a BundleReader, node: &Node, forces: Forces) -> Result<Plan<'a>> {
    let manifest = reader.manifest();
    let store = ContentStore::open_read_only(&node.content_dir)?;
    let generations = Generations::open_read_only(&node.bundles_dir)?;
    let current = generations.current()?;
    let floors = ChannelFloors::load(&generations)?;
    let decision = check_policy(manifest, node.role, &floors, current.as_ref(), forces)?;
    check_exposures(node, &generations)?;
    if decision.verdict == Verdict::AlreadyApplied {
        return Ok(Plan {
            decision,
            next: current.clone().unwrap_or_default(),
            current,
            floors,
            needed: Vec::new(),
        });
    }
    require_complete(manifest, &store)?;
    if !manifest.oci.is_empty() && node.podman.is_none() {
        return Err(Error::invalid(
            "agent config",
            "the bundle carries OCI images but no podman store is configured",
        ));
    }
    check_item_blobs(reader, &store)?;
    let applied = AppliedBundle {
        channel: manifest.channel.clone(),
        sequence: manifest.sequence,
        bundle: manifest.digest(),
        signed_by: manifest.signer().key_id.to_string(),
        applied_at: node.applied_at.unwrap_or_else(now),
        downgrade_forced: decision.verdict == Verdict::ForcedDowngrade,
        takeovers: decision.takeovers.clone(),
    };
    let next = next_state(current.as_ref(), manifest, applied)?;
    let needed: Vec<&BlobEntry> = manifest
        .blobs
        .iter()
        .filter(|b| !store.contains(&b.digest))
        .collect();
    check_space(&space_needs(node, manifest, &store, &needed, &next)?)?;
    Ok(Plan {
        decision,
        current,
        floors,
        next,
        needed,
    })
}

/// Logs each force the decision used, once, when it takes effect.
fn log_forces(manifest: &VerifiedManifest, decision: &Decision, floors: &ChannelFloors) {
    if decision.verdict == Verdict::ForcedDowngrade {
        tracing::warn!(
            channel = %manifest.channel,
            floor = floors.get(&manifest.channel).map_or(0, |f| f.sequence),
            to = manifest.sequence,
            bundle = %manifest.digest(),
            "downgrade forced with --allow-downgrade"
        );
    }
    for t in &decision.takeovers {
        tracing::warn!(
            item = %t.item,
            from_channel = %t.from_channel,
            channel = %manifest.channel,
            bundle = %manifest.digest(),
            "takeover forced with --allow-takeover"
        );
    }
}

pub fn apply(
    reader: &BundleReader,
    node: &Node,
    forces: Forces,
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let manifest = reader.manifest();
    // Refuse before creating the store, the generations or the lock file;
    // the checks run again under the lock, where they count.
    plan(reader, node, forces)?;
    let store = ContentStore::open(&node.content_dir)?;
    let generations = Generations::open(&node.bundles_dir)?;
    let _lock = generations.lock()?;
    let Plan {
        decision,
        current,
        mut floors,
        mut next,
        needed,
    } = plan(reader, node, forces)?;
    let verdict = decision.verdict;
    let report = |generation, written: &[&BlobEntry]| ApplyReport {
        bundle: manifest.digest(),
        channel: manifest.channel.clone(),
        sequence: manifest.sequence,
        verdict,
        generation,
        blobs_written: written.len(),
        bytes_written: written.iter().fold(0u64, |n, b| n.saturating_add(b.size)),
        blobs_reused: manifest.blobs.len() - written.len(),
        takeovers: decision.takeovers.clone(),
    };
    generations.recover()?;
    if verdict == Verdict::AlreadyApplied {
        // Finish what a crash after the switch may have left undone.
        let state = current.unwrap_or_default();
        ensure_exposures(node, &generations)?;
        finish_oci_removals(&state, node)?;
        return Ok(report(state.generation, &[]));
    }
    log_forces(manifest, &decision, &floors);
    store.clear_partials()?;
    write_blobs(reader, &store, &needed, progress)?;

    let staged = generations.stage()?;
    next.generation = staged.number;
    ollama::materialise(&store, &next.ollama, &staged.dir.join("ollama"), node.owner)?;
    crash::point("ollama-written");
    ollama::materialise_gguf_files(&store, &next.ollama, &staged.dir.join("gguf"), node.owner)?;
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
    // The floor rises before the switch: from here on no older bundle on
    // this channel is accepted, whether or not the switch completes.
    floors.raise(
        &manifest.channel,
        &ChannelState {
            sequence: manifest.sequence,
            bundle: manifest.digest(),
        },
    );
    floors.save(&generations)?;
    crash::point("floor-raised");
    let generation = staged.number;
    generations.commit(staged, &next)?;
    ensure_exposures(node, &generations)?;
    finish_oci_removals(&next, node)?;
    Ok(report(generation, &needed))
}
