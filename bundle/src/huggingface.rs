//! Hugging Face snapshots: packed from a directory of a repository's files at
//! one commit, and materialised into the hub cache layout that
//! `huggingface_hub` (and so vLLM and transformers) read offline:
//!
//! ```text
//! <HF_HUB_CACHE>/models--<org>--<name>/
//!   blobs/<sha256 hex>                      hard links into the content store
//!   snapshots/<revision>/<path>             relative symlinks to ../../blobs/<hex>
//!   refs/<ref>                              the revision, no trailing newline
//! ```
//!
//! As in huggingface_hub's `file_download.py` (`repo_folder_name`,
//! `_create_symlink`, `_cache_commit_hash_for_specific_revision`) and
//! `try_to_load_from_cache`, which resolve `refs/<ref>` to a commit and then
//! look in `snapshots/<commit>/`. The hub names blobs by git SHA-1 for small
//! files and SHA-256 for LFS files; nothing reads that name except through the
//! snapshot symlinks, so all ours are SHA-256, the digest the bundle signs.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use crate::digest::{hash_reader, Sha256Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{fsync_dir, write_atomic};
use crate::items::{BlobSource, HfFile, HfSnapshot, Owner, PackedBlob};
use crate::spec::HfSpec;
use crate::store::ContentStore;
use crate::tree;

/// huggingface_hub's `validate_repo_id` rules, with the namespace required:
/// each part 1-96 of `A-Z a-z 0-9 _ - .`, starting and ending with a letter,
/// digit or `_`, no `--` or `..` (the cache folder joins parts with `--`),
/// not ending in `.git`.
pub(crate) fn check_repo(repo: &str) -> Result<()> {
    let bad = |detail: &str| Error::invalid(format!("repo {repo:?}"), detail.to_string());
    let Some((org, name)) = repo.split_once('/') else {
        return Err(bad("expected \"org/name\""));
    };
    for part in [org, name] {
        let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
        let ok = !part.is_empty()
            && part.len() <= 96
            && part.bytes().all(|b| word(b) || matches!(b, b'-' | b'.'))
            && part.bytes().next().is_some_and(word)
            && part.bytes().last().is_some_and(word)
            && !part.contains("--")
            && !part.contains("..");
        if !ok {
            return Err(bad(
                "expected \"org/name\", each 1-96 of A-Z a-z 0-9 _ - . \
                 starting and ending with a letter, digit or _, without -- or ..",
            ));
        }
    }
    if repo.ends_with(".git") {
        return Err(bad("must not end in .git"));
    }
    Ok(())
}

/// A commit hash as huggingface_hub recognises one (`REGEX_COMMIT_HASH`:
/// 40 lowercase hex); anything else it would treat as a branch name.
fn check_revision(revision: &str) -> Result<()> {
    if revision.len() == 40
        && revision
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("revision {revision:?}"),
            "expected a commit hash: 40 lowercase hex characters",
        ))
    }
}

/// A ref is a file under `refs/`; `refs/pr/1` style names nest.
fn check_ref(git_ref: &str) -> Result<()> {
    let ok = !git_ref.is_empty()
        && git_ref.len() <= 255
        && git_ref.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("ref {git_ref:?}"),
            "expected /-separated names of A-Z a-z 0-9 - _ . (not starting with a dot)",
        ))
    }
}

/// A path inside a snapshot: relative, `/`-separated, no empty, `.` or `..`
/// components. Checked again at apply time because items come from bundles.
fn check_file_path(path: &str) -> Result<()> {
    let ok = !path.is_empty()
        && path.len() <= 4096
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= 255);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("snapshot file {path:?}"),
            "expected a relative /-separated path without empty, . or .. parts",
        ))
    }
}

