//! `owui-agent bundle …`: verify, apply, list, have, gc, check.

use std::path::Path;

use owui_bundle::apply::{self, ApplyReport, GcReport, Node, Problem, Verdict};
use owui_bundle::archive::BundleReader;
use owui_bundle::channels::ChannelFloors;
use owui_bundle::generation::{GenerationState, Generations};
use owui_bundle::have::HaveList;
use owui_bundle::progress::Progress;
use owui_bundle::store::ContentStore;
use owui_bundle::verify::{check_all_blobs, check_item_blobs};
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;

use crate::backend::{self, BackendRestart};
use crate::cli::BundleFile;
use crate::config;
use crate::layout::Root;

#[derive(Debug, Serialize)]
pub struct Verified {
    pub bundle: Sha256Digest,
    pub channel: String,
    pub sequence: u64,
    pub roles: Vec<String>,
    pub signed_by: String,
    pub verdict: Verdict,
    /// Items of other channels the bundle would replace or remove (allowed
    /// by --allow-takeover).
    pub takeovers: Vec<String>,
    pub blobs: usize,
    pub bytes: u64,
}

fn open(root: &Root, file: &Path) -> Result<BundleReader> {
    let trust = crate::trust_cmd::node_store(root)?;
    if trust.trusted().next().is_none() {
        return Err(Error::untrusted(
            root.trust_dir()?.display().to_string(),
            "the trust store holds no key, so no bundle can be trusted",
        ));
    }
    BundleReader::open(file, &trust)
}

/// Checks a bundle as `apply` would, short of free space, and changes
/// nothing: every directory is opened read-only, none is created.
pub fn verify(root: &Root, args: &BundleFile) -> Result<Verified> {
    let (file, forces, progress) = (&args.file, args.forces.into(), args.output.progress());
    let (_, node) = config::node(root)?;
    let reader = open(root, file)?;
    let m = reader.manifest();
    let generations = Generations::open_read_only(&node.bundles_dir)?;
    let current = generations.current()?;
    let floors = ChannelFloors::load(&generations)?;
    let decision = apply::check_policy(m, node.role, &floors, current.as_ref(), forces)?;
    let store = ContentStore::open_read_only(&node.content_dir)?;
    if let Some(d) = apply::missing_blobs(m, &store).first() {
        return Err(Error::refused(
            format!("bundle {}", m.digest()),
            format!("is a delta that needs blob {d}, which this node does not hold"),
        ));
    }
    check_all_blobs(&reader, progress.as_ref())?;
    check_item_blobs(&reader, &store)?;
    let verdict = decision.verdict;
    Ok(Verified {
        takeovers: decision
            .takeovers
            .iter()
            .map(|t| format!("{} (from channel {})", t.item, t.from_channel))
            .collect(),
        bundle: m.digest(),
        channel: m.channel.clone(),
        sequence: m.sequence,
        roles: m.roles.iter().map(|r| r.to_string()).collect(),
        signed_by: m.signer().key_id.to_string(),
        verdict,
        blobs: m.blobs.len(),
        bytes: m.total_size(),
    })
}

pub fn print_verified(v: &Verified) {
    println!(
        "{}: good signature by key {}; channel {} sequence {}; {} blobs, {} bytes, all digests match{}",
        v.bundle,
        v.signed_by,
        v.channel,
        v.sequence,
        v.blobs,
        v.bytes,
        match v.verdict {
            Verdict::New => "",
            Verdict::AlreadyApplied => "; already applied on this node",
            Verdict::Reapply => "; applied before, but this node no longer holds all of it",
            Verdict::ForcedDowngrade => "; DOWNGRADE (allowed by --allow-downgrade)",
        }
    );
    for t in &v.takeovers {
        println!("TAKEOVER (allowed by --allow-takeover): {t}");
    }
}

/// An apply's report, and what it did to the backend that serves GGUF files.
#[derive(Debug, Serialize)]
pub struct Applied {
    #[serde(flatten)]
    pub report: ApplyReport,
    pub gguf_backend: BackendRestart,
}

pub fn apply(root: &Root, args: &BundleFile) -> Result<Applied> {
    let (file, forces, progress) = (&args.file, args.forces.into(), args.output.progress());
    let (seed, node) = config::node(root)?;
    let reader = open(root, file)?;
    let models_before = backend::gguf_files(node.gguf_dir.as_deref());
    let applied = apply::apply(&reader, &node, forces, progress.as_ref());
    // Under --root the store is a mounted disk's, not this host's: take
    // away the mount podman's overlay driver leaves on it.
    if let Some(store) = node
        .podman
        .as_ref()
        .filter(|_| root.path() != Path::new("/"))
    {
        if store.graph_root.exists() {
            owui_bundle::oci::unmount_below(&store.graph_root)?;
        }
    }
    let report = applied?;
    let models_after = backend::gguf_files(node.gguf_dir.as_deref());
    tracing::info!(
        node = %seed.node,
        bundle = %report.bundle,
        channel = %report.channel,
        sequence = report.sequence,
        generation = report.generation,
        "bundle applied"
    );
    let gguf_backend = backend::after_apply(root, &models_before, &models_after);
    Ok(Applied {
        report,
        gguf_backend,
    })
}

