//! The content: the role's containers and models, put in place by the same
//! code that applies bundles on a node (pack a bundle, verify it, apply it),
//! so a pre-filled node and a node filled from bundles hold the same store,
//! generations and trees. It goes on the data partition (/var) at lib/owui,
//! where later bundles extend it; first boot grows that partition to the
//! disk's end.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use owui_bundle::apply::{self, Node};
use owui_bundle::archive::BundleReader;
use owui_bundle::command::Cmd;
use owui_bundle::create::{create_from_spec, CreateOptions};
use owui_bundle::error::IoContext;
use owui_bundle::manifest::Manifest;
use owui_bundle::oci::PodmanStore;
use owui_bundle::progress::Progress;
use owui_bundle::sign::SecretKey;
use owui_bundle::trust::TrustStore;
use owui_bundle::{Error, Result};

use super::disk::DATA_LABEL;
use super::podman_store;
use super::rootfs::sorted_entries;
use super::spec::ImageSpec;

/// The channel image content is recorded under; bundles for the site use
/// their own channels, so this never blocks one.
pub const IMAGE_CHANNEL: &str = "image";

/// Where the content sits on the data partition, which is mounted at /var.
pub const CONTENT_IN_DATA: &str = "lib/owui";

/// Makes `tree` (the data partition's root, /var on a node) with the
/// directories down to the content's, each 0755 whatever the build host's
/// umask, and returns the content's directory (/var/lib/owui).
pub fn data_layout(tree: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if tree.exists() {
        fs::remove_dir_all(tree).at("removing", tree)?;
    }
    let mut dir = tree.to_path_buf();
    let mut made = vec![dir.clone()];
    for part in Path::new(CONTENT_IN_DATA).components() {
        dir.push(part);
        made.push(dir.clone());
    }
    for d in &made {
        fs::create_dir(d).at("creating", d)?;
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).at("setting the mode of", d)?;
    }
    Ok(dir)
}

/// Paths under the content's directory, /var/lib/owui on a node; the
/// image's agent.toml names the same ones.
pub fn node_for(spec: &ImageSpec, mount: &Path, run_root: &Path, epoch: u64) -> Node {
    Node {
        role: spec.role,
        content_dir: mount.join("content"),
        bundles_dir: mount.join("bundles"),
        ollama_dir: mount.join("ollama/models"),
        huggingface_dir: mount.join("huggingface/hub"),
        gguf_dir: Some(mount.join("llama/models")),
        podman: Some(PodmanStore {
            driver: "overlay".into(),
            graph_root: mount.join("containers/storage"),
            run_root: run_root.to_path_buf(),
        }),
        owner: None,
        applied_at: Some(epoch),
    }
}

pub struct Prefilled {
    /// The signed bundle manifest of what was pre-filled (None: no content).
    pub manifest: Option<Manifest>,
    /// Bytes the content takes on disk (the content store's blobs and
    /// podman's unpacked layers both), for the partition size.
    pub bytes: u64,
}

/// Packs the spec's content into a bundle signed with `key`, then applies it
/// into `mount` (a directory laid out as /var/lib/owui).
pub fn prefill(
    spec: &ImageSpec,
    key: &SecretKey,
    epoch: u64,
    scratch: &Path,
    mount: &Path,
    progress: &dyn Progress,
) -> Result<Prefilled> {
    let node = node_for(spec, mount, &scratch.join("podman-run"), epoch);
    fs::create_dir_all(&node.content_dir).at("creating", &node.content_dir)?;
    fs::create_dir_all(&node.bundles_dir).at("creating", &node.bundles_dir)?;
    if spec.content.is_empty() {
        return Ok(Prefilled {
            manifest: None,
            bytes: 0,
        });
    }
    let bundle_spec = spec.content.to_bundle_spec(spec.role, IMAGE_CHANNEL, 1);
    let bundle = scratch.join("content.owb");
    let report = create_from_spec(
        &bundle_spec,
        &CreateOptions {
            spec: &spec.file,
            key,
            out: &bundle,
            have: None,
            created: epoch,
            progress,
        },
    )?;
    let trust = TrustStore::with_keys(vec![key.public()], "the build's key");
    let reader = BundleReader::open(&bundle, &trust)?;
    let applied = apply::apply(&reader, &node, apply::Forces::default(), progress);
    // containers/storage's overlay driver bind-mounts its own directory and
    // leaves the mount behind when skopeo exits.
    owui_bundle::oci::unmount_below(mount)?;
    applied?;
    if let Some(store) = &node.podman {
        podman_store::normalise(&store.graph_root, epoch)?;
    }
    fs::remove_file(&bundle).at("removing", &bundle)?;
    // The blobs are there compressed, podman's store holds the layers
    // unpacked: size the partition by what the tree takes, not the blobs.
    let bytes = tree_bytes(mount)?;
    Ok(Prefilled {
        manifest: Some(report.manifest),
        bytes,
    })
}

