//! The NVIDIA device nodes and their `/dev/char/MAJOR:MINOR` links.
//!
//! The driver does not create its nodes through udev, so the agent makes
//! them. The `/dev/char` links matter for containers: systemd resolves
//! device cgroup rules through `/dev/char`, and without the links a
//! `systemctl daemon-reload` re-applies rules that no longer match and the
//! running containers lose their GPUs ("Failed to initialize NVML: Unknown
//! Error").
//!
//! Tested as root against a temporary root: `tests/tests/gpu_devnodes.rs`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{major, makedev, minor, mknod, Mode, SFlag};
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use super::api::GpuDevice;
use crate::layout::Root;

/// The NVIDIA character device major (fixed by the driver).
pub const NVIDIA_MAJOR: u64 = 195;
const CTL_MINOR: u64 = 255;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevNode {
    /// The node's path on the node (`/dev/nvidia0`).
    pub path: PathBuf,
    pub major: u64,
    pub minor: u64,
    /// Made by this run (false: it was there).
    pub created: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nodes {
    pub nodes: Vec<DevNode>,
    /// `/dev/char/195:0 -> ../nvidia0`, ...
    pub links: Vec<String>,
    pub warnings: Vec<String>,
}

impl Nodes {
    /// The per-GPU node of `minor`, if made.
    pub fn gpu(&self, gpu_minor: u32) -> Option<&DevNode> {
        let p = PathBuf::from(format!("/dev/nvidia{gpu_minor}"));
        self.nodes.iter().find(|n| n.path == p)
    }

    /// Nodes every GPU container needs (control, UVM).
    pub fn shared(&self) -> impl Iterator<Item = &DevNode> {
        self.nodes.iter().filter(|n| {
            let name = n.path.to_string_lossy();
            !name
                .strip_prefix("/dev/nvidia")
                .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
        })
    }
}

/// The dynamic major of `name` in `/proc/devices` (under the root).
pub fn proc_major(root: &Root, name: &str) -> Result<Option<u64>> {
    let path = root.host(Path::new("/proc/devices"))?;
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).at("reading", &path),
    };
    let mut in_char = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("Character devices") {
            in_char = true;
            continue;
        }
        if line.starts_with("Block devices") {
            in_char = false;
            continue;
        }
        if !in_char {
            continue;
        }
        if let Some((num, dev)) = line.split_once(' ') {
            if dev.trim() == name {
                return num.parse().map(Some).map_err(|_| {
                    Error::invalid(path.display().to_string(), format!("bad line {line:?}"))
                });
            }
        }
    }
    Ok(None)
}

/// Makes `node` (a character device) unless it is there; returns what is
/// there now.
fn ensure_node(
    root: &Root,
    node: &Path,
    want_major: u64,
    want_minor: u64,
    out: &mut Nodes,
) -> Result<()> {
    let path = root.host(node)?;
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_char_device() => {
            let (maj, min) = (major(meta.rdev()), minor(meta.rdev()));
            if (maj, min) != (want_major, want_minor) {
                out.warnings.push(format!(
                    "{} is c {maj}:{min}, the driver's is {want_major}:{want_minor}; left as it is",
                    node.display()
                ));
            }
            out.nodes.push(DevNode {
                path: node.to_path_buf(),
                major: maj,
                minor: min,
                created: false,
            });
            Ok(())
        }
        Ok(_) => Err(Error::invalid(
            path.display().to_string(),
            "exists and is not a character device; remove it and run `owui-agent gpu setup` again",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).at("creating", dir)?;
            }
            mknod(
                &path,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(want_major, want_minor),
            )
            .map_err(|e| Error::Io {
                action: "creating the device node",
                path: path.clone(),
                source: std::io::Error::from(e),
            })?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
                .at("setting the mode of", &path)?;
            out.nodes.push(DevNode {
                path: node.to_path_buf(),
                major: want_major,
                minor: want_minor,
                created: true,
            });
            Ok(())
        }
        Err(e) => Err(e).at("inspecting", &path),
    }
}

/// Points `/dev/char/MAJ:MIN` at the node (relative link), replacing a
/// stale link atomically.
fn ensure_link(root: &Root, node: &DevNode, out: &mut Nodes) -> Result<()> {
    let dir = root.host(Path::new("/dev/char"))?;
    fs::create_dir_all(&dir).at("creating", &dir)?;
    let name = format!("{}:{}", node.major, node.minor);
    let link = dir.join(&name);
    let target = Path::new("..").join(node.path.strip_prefix("/dev").unwrap_or(&node.path));
    if fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
        let tmp = dir.join(format!(".{name}.owui-tmp"));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).at("creating the link", &tmp)?;
        fs::rename(&tmp, &link).at("replacing", &link)?;
    }
    out.links
        .push(format!("/dev/char/{name} -> {}", target.display()));
    Ok(())
}

/// Makes the device nodes for `gpus` and the shared ones, and their links.
pub fn ensure(root: &Root, gpus: &[GpuDevice]) -> Result<Nodes> {
    let mut out = Nodes::default();
    for g in gpus {
        let node = PathBuf::from(format!("/dev/nvidia{}", g.minor));
        ensure_node(root, &node, NVIDIA_MAJOR, u64::from(g.minor), &mut out)?;
    }
    ensure_node(
        root,
        Path::new("/dev/nvidiactl"),
        NVIDIA_MAJOR,
        CTL_MINOR,
        &mut out,
    )?;
    match proc_major(root, "nvidia-uvm")? {
        Some(uvm) => {
            ensure_node(root, Path::new("/dev/nvidia-uvm"), uvm, 0, &mut out)?;
            ensure_node(root, Path::new("/dev/nvidia-uvm-tools"), uvm, 1, &mut out)?;
        }
        None => out.warnings.push(
            "nvidia-uvm is not in /proc/devices (module not loaded): no /dev/nvidia-uvm, CUDA in \
             containers will fail"
                .into(),
        ),
    }
    let nodes = out.nodes.clone();
    for n in &nodes {
        ensure_link(root, n, &mut out)?;
    }
    Ok(out)
}