pub fn print_applied(applied: &Applied) {
    let r = &applied.report;
    if r.verdict == Verdict::AlreadyApplied {
        println!(
            "bundle {} (channel {} sequence {}) is already applied: generation {}; nothing to do",
            r.bundle, r.channel, r.sequence, r.generation
        );
    } else {
        println!(
            "bundle {} applied: channel {} sequence {} → generation {} ({} blobs written, {} bytes; {} already held){}",
            r.bundle,
            r.channel,
            r.sequence,
            r.generation,
            r.blobs_written,
            r.bytes_written,
            r.blobs_reused,
            if r.verdict == Verdict::ForcedDowngrade { "; DOWNGRADE forced" } else { "" }
        );
        for t in &r.takeovers {
            println!(
                "TAKEOVER forced: {} from channel {}",
                t.item, t.from_channel
            );
        }
    }
    match &applied.gguf_backend {
        BackendRestart::NotNeeded => {}
        BackendRestart::Restarted => println!(
            "{} restarted to serve the new set of models",
            backend::GGUF_BACKEND
        ),
        BackendRestart::NotRestarted(why) => {
            println!("{} NOT restarted: {why}", backend::GGUF_BACKEND)
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Listing {
    pub current: Option<u64>,
    pub generations: Vec<GenerationState>,
}

fn node(root: &Root) -> Result<Node> {
    config::node(root).map(|(_, n)| n)
}

/// Reads only; a node with no bundle directory yet lists nothing.
pub fn list(root: &Root) -> Result<Listing> {
    let g = Generations::open_read_only(&node(root)?.bundles_dir)?;
    Ok(Listing {
        current: g.current()?.map(|s| s.generation),
        generations: g.all()?,
    })
}

pub fn print_listing(l: &Listing) {
    if l.generations.is_empty() {
        println!("no bundle applied yet");
    }
    for g in &l.generations {
        let mark = if Some(g.generation) == l.current {
            "*"
        } else {
            " "
        };
        let from = g
            .applied
            .as_ref()
            .map(|a| format!("{} seq {} ({})", a.channel, a.sequence, a.bundle))
            .unwrap_or_default();
        println!("{mark} generation {}: {from}", g.generation);
        if let Some(a) = &g.applied {
            if a.downgrade_forced {
                println!("    DOWNGRADE forced (--allow-downgrade)");
            }
            for t in &a.takeovers {
                println!(
                    "    TAKEOVER forced (--allow-takeover): {} from channel {}",
                    t.item, t.from_channel
                );
            }
        }
        for m in &g.ollama {
            println!("    ollama       {}", m.name);
        }
        for h in &g.huggingface {
            println!("    huggingface  {}@{}", h.repo, h.revision);
        }
        for o in &g.oci {
            println!("    oci          {} {}", o.reference, o.manifest);
        }
    }
}

pub fn have(root: &Root) -> Result<HaveList> {
    let (seed, node) = config::node(root)?;
    let store = ContentStore::open_read_only(&node.content_dir)?;
    Ok(HaveList::new(&seed.node, store.digests()?))
}

pub fn gc(root: &Root, keep: usize) -> Result<GcReport> {
    if keep == 0 {
        return Err(Error::invalid(
            "--keep",
            "must be at least 1 (the current generation)",
        ));
    }
    apply::gc(&node(root)?, keep)
}

pub fn print_gc(r: &GcReport) {
    println!("{}", gc_summary(r));
}

/// What gc removed, in words (it printed Rust debug text, `[1, 2]`).
fn gc_summary(r: &GcReport) -> String {
    let generations = match r.generations_removed.as_slice() {
        [] => "no generation".to_string(),
        [one] => format!("generation {one}"),
        many => {
            let list: Vec<String> = many.iter().map(u64::to_string).collect();
            format!("generations {}", list.join(", "))
        }
    };
    format!(
        "removed {generations}; {} blobs ({} bytes)",
        r.blobs_removed, r.bytes_freed
    )
}

#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub problems: Vec<Problem>,
}

pub fn check(root: &Root, progress: &dyn Progress) -> Result<CheckReport> {
    let problems = apply::check(&node(root)?, progress)?;
    if let Some(p) = problems.first() {
        return Err(Error::untrusted(
            p.what.clone(),
            format!(
                "{} ({} problems in all; --json lists them)",
                p.detail,
                problems.len()
            ),
        ));
    }
    Ok(CheckReport { ok: true, problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(generations: &[u64]) -> GcReport {
        GcReport {
            generations_removed: generations.to_vec(),
            blobs_removed: 3,
            bytes_freed: 4096,
        }
    }

    #[test]
    fn gc_summary_names_generations_in_words() {
        assert_eq!(
            gc_summary(&report(&[])),
            "removed no generation; 3 blobs (4096 bytes)"
        );
        assert_eq!(
            gc_summary(&report(&[2])),
            "removed generation 2; 3 blobs (4096 bytes)"
        );
        assert_eq!(
            gc_summary(&report(&[1, 2, 5])),
            "removed generations 1, 2, 5; 3 blobs (4096 bytes)"
        );
    }
}