/// What the content will take, from its sources, before any work: the
/// partition check runs on this, then again on the pre-filled tree. Each
/// source counts its files' sizes; a container image's layers count again
/// as podman will hold them, unpacked ([`unpacked_bytes`]).
pub fn estimate_bytes(spec: &ImageSpec) -> Result<u64> {
    fn size_of(path: &Path, layers: bool) -> Result<u64> {
        let meta = fs::metadata(path).at("reading", path)?;
        if !meta.is_dir() {
            let unpacked = if layers { unpacked_bytes(path)? } else { 0 };
            return Ok(meta.len().saturating_add(unpacked));
        }
        let mut total = 0u64;
        for entry in fs::read_dir(path).at("reading", path)? {
            total = total.saturating_add(size_of(&entry.at("reading", path)?.path(), layers)?);
        }
        Ok(total)
    }
    let c = &spec.content;
    let mut total = 0u64;
    for p in c.oci.iter().filter_map(|o| o.source.as_ref()) {
        total = total.saturating_add(size_of(p, true)?);
    }
    for p in c
        .ollama
        .iter()
        .map(|m| &m.gguf)
        .chain(c.huggingface.iter().map(|h| &h.path))
    {
        total = total.saturating_add(size_of(p, false)?);
    }
    Ok(total)
}

/// What a blob of an OCI layout takes once podman has unpacked it, as far
/// as its own bytes say without unpacking: a gzip layer's trailer (its
/// size modulo 4 GiB; a layer of several gzip members says only its last
/// one's), a zstd frame's declared size, a tar's own size; nothing for
/// what is not a layer (a manifest, a config). A lower bound at worst: the
/// check on the pre-filled tree has the last word.
pub fn unpacked_bytes(blob: &Path) -> Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(blob).at("opening", blob)?;
    let mut head = Vec::with_capacity(512);
    (&mut file)
        .take(512)
        .read_to_end(&mut head)
        .at("reading", blob)?;
    let len = file.metadata().at("reading", blob)?.len();
    if head.starts_with(&[0x1f, 0x8b]) && len >= 18 {
        let mut trailer = [0u8; 4];
        file.seek(SeekFrom::End(-4)).at("reading", blob)?;
        file.read_exact(&mut trailer).at("reading", blob)?;
        return Ok(u64::from(u32::from_le_bytes(trailer)));
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // No declared size: at least its own.
        return Ok(zstd::zstd_safe::get_frame_content_size(&head)
            .ok()
            .flatten()
            .unwrap_or(len));
    }
    if head.get(257..262) == Some(b"ustar".as_slice()) {
        return Ok(len);
    }
    Ok(0)
}

/// What `dir` takes on an ext4 filesystem, roughly: every file's size in
/// 4 KiB blocks, counted once however many hard links it has, and a block
/// for each directory and link.
fn tree_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    const BLOCK: u64 = 4096;
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        total = total.saturating_add(BLOCK);
        for entry in fs::read_dir(&d).at("reading", &d)? {
            let path = entry.at("reading", &d)?.path();
            let meta = fs::symlink_metadata(&path).at("reading", &path)?;
            if meta.is_dir() {
                pending.push(path);
            } else if !meta.is_file() {
                total = total.saturating_add(BLOCK);
            } else if seen.insert((meta.dev(), meta.ino())) {
                total = total.saturating_add(meta.len().div_ceil(BLOCK) * BLOCK);
            }
        }
    }
    Ok(total)
}

/// Recreates `from` at `to` with every directory's entries made in name
/// order; files become hard links (so files linked together stay so).
fn link_tree_sorted(
    from: &Path,
    to: &Path,
    seen: &mut BTreeMap<(u64, u64), PathBuf>,
) -> Result<()> {
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    let meta = fs::symlink_metadata(from).at("reading", from)?;
    fs::create_dir(to).at("creating", to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .at("setting the mode of", to)?;
    nix::unistd::chown(to, Some(meta.uid().into()), Some(meta.gid().into())).map_err(|e| {
        Error::Io {
            action: "setting the owner of",
            path: to.to_path_buf(),
            source: e.into(),
        }
    })?;
    for (name, src) in sorted_entries(from)? {
        let dst = to.join(name);
        let m = fs::symlink_metadata(&src).at("reading", &src)?;
        if m.file_type().is_symlink() {
            let target = fs::read_link(&src).at("reading link", &src)?;
            symlink(&target, &dst).at("creating link", &dst)?;
        } else if m.is_dir() {
            link_tree_sorted(&src, &dst, seen)?;
        } else {
            let key = (m.dev(), m.ino());
            let first = seen.entry(key).or_insert_with(|| src.clone()).clone();
            fs::hard_link(&first, &dst).at("linking", &dst)?;
        }
    }
    Ok(())
}

/// Sets every timestamp under `dir` to `epoch` (apply stamps the build's
/// wall-clock time; the filesystem image must not carry it).
pub fn clamp_times(dir: &Path, epoch: u64) -> Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(i64::try_from(epoch).unwrap_or(i64::MAX), 0);
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).at("reading", &path)?;
        if meta.is_dir() {
            for entry in fs::read_dir(&path).at("reading", &path)? {
                stack.push(entry.at("reading", &path)?.path());
            }
        }
        utimensat(
            None,
            path.as_os_str().as_bytes(),
            &t,
            &t,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| Error::Io {
            action: "setting the time of",
            path: path.clone(),
            source: e.into(),
        })?;
    }
    Ok(())
}

