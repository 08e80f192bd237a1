//! `owui-builder oci lock SPEC`: every `[[oci]]` entry that is pulled (no
//! `source`) and names only a tag gets the digest the tag points to now,
//! written into its `ref` (`name:tag@sha256:…`) with the file's comments and
//! layout kept, like a lock file. The spec is replaced by rename, so a
//! failure leaves it as it was.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use owui_bundle::error::IoContext;
use owui_bundle::fsutil::write_atomic;
use owui_bundle::oci::{lists, ImageReference};
use owui_bundle::{Error, Result, Sha256Digest};
use serde::Serialize;
use toml_edit::{DocumentMut, ImDocument};

use super::cache::BlobCache;
use super::registry::Registry;
use super::PullOptions;

#[derive(Debug, Serialize)]
pub struct Locked {
    pub line: usize,
    pub before: String,
    pub after: String,
}

/// Resolves and writes back; returns what changed (nothing: file untouched).
pub fn lock(spec: &Path, opts: &PullOptions) -> Result<Vec<Locked>> {
    let text = fs::read_to_string(spec).at("reading", spec)?;
    let lines = ref_lines(spec, &text)?;
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        Error::invalid(spec.display().to_string(), e.to_string())
    })?;
    let Some(tables) = doc.get_mut("oci").and_then(|i| i.as_array_of_tables_mut()) else {
        return Ok(Vec::new());
    };
    let cache = BlobCache::open(&opts.cache_dir)?;
    let mut locked = Vec::new();
    for (table, line) in tables.iter_mut().zip(lines) {
        if table.contains_key("source") {
            continue;
        }
        let Some(value) = table.get_mut("ref").and_then(|i| i.as_value_mut()) else {
            continue;
        };
        let Some(before) = value.as_str().map(str::to_string) else {
            continue;
        };
        let at = |e: Error| {
            Error::invalid(
                format!("{} line {}: oci.ref", spec.display(), line.unwrap_or(0)),
                match e {
                    Error::Invalid { what, detail } => format!("{what}: {detail}"),
                    e => return e,
                },
            )
        };
        let parsed: ImageReference = before.parse().map_err(at)?;
        if parsed.digest().is_some() {
            continue;
        }
        let digest = resolve(&parsed, opts, &cache)?;
        let after = format!("{before}@{digest}");
        let decor = value.decor().clone();
        *value = after.as_str().into();
        *value.decor_mut() = decor;
        locked.push(Locked {
            line: line.unwrap_or(0),
            before,
            after,
        });
    }
    if !locked.is_empty() {
        let mode = fs::metadata(spec).at("reading", spec)?.permissions().mode();
        write_atomic(spec, doc.to_string().as_bytes(), mode & 0o7777)?;
    }
    Ok(locked)
}

/// The digest a tag points to now; the manifest (and, for an index, the
/// check that it has a linux/amd64 image) comes along into the cache.
fn resolve(
    reference: &ImageReference,
    opts: &PullOptions,
    cache: &BlobCache,
) -> Result<Sha256Digest> {
    let registry = Registry::connect(reference, opts)?;
    let (data, digest) = registry.manifest(reference.tag(), None)?;
    lists(&data, &digest)?;
    cache.put(&data, &digest)?;
    Ok(digest)
}

/// The line of each `[[oci]]` table's `ref`, in order (for errors that name
/// file, line and key).
pub fn ref_lines(spec: &Path, text: &str) -> Result<Vec<Option<usize>>> {
    let doc = ImDocument::parse(text)
        .map_err(|e| Error::invalid(spec.display().to_string(), e.to_string()))?;
    let Some(tables) = doc.get("oci").and_then(|i| i.as_array_of_tables()) else {
        return Ok(Vec::new());
    };
    Ok(tables
        .iter()
        .map(|t| {
            t.get("ref")
                .and_then(|i| i.span())
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_lines_name_each_tables_ref() {
        let text = "channel = \"c\"\n\n[[oci]]\n# a comment\nref = \"a/b:1\"\n\n[[oci]]\nsource = \"x\"\nref = \"c/d:2\"\n";
        let lines = ref_lines(Path::new("s.toml"), text).unwrap();
        assert_eq!(lines, vec![Some(5), Some(9)]);
        assert!(ref_lines(Path::new("s.toml"), "x = 1\n")
            .unwrap()
            .is_empty());
    }
}
