//! Upkeep of a node's bundle state: `bundle gc` (drop old generations and
//! the blobs no kept generation uses) and `bundle check` (re-hash the store,
//! find blobs a generation lacks).

use std::collections::BTreeSet;
use std::fs;
use std::sync::Mutex;

use serde::Serialize;

use crate::apply::Node;
use crate::archive::copy_with_progress;
use crate::channels::ChannelFloors;
use crate::digest::Sha256Digest;
use crate::error::{IoContext, Result};
use crate::generation::Generations;
use crate::parallel;
use crate::progress::Progress;
use crate::store::ContentStore;

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
    // Generations about to go may hold the only record of a floor (a node
    // from before channels.json): write the floors first.
    ChannelFloors::load(&generations)?.save(&generations)?;
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
    let store = ContentStore::open_read_only(&node.content_dir)?;
    let generations = Generations::open_read_only(&node.bundles_dir)?;
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
