//! `owui-agent bundle …`: verify, apply, list, have, gc, check.

use std::path::Path;

use owui_bundle::apply::{self, ApplyReport, GcReport, Node, Problem, Verdict};
use owui_bundle::archive::BundleReader;
use owui_bundle::generation::{GenerationState, Generations};
use owui_bundle::have::HaveList;
use owui_bundle::progress::Progress;
use owui_bundle::store::ContentStore;
use owui_bundle::verify::check_all_blobs;
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;

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
    pub blobs: usize,
    pub bytes: u64,
}

fn open(root: &Root, file: &Path) -> Result<BundleReader> {
    let trust = crate::trust_cmd::node_store(root)?;
    if trust.trusted().next().is_none() {
        return Err(Error::untrusted(
            root.trust_dir().display().to_string(),
            "the trust store holds no key, so no bundle can be trusted",
        ));
    }
    BundleReader::open(file, &trust)
}

pub fn verify(
    root: &Root,
    file: &Path,
    allow_downgrade: bool,
    progress: &dyn Progress,
) -> Result<Verified> {
    let (_, node) = config::node(root)?;
    let reader = open(root, file)?;
    let m = reader.manifest();
    let current = Generations::open(&node.bundles_dir)?.current()?;
    let verdict = apply::check_policy(m, node.role, current.as_ref(), allow_downgrade)?;
    let store = ContentStore::open(&node.content_dir)?;
    if let Some(d) = apply::missing_blobs(m, &store).first() {
        return Err(Error::refused(
            format!("bundle {}", m.digest()),
            format!("is a delta that needs blob {d}, which this node does not hold"),
        ));
    }
    check_all_blobs(&reader, progress)?;
    Ok(Verified {
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
            Verdict::ForcedDowngrade => "; DOWNGRADE (allowed by --allow-downgrade)",
        }
    );
}

pub fn apply(
    root: &Root,
    file: &Path,
    allow_downgrade: bool,
    progress: &dyn Progress,
) -> Result<ApplyReport> {
    let (seed, node) = config::node(root)?;
    let reader = open(root, file)?;
    let report = apply::apply(&reader, &node, allow_downgrade, progress)?;
    tracing::info!(
        node = %seed.node,
        bundle = %report.bundle,
        channel = %report.channel,
        sequence = report.sequence,
        generation = report.generation,
        "bundle applied"
    );
    Ok(report)
}

pub fn print_applied(r: &ApplyReport) {
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

pub fn list(root: &Root) -> Result<Listing> {
    let g = Generations::open(&node(root)?.bundles_dir)?;
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
    let store = ContentStore::open(&node.content_dir)?;
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
