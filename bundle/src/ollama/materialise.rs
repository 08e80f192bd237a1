//! Node side: models from the content store materialised into Ollama's
//! native model store (`OLLAMA_MODELS`): `blobs/sha256-<hex>` and
//! `manifests/<host>/<namespace>/<model>/<tag>`.
//!
//! # Ollama's start-up prune
//!
//! Read in `server/routes.go` (`Serve`), `server/images.go` (`PruneLayers`,
//! `deleteUnusedLayers`) and `manifest/paths.go` (`PruneDirectory`) of
//! ollama/ollama: unless `OLLAMA_NOPRUNE` is set, `ollama serve` first parses
//! every file matching `manifests/*/*/*/*` and, if any fails to parse or has an
//! invalid name, skips pruning altogether. Otherwise it deletes every entry in
//! `blobs/` whose name is not `sha256-<64 hex>` and every blob that no manifest
//! names as config or layer, then removes empty directories under
//! `manifests/`. Since v0.21.0 (`layerPruneGracePeriod`) blobs modified less
//! than an hour ago are spared; older releases have no grace period. Manifest
//! mtimes play no part. So a blob survives exactly when a manifest names it:
//! we write blobs first and manifests last, so Ollama never sees a manifest
//! whose blobs are missing, and a crash in between at worst lets Ollama prune
//! the unreferenced links (the content store keeps the bytes) until a re-run
//! relinks them. Blob links share the store's inode, so their mtime is when
//! the store received the blob, never 0. Temporary files we leave behind after
//! a crash (`.owui-tmp-*`) would make Ollama skip pruning; a re-run removes
//! them.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::manifest::{check_manifest, model_layer, MAX_MANIFEST};
use super::name::OllamaName;
use crate::digest::Sha256Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::items::{OllamaModel, Owner};
use crate::store::ContentStore;
use crate::tree;

/// Reads a blob from the store whole, up to `max` bytes.
fn read_store_blob(store: &ContentStore, digest: &Sha256Digest, max: u64) -> Result<Vec<u8>> {
    let path = store.blob_path(digest);
    let file = File::open(&path).at("opening", &path)?;
    let mut data = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut data)
        .at("reading", &path)?;
    if data.len() as u64 > max {
        return Err(Error::invalid(
            format!("blob {digest}"),
            format!("larger than {max} bytes"),
        ));
    }
    Ok(data)
}

/// A model checked against its manifest and the store, ready to write.
pub(super) struct Prepared {
    pub name: OllamaName,
    rel_path: PathBuf,
    manifest: Vec<u8>,
    /// The GGUF file: the manifest's model layer.
    pub model_layer: Sha256Digest,
}

pub(super) fn prepare(store: &ContentStore, model: &OllamaModel) -> Result<Prepared> {
    let name = OllamaName::parse(&model.name)?;
    let what = || format!("Ollama model {:?}", model.name);
    for digest in std::iter::once(&model.manifest).chain(&model.blobs) {
        if !store.contains(digest) {
            return Err(Error::invalid(
                what(),
                format!("blob {digest} is not in the content store"),
            ));
        }
    }
    let manifest = read_store_blob(store, &model.manifest, MAX_MANIFEST)?;
    check_manifest(model, &manifest)?;
    Ok(Prepared {
        rel_path: name.manifest_rel_path(),
        model_layer: model_layer(model, &manifest)?,
        name,
        manifest,
    })
}

