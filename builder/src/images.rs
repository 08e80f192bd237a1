//! `owui-builder build` and `verify-image`: arguments to the image pipeline.

use std::path::{Path, PathBuf};

use owui_bundle::progress::Progress;
use owui_bundle::{Error, Result};

use crate::cli::{BuildArgs, VerifyImageArgs};
use crate::image::build::{build, BuildOptions, BuildReport};
use crate::image::spec::{mirror_problem, ImageSpec};
use crate::image::verify::{default_manifest, verify_image, Floor, Keys, Trust, Verified};
use crate::keys::load_secret;
use crate::oci::registry_options;
use crate::pull::pull_missing;

/// A path to a spec file, or the name of a built-in role spec.
fn load_spec(spec: &Path, units: Option<&Path>, cache: &Path) -> Result<ImageSpec> {
    if spec.exists() {
        let units = match units {
            Some(u) => u.to_path_buf(),
            None => spec
                .parent()
                .map(|dir| dir.join("../units"))
                .unwrap_or_else(|| PathBuf::from("../units")),
        };
        return ImageSpec::load(spec, &units);
    }
    match spec.to_str() {
        Some(role) if !role.contains('/') && !role.ends_with(".toml") => {
            ImageSpec::builtin(role, &cache.join("builtin"))
        }
        _ => Err(Error::invalid(
            spec.display().to_string(),
            "no such spec file",
        )),
    }
}

fn agent_binary(given: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let me = std::env::current_exe()
        .map_err(|e| Error::internal("owui-builder", format!("cannot find its own path: {e}")))?;
    let sibling = me.with_file_name("owui-agent");
    if sibling.is_file() {
        Ok(sibling)
    } else {
        Err(Error::invalid(
            sibling.display().to_string(),
            "no owui-agent binary next to owui-builder; pass --agent PATH",
        ))
    }
}

fn source_date_epoch(given: Option<u64>, spec: &Path) -> Result<u64> {
    if let Some(t) = given {
        return Ok(t);
    }
    if let Ok(text) = std::env::var("SOURCE_DATE_EPOCH") {
        return text.trim().parse().map_err(|_| {
            Error::invalid(
                "SOURCE_DATE_EPOCH",
                format!("{text:?} is not a number of seconds"),
            )
        });
    }
    let meta = std::fs::metadata(spec).ok();
    Ok(meta
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs()))
}

pub fn run_build(args: &BuildArgs, progress: &dyn Progress) -> Result<BuildReport> {
    let key = load_secret(&args.key)?;
    let mut spec = load_spec(&args.spec, args.units.as_deref(), &args.cache)?;
    let agent = agent_binary(args.agent.as_deref())?;
    if let Some(problem) = args.mirror.as_deref().and_then(mirror_problem) {
        return Err(Error::invalid("--mirror", problem));
    }
    let epoch = source_date_epoch(args.source_date_epoch, &spec.file)?;
    // Images without a source come from registries (or the cache), before
    // any other work; their layouts live until the content is packed.
    let pulls = registry_options(
        &args.registry,
        &args.cache,
        args.allow_tag_references,
        args.offline,
    );
    let written_at: Vec<String> = (0..spec.content.oci.len())
        .map(|i| spec.content.oci_written_at(i))
        .collect();
    let pulled = pull_missing(&mut spec.content.oci, &pulls, |i| written_at[i].clone())?;
    build(&BuildOptions {
        pulled: &pulled.images,
        spec: &spec,
        key: &key,
        out: &args.out,
        agent_binary: &agent,
        cache_dir: &args.cache,
        mirror: args.mirror.as_deref(),
        offline: args.offline,
        source_date_epoch: epoch,
        reuse_cache: !args.no_cache,
        quiet: args.output.quiet || args.output.json,
        progress,
    })
}

pub fn print_built(r: &BuildReport) {
    for s in &r.stages {
        let cached = if s.cached { " (cached)" } else { "" };
        println!("{:<9} {:>7.1} s{cached}", s.stage, s.seconds);
    }
    println!(
        "{}: {} image {}, {} bytes, sha256 {}, root hash {}",
        r.image.display(),
        r.role,
        r.version,
        r.image_bytes,
        r.image_sha256,
        r.root_hash
    );
    println!(
        "manifest {} (signed), SBOM {}",
        r.manifest.display(),
        r.sbom.display()
    );
}

pub fn print_verified(v: &Verified) {
    for check in &v.checks {
        println!("ok: {check}");
    }
    println!(
        "{}: {} image {} verified (root hash {})",
        v.image.display(),
        v.role,
        v.version,
        v.root_hash
    )
}

pub fn run_verify(args: &VerifyImageArgs) -> Result<Verified> {
    let manifest = args
        .manifest
        .clone()
        .unwrap_or_else(|| default_manifest(&args.image));
    let trust = Trust {
        keys: match &args.trust {
            Some(dir) => Keys::Store(dir.clone()),
            None => Keys::Files(args.public_keys.clone()),
        },
        state: args.trust_state.clone(),
        rotations: args.rotations.clone(),
    };
    let floor = args.min_version.as_ref().map(|v| Floor {
        min_version: v.clone(),
        allow_downgrade: args.allow_downgrade,
    });
    verify_image(&args.image, &manifest, &trust, floor.as_ref())
}
