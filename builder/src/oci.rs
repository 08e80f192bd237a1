//! `owui-builder oci`: pull an image into the cache, lock a spec's tags.

use std::path::Path;
use std::time::Duration;

use owui_bundle::Result;

use crate::cli::{PullArgs, RegistryArgs};
use crate::pull::lock::{lock, Locked};
use crate::pull::{layouts_dir, pull, PullOptions, Pulled};

/// The pull settings the command line gives.
pub fn pull_options(pull: &PullArgs, offline: bool) -> PullOptions {
    registry_options(
        &pull.registry,
        &pull.cache,
        pull.allow_tag_references,
        offline,
    )
}

/// [`pull_options`] from its parts (`build` and `oci lock` have their own
/// cache argument).
pub fn registry_options(
    registry: &RegistryArgs,
    cache: &Path,
    allow_tags: bool,
    offline: bool,
) -> PullOptions {
    PullOptions {
        cache_dir: cache.to_path_buf(),
        registry_config: registry.registry_config.clone(),
        certs_dir: registry.registry_certs.clone(),
        timeout: Duration::from_secs(registry.registry_timeout),
        mirrors: registry.registry_mirror.clone(),
        allow_tags,
        offline,
    }
}

pub fn run_pull(reference: &str, opts: &PullOptions) -> Result<Pulled> {
    let layouts = layouts_dir(&opts.cache_dir)?;
    pull(reference, opts, &layouts.path().join("image"))
}

pub fn print_pulled(p: &Pulled) {
    println!(
        "{}: manifest {} from {}/{} ({} blobs, {} bytes, {} fetched, the rest cached)",
        p.reference, p.manifest, p.registry, p.repository, p.blobs, p.bytes, p.fetched_bytes
    );
}

pub fn run_lock(spec: &Path, opts: &PullOptions) -> Result<Vec<Locked>> {
    lock(spec, opts)
}

pub fn print_locked(locked: &Vec<Locked>) {
    if locked.is_empty() {
        println!("nothing to lock: every pulled [[oci]] ref names a digest");
    }
    for l in locked {
        println!("line {}: {} -> {}", l.line, l.before, l.after);
    }
}