/// Checks every field of an item, and that no path is both a file and a
/// directory (which could not be laid out).
pub(crate) fn check_snapshot(s: &HfSnapshot) -> Result<()> {
    check_repo(&s.repo)?;
    check_revision(&s.revision)?;
    check_ref(&s.git_ref)?;
    let mut files = BTreeSet::new();
    for f in &s.files {
        check_file_path(&f.path)?;
        if !files.insert(f.path.as_str()) {
            return Err(Error::invalid(
                format!("snapshot file {:?}", f.path),
                "listed twice",
            ));
        }
    }
    for f in &s.files {
        let mut prefix = f.path.as_str();
        while let Some((dir, _)) = prefix.rsplit_once('/') {
            if files.contains(dir) {
                return Err(Error::invalid(
                    format!("snapshot file {dir:?}"),
                    format!("is also a directory of {:?}", f.path),
                ));
            }
            prefix = dir;
        }
    }
    Ok(())
}

/// `models--org--name`, as huggingface_hub's `repo_folder_name`.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// Folders huggingface_hub leaves out when it uploads a folder
/// (`utils/_paths.py` `DEFAULT_IGNORE_PATTERNS`): git metadata and the
/// `.cache/huggingface` bookkeeping `hf download --local-dir` writes.
fn ignored_dir(rel: &Path) -> bool {
    rel.file_name().is_some_and(|n| n == ".git") || rel.ends_with(".cache/huggingface")
}

/// Build side: walks `spec.path`, hashes every regular file, and returns the
/// item (files sorted by path) and one blob per distinct content. Symlinks
/// are followed only to regular files inside the directory, or inside the
/// hub cache's `blobs/` when `spec.path` is a cache snapshot directory
/// (`.../models--x--y/snapshots/<rev>`), whose files are all such links.
pub fn pack(spec: &HfSpec) -> Result<(HfSnapshot, Vec<PackedBlob>)> {
    check_repo(&spec.repo)?;
    check_revision(&spec.revision)?;
    check_ref(&spec.git_ref)?;
    let root = &spec.path;
    let what = || root.display().to_string();
    if !fs::metadata(root).at("reading", root)?.is_dir() {
        return Err(Error::invalid(what(), "not a directory"));
    }
    let canon_root = fs::canonicalize(root).at("resolving", root)?;
    let mut allowed = vec![canon_root.clone()];
    if canon_root
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == "snapshots")
    {
        if let Some(repo_dir) = canon_root.parent().and_then(Path::parent) {
            allowed.push(repo_dir.join("blobs"));
        }
    }

    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel_dir) = pending.pop() {
        let dir = root.join(&rel_dir);
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let entry = entry.at("listing", &dir)?;
            let rel = rel_dir.join(entry.file_name());
            let path = entry.path();
            let Some(rel_str) = rel.to_str().map(str::to_string) else {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "file name is not UTF-8",
                ));
            };
            let kind = entry.file_type().at("reading", &path)?;
            if kind.is_dir() {
                if !ignored_dir(&rel) {
                    pending.push(rel);
                }
            } else if kind.is_file() {
                found.push((rel_str, path));
            } else if kind.is_symlink() {
                let target = fs::canonicalize(&path).map_err(|e| {
                    Error::invalid(
                        path.display().to_string(),
                        format!("symlink does not resolve: {e}"),
                    )
                })?;
                if !allowed.iter().any(|a| target.starts_with(a)) {
                    return Err(Error::invalid(
                        path.display().to_string(),
                        format!(
                            "symlink points outside the snapshot, to {}",
                            target.display()
                        ),
                    ));
                }
                if !fs::metadata(&target).at("reading", &target)?.is_file() {
                    return Err(Error::invalid(
                        path.display().to_string(),
                        "symlink to something other than a regular file",
                    ));
                }
                found.push((rel_str, target));
            } else {
                return Err(Error::invalid(
                    path.display().to_string(),
                    "not a regular file, directory or symlink",
                ));
            }
        }
    }
    if found.is_empty() {
        return Err(Error::invalid(what(), "holds no files"));
    }
    found.sort();

    let mut files = Vec::with_capacity(found.len());
    let mut blobs: Vec<PackedBlob> = Vec::new();
    let mut seen = BTreeSet::new();
    for (rel, source) in found {
        check_file_path(&rel)?;
        let file = File::open(&source).at("opening", &source)?;
        let (digest, size) = hash_reader(file).at("reading", &source)?;
        if seen.insert(digest) {
            blobs.push(PackedBlob {
                digest,
                size,
                source: BlobSource::File(source),
            });
        }
        files.push(HfFile {
            path: rel,
            digest,
            size,
        });
    }
    let item = HfSnapshot {
        repo: spec.repo.clone(),
        revision: spec.revision.clone(),
        git_ref: spec.git_ref.clone(),
        files,
    };
    check_snapshot(&item)?;
    Ok((item, blobs))
}