/// Node side: makes `dest` (Ollama's `OLLAMA_MODELS`) hold `models`. Blobs
/// become hard links into the store (left alone when already there), then
/// each manifest is written atomically, so Ollama sees a model complete or
/// not at all. Everything is checked before anything is written. Safe to run
/// again on a partly written `dest`.
pub fn materialise(
    store: &ContentStore,
    models: &[OllamaModel],
    dest: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    let prepared = models
        .iter()
        .map(|m| prepare(store, m))
        .collect::<Result<Vec<_>>>()?;

    tree::ensure_root(dest, owner)?;
    let blobs_dir = tree::ensure_dirs(dest, Path::new("blobs"), owner)?;
    tree::remove_stale_temps(&blobs_dir)?;
    let digests: BTreeSet<Sha256Digest> = models
        .iter()
        .flat_map(|m| m.blobs.iter().copied())
        .collect();
    for digest in &digests {
        let target = blobs_dir.join(format!("sha256-{}", digest.hex()));
        tree::place_blob(store, digest, &target)?;
    }
    fsync_dir(&blobs_dir)?;

    for p in &prepared {
        let parent = p.rel_path.parent().unwrap_or(Path::new("manifests"));
        let dir = tree::ensure_dirs(dest, parent, owner)?;
        tree::remove_stale_temps(&dir)?;
        let path = dest.join(&p.rel_path);
        tree::refuse_dir(&path)?;
        write_atomic(&path, &p.manifest, 0o644)?;
        tree::chown(&path, owner)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ollama::fixtures::*;
    use crate::ollama::pack;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// Every entry under `root`, relative, with its mode and a flag for
    /// directories.
    fn tree_of(root: &Path) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        let mut pending = vec![root.to_path_buf()];
        while let Some(dir) = pending.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.push((rel, m.permissions().mode() & 0o7777));
                if m.is_dir() {
                    pending.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn materialise_writes_ollamas_tree_and_repairs_it() {
        let dir = tempfile::tempdir().unwrap();
        let (item, blobs) = pack(&spec_in(dir.path(), "tiny:1b")).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        crate::store::commit_packed(&store, &blobs);
        let dest = dir.path().join("models");
        materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap();

        let blob = |sha: &str| format!("blobs/sha256-{}", &sha[7..]);
        let mut expected = vec![
            ("blobs".to_string(), 0o755),
            (blob(CONFIG_SHA), 0o444),
            (blob(GGUF_SHA), 0o444),
            (blob(TMPL_SHA), 0o444),
            (blob(PARAMS_SHA), 0o444),
            ("manifests".to_string(), 0o755),
            ("manifests/registry.ollama.ai".to_string(), 0o755),
            ("manifests/registry.ollama.ai/library".to_string(), 0o755),
            (
                "manifests/registry.ollama.ai/library/tiny".to_string(),
                0o755,
            ),
            (
                "manifests/registry.ollama.ai/library/tiny/1b".to_string(),
                0o644,
            ),
        ];
        expected.sort();
        assert_eq!(tree_of(&dest), expected);
        let manifest_path = dest.join("manifests/registry.ollama.ai/library/tiny/1b");
        assert_eq!(fs::read_to_string(&manifest_path).unwrap(), MANIFEST_JSON);
        assert_eq!(
            fs::read_to_string(dest.join(blob(CONFIG_SHA))).unwrap(),
            CONFIG_JSON
        );
        assert_eq!(fs::read(dest.join(blob(GGUF_SHA))).unwrap(), tiny_gguf());
        // Blobs are the store's own inodes, not copies.
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&dest.join(blob(GGUF_SHA))),
            ino(&store.blob_path(&d(GGUF_SHA)))
        );

        // A crash left a blob and the manifest missing, and temporaries.
        fs::remove_file(dest.join(blob(TMPL_SHA))).unwrap();
        fs::remove_file(&manifest_path).unwrap();
        fs::write(dest.join("blobs/.owui-tmp-sha256-x"), "part").unwrap();
        fs::write(manifest_path.with_file_name(".owui-tmp-abc"), "{").unwrap();
        materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap();
        assert_eq!(tree_of(&dest), expected);
        assert_eq!(fs::read_to_string(&manifest_path).unwrap(), MANIFEST_JSON);

        if nix::unistd::geteuid().is_root() {
            let owner = Owner {
                uid: 4242,
                gid: 4343,
            };
            materialise(&store, &[item], &dest, Some(owner)).unwrap();
            for (rel, _) in tree_of(&dest) {
                let m = fs::symlink_metadata(dest.join(&rel)).unwrap();
                let want = if rel.starts_with("blobs/") {
                    (0, 0)
                } else {
                    (4242, 4343)
                };
                assert_eq!((m.uid(), m.gid()), want, "{rel}");
            }
            let m = fs::metadata(&dest).unwrap();
            assert_eq!((m.uid(), m.gid()), (4242, 4343));
        } else {
            eprintln!("not root: ownership not checked");
        }
    }

    #[test]
    fn materialise_checks_items_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (item, blobs) = pack(&spec_in(dir.path(), "tiny:1b")).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        crate::store::commit_packed(&store, &blobs[..4]);
        let dest = dir.path().join("models");

        let err = materialise(&store, std::slice::from_ref(&item), &dest, None).unwrap_err();
        assert!(
            err.to_string().contains("not in the content store"),
            "{err}"
        );
        crate::store::commit_packed(&store, &blobs[4..]);

        let mut short = item.clone();
        short.blobs.pop();
        let err = materialise(&store, &[short], &dest, None).unwrap_err();
        assert!(err.to_string().contains("other blobs"), "{err}");

        let mut bad_name = item.clone();
        bad_name.name = "../../etc:passwd".into();
        let err = materialise(&store, &[bad_name], &dest, None).unwrap_err();
        assert_eq!(err.exit_code(), 3, "{err}");
        assert!(!dest.exists());

        // A symlink planted in the tree is refused, not followed.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(dest.join("manifests")).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dest.join("manifests/registry.ollama.ai")).unwrap();
        let err = materialise(&store, &[item], &dest, None).unwrap_err();
        assert!(err.to_string().contains("symlinks are refused"), "{err}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    }
}