/// `mount` (the data partition's tree) → an ext4 image of `size_mib`
/// labelled as the data partition, reproducible: fixed UUID and hash seed,
/// fake creation time, clamped file times.
pub fn make_partition(
    mount: &Path,
    size_mib: u64,
    uuid: &str,
    epoch: u64,
    out: &Path,
) -> Result<()> {
    // mke2fs takes entries in readdir order, which for small directories is
    // creation order, and apply creates blobs from parallel workers: a copy
    // made in sorted order (hard links, no data copied) fixes the order.
    let sorted = mount.with_extension("sorted");
    if sorted.exists() {
        fs::remove_dir_all(&sorted).at("removing", &sorted)?;
    }
    link_tree_sorted(mount, &sorted, &mut BTreeMap::new())?;
    clamp_times(&sorted, epoch)?;
    let mount = sorted.as_path();
    if out.exists() {
        fs::remove_file(out).at("replacing", out)?;
    }
    Cmd::new("mkfs.ext4")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args(["-q", "-F", "-L", DATA_LABEL, "-U", uuid])
        .arg("-E")
        .arg(format!(
            "hash_seed={uuid},root_owner=0:0,lazy_itable_init=0"
        ))
        .arg("-d")
        .arg(mount)
        .arg(out)
        .arg(format!("{size_mib}M"))
        .output()?;
    reset_change_times(mount, epoch, out)
}

/// mke2fs copies each file's change time (ctime) from the source tree, and
/// no call can set a ctime: debugfs sets them in the image afterwards.
fn reset_change_times(tree: &Path, epoch: u64, image: &Path) -> Result<()> {
    let mut script = String::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = tree.join(&rel);
        for entry in fs::read_dir(&dir).at("reading", &dir)? {
            let entry = entry.at("reading", &dir)?;
            let child = rel.join(entry.file_name());
            let text = child.to_string_lossy();
            if text.contains(['"', '\n', '\\']) {
                return Err(Error::invalid(
                    format!("content file {text:?}"),
                    "names with quotes, backslashes or newlines cannot go on the content partition",
                ));
            }
            script.push_str(&format!("sif \"/{text}\" ctime @{epoch}\n"));
            if entry.file_type().at("reading", &dir)?.is_dir() {
                stack.push(child);
            }
        }
    }
    let script_path = tree.with_extension("debugfs");
    fs::write(&script_path, script).at("writing", &script_path)?;
    // debugfs stamps the superblock's write time as it closes.
    Cmd::new("debugfs")
        .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .arg("-w")
        .arg("-f")
        .arg(&script_path)
        .arg(image)
        .output()?;
    fs::remove_file(&script_path).at("removing", &script_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_bytes_counts_blocks_and_each_hard_linked_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("a"), vec![0u8; 5000]).unwrap();
        fs::hard_link(root.join("a"), root.join("sub/a-again")).unwrap();
        fs::write(root.join("sub/b"), b"x").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        // Two directories, a link, a 2-block file (once) and a 1-block file.
        assert_eq!(tree_bytes(&root).unwrap(), (2 + 1 + 2 + 1) * 4096);
    }

    #[test]
    fn a_layer_counts_what_it_unpacks_to() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("zeros"), vec![0u8; 3 << 20]).unwrap();
        let sh = |script: &str| {
            let status = std::process::Command::new("sh")
                .arg("-c")
                .arg(script)
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "{script}");
        };
        sh("tar -cf plain zeros && gzip -c < plain > gz");
        let plain = dir.path().join("plain");
        let layer = fs::read(&plain).unwrap();
        assert_eq!(unpacked_bytes(&plain).unwrap(), layer.len() as u64);
        // gzip, as registries and skopeo compress layers: a few KiB that
        // unpack to 3 MiB.
        let gz = dir.path().join("gz");
        assert!(fs::metadata(&gz).unwrap().len() < 64 << 10);
        assert_eq!(unpacked_bytes(&gz).unwrap(), layer.len() as u64);
        let zst = dir.path().join("zst");
        fs::write(&zst, zstd::bulk::compress(&layer, 3).unwrap()).unwrap();
        assert_eq!(unpacked_bytes(&zst).unwrap(), layer.len() as u64);
        // Not a layer.
        let config = dir.path().join("config");
        fs::write(&config, br#"{"architecture":"amd64","os":"linux"}"#).unwrap();
        assert_eq!(unpacked_bytes(&config).unwrap(), 0);
    }
}