/// `../../blobs/<hex>` from `snapshots/<rev>/<path>`, one more `../` per
/// directory in `path`.
fn link_target(path: &str, digest: &Sha256Digest) -> String {
    let depth = path.matches('/').count();
    format!("{}../../blobs/{}", "../".repeat(depth), digest.hex())
}

/// Makes `link` a symlink to `target`; an existing correct link is left
/// alone, a wrong link or file is replaced.
fn place_symlink(link: &Path, target: &str, owner: Option<Owner>) -> Result<()> {
    match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => {
            if fs::read_link(link).at("reading", link)? == Path::new(target) {
                return tree::chown(link, owner);
            }
            fs::remove_file(link).at("removing", link)?;
        }
        Ok(m) if m.is_dir() => {
            return Err(Error::invalid(
                link.display().to_string(),
                "is a directory where a file belongs",
            ))
        }
        Ok(_) => fs::remove_file(link).at("removing", link)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("reading", link),
    }
    std::os::unix::fs::symlink(target, link).at("creating symlink", link)?;
    tree::chown(link, owner)
}

/// Node side: makes `dest` (the hub cache, `HF_HUB_CACHE`) hold `snapshots`.
/// Blobs first, then snapshot symlinks, then refs, so a ref never names a
/// snapshot that is not complete. Items are checked before anything is
/// written. Safe to run again on a partly written `dest`.
pub fn materialise(
    store: &ContentStore,
    snapshots: &[HfSnapshot],
    dest: &Path,
    owner: Option<Owner>,
) -> Result<()> {
    for s in snapshots {
        check_snapshot(s)?;
        for f in &s.files {
            if !store.contains(&f.digest) {
                return Err(Error::invalid(
                    format!("{} file {:?}", s.repo, f.path),
                    format!("blob {} is not in the content store", f.digest),
                ));
            }
        }
    }

    tree::ensure_root(dest, owner)?;
    for s in snapshots {
        let repo = PathBuf::from(repo_folder(&s.repo));
        let blobs_dir = tree::ensure_dirs(dest, &repo.join("blobs"), owner)?;
        tree::remove_stale_temps(&blobs_dir)?;
        let digests: BTreeSet<Sha256Digest> = s.files.iter().map(|f| f.digest).collect();
        for digest in &digests {
            tree::place_blob(store, digest, &blobs_dir.join(digest.hex()))?;
        }
        fsync_dir(&blobs_dir)?;

        let snapshot_rel = repo.join("snapshots").join(&s.revision);
        let mut touched = BTreeSet::new();
        for f in &s.files {
            let rel = Path::new(&f.path);
            let parent = snapshot_rel.join(rel.parent().unwrap_or(Path::new("")));
            let dir = tree::ensure_dirs(dest, &parent, owner)?;
            let name = rel.file_name().unwrap_or(rel.as_os_str());
            place_symlink(&dir.join(name), &link_target(&f.path, &f.digest), owner)?;
            touched.insert(dir);
        }
        for dir in &touched {
            fsync_dir(dir)?;
        }

        let ref_rel = repo.join("refs").join(&s.git_ref);
        let refs_parent = ref_rel.parent().unwrap_or(Path::new("refs"));
        let refs_dir = tree::ensure_dirs(dest, refs_parent, owner)?;
        tree::remove_stale_temps(&refs_dir)?;
        let ref_path = dest.join(&ref_rel);
        tree::refuse_dir(&ref_path)?;
        write_atomic(&ref_path, s.revision.as_bytes(), 0o644)?;
        tree::chown(&ref_path, owner)?;
    }
    Ok(())
}

/// A sample snapshot, packed and laid out, for this module's tests and the
/// tests crate's check with huggingface_hub itself.
#[cfg(any(test, feature = "test-support"))]
#[allow(clippy::unwrap_used)]
pub mod fixture {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::{materialise, pack};
    use crate::items::HfSnapshot;
    use crate::spec::HfSpec;
    use crate::store::ContentStore;

    pub const REV: &str = "5617a9f61b028005a4858fdac845db406aefb181";

    /// A snapshot dir with nested files, a duplicate content, an internal
    /// symlink, and folders huggingface_hub would not upload.
    pub fn snapshot_dir(root: &Path) -> PathBuf {
        let src = root.join("src");
        for (p, data) in [
            ("config.json", "{\"model_type\":\"bert\"}"),
            ("onnx/model.onnx", "onnx bytes"),
            ("1_Pooling/config.json", "{\"pooling\":1}"),
            ("deep/er/still/file.txt", "deep"),
            ("copy.txt", "deep"),
            (".gitattributes", "*.onnx filter=lfs\n"),
            (".git/HEAD", "ref: refs/heads/main\n"),
            (".cache/huggingface/download/x.metadata", "junk"),
        ] {
            let p = src.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        std::os::unix::fs::symlink("onnx/model.onnx", src.join("linked.onnx")).unwrap();
        src
    }

    pub fn spec(path: PathBuf) -> HfSpec {
        HfSpec {
            repo: "BAAI/bge-m3".into(),
            revision: REV.into(),
            git_ref: "main".into(),
            path,
        }
    }

    pub fn materialised(dir: &Path) -> (HfSnapshot, PathBuf) {
        let (item, blobs) = pack(&spec(snapshot_dir(dir))).unwrap();
        let store = ContentStore::open(&dir.join("store")).unwrap();
        crate::store::commit_packed(&store, &blobs);
        let cache = dir.join("hub");
        materialise(&store, std::slice::from_ref(&item), &cache, None).unwrap();
        // Idempotent: a second run changes nothing and does not fail.
        materialise(&store, std::slice::from_ref(&item), &cache, None).unwrap();
        (item, cache)
    }
}

#[cfg(test)]
mod tests {
    //! Without Python. Read back by huggingface_hub itself:
    //! `tests/tests/huggingface_hub.rs`.

    use super::fixture::{materialised, snapshot_dir, spec, REV};
    use super::*;

    #[test]
    fn packs_sorted_and_lays_out_the_hub_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (item, cache) = materialised(dir.path());
        let paths: Vec<&str> = item.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                ".gitattributes",
                "1_Pooling/config.json",
                "config.json",
                "copy.txt",
                "deep/er/still/file.txt",
                "linked.onnx",
                "onnx/model.onnx",
            ]
        );
        let repo = cache.join("models--BAAI--bge-m3");
        assert_eq!(fs::read(repo.join("refs/main")).unwrap(), REV.as_bytes());
        let snap = repo.join("snapshots").join(REV);
        let deep = fs::read_link(snap.join("deep/er/still/file.txt")).unwrap();
        assert_eq!(
            deep,
            Path::new(&format!(
                "../../../../../blobs/{}",
                Sha256Digest::of(b"deep").hex()
            ))
        );
        assert_eq!(
            fs::read_link(snap.join("config.json")).unwrap(),
            Path::new(&format!(
                "../../blobs/{}",
                Sha256Digest::of(b"{\"model_type\":\"bert\"}").hex()
            ))
        );
        for f in &item.files {
            let bytes = fs::read(snap.join(&f.path)).unwrap();
            assert_eq!(Sha256Digest::of(&bytes), f.digest, "{}", f.path);
        }
        assert_eq!(fs::read(snap.join("linked.onnx")).unwrap(), b"onnx bytes");
        // Five distinct contents: the copy and the link share blobs.
        assert_eq!(fs::read_dir(repo.join("blobs")).unwrap().count(), 5);
    }

    #[test]
    fn repairs_a_partial_tree() {
        let dir = tempfile::tempdir().unwrap();
        let (item, cache) = materialised(dir.path());
        let repo = cache.join("models--BAAI--bge-m3");
        let snap = repo.join("snapshots").join(REV);
        fs::remove_file(snap.join("config.json")).unwrap();
        fs::remove_file(snap.join("copy.txt")).unwrap();
        std::os::unix::fs::symlink("../../blobs/nope", snap.join("copy.txt")).unwrap();
        fs::remove_file(repo.join("refs/main")).unwrap();
        fs::write(repo.join("refs/.owui-tmp-abc"), "partial").unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        materialise(&store, &[item], &cache, None).unwrap();
        assert_eq!(fs::read(snap.join("copy.txt")).unwrap(), b"deep");
        assert_eq!(
            fs::read(snap.join("config.json")).unwrap(),
            b"{\"model_type\":\"bert\"}"
        );
        assert_eq!(fs::read_dir(repo.join("refs")).unwrap().count(), 1);
    }

    #[test]
    fn rejects_bad_specs_and_items() {
        let dir = tempfile::tempdir().unwrap();
        let src = snapshot_dir(dir.path());
        for (field, mutate) in [
            (
                "repo",
                Box::new(|s: &mut HfSpec| s.repo = "bge-m3".into()) as Box<dyn Fn(&mut HfSpec)>,
            ),
            ("repo", Box::new(|s: &mut HfSpec| s.repo = "a/../b".into())),
            ("repo", Box::new(|s: &mut HfSpec| s.repo = "a/b--c".into())),
            (
                "revision",
                Box::new(|s: &mut HfSpec| s.revision = "main".into()),
            ),
            (
                "revision",
                Box::new(|s: &mut HfSpec| s.revision = REV.to_uppercase()),
            ),
            ("ref", Box::new(|s: &mut HfSpec| s.git_ref = "../x".into())),
        ] {
            let mut s = spec(src.clone());
            mutate(&mut s);
            let err = pack(&s).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{err}");
            assert!(err.to_string().starts_with(field), "{field}: {err}");
        }

        let outside = dir.path().join("secret");
        fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, src.join("escape")).unwrap();
        let err = pack(&spec(src.clone())).unwrap_err().to_string();
        assert!(err.contains("escape") && err.contains("outside"), "{err}");
        fs::remove_file(src.join("escape")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = pack(&spec(src.clone())).unwrap_err().to_string();
        assert!(err.contains("fifo"), "{err}");
        fs::remove_file(src.join("fifo")).unwrap();

        let (item, _) = pack(&spec(src)).unwrap();
        let store = ContentStore::open(&dir.path().join("store")).unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            let mut evil = item.clone();
            evil.files[0].path = bad.into();
            let err = materialise(&store, &[evil], &dir.path().join("hub"), None).unwrap_err();
            assert_eq!(err.exit_code(), 3, "{bad}: {err}");
        }
        let mut clash = item.clone();
        clash.files[0].path = "onnx".into();
        let err = materialise(&store, &[clash], &dir.path().join("hub"), None).unwrap_err();
        assert!(err.to_string().contains("also a directory"), "{err}");
        // Nothing was written for refused items.
        assert!(!dir.path().join("hub").exists());
    }

    #[test]
    fn packs_a_hub_cache_snapshot_whose_files_are_links_to_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let (item, cache) = materialised(dir.path());
        let snap = cache.join("models--BAAI--bge-m3/snapshots").join(REV);
        let (again, _) = pack(&spec(snap)).unwrap();
        assert_eq!(again, item);
    }
}
