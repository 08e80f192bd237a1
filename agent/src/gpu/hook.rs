//! `owui-agent gpu cdi-hook update-ldcache --folder DIR`: the CDI spec's
//! createContainer hook. The runtime passes the container's state on stdin;
//! the hook adds the driver library folders to the container's loader
//! configuration and rebuilds its cache, so CUDA programs find libcuda.so.1.
//! A container without a dynamic loader (a static image) needs nothing.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::Deserialize;

#[derive(Deserialize)]
struct State {
    bundle: PathBuf,
}

#[derive(Deserialize)]
struct Config {
    root: ConfigRoot,
}

#[derive(Deserialize)]
struct ConfigRoot {
    path: PathBuf,
}

/// The container's root filesystem from the OCI state on `stdin`.
fn rootfs(state: &str) -> Result<PathBuf> {
    let s: State = serde_json::from_str(state)
        .map_err(|e| Error::invalid("OCI state on stdin", e.to_string()))?;
    let cfg_path = s.bundle.join("config.json");
    let text = fs::read_to_string(&cfg_path).at("reading", &cfg_path)?;
    let cfg: Config = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(cfg_path.display().to_string(), e.to_string()))?;
    Ok(if cfg.root.path.is_absolute() {
        cfg.root.path
    } else {
        s.bundle.join(cfg.root.path)
    })
}

/// Runs the hook; returns what it did.
pub fn update_ldcache(folders: &[PathBuf]) -> Result<String> {
    let mut state = String::new();
    std::io::stdin()
        .read_to_string(&mut state)
        .map_err(|e| Error::invalid("OCI state on stdin", e.to_string()))?;
    let root = rootfs(&state)?;
    update_in(&root, folders)
}

pub fn update_in(root: &Path, folders: &[PathBuf]) -> Result<String> {
    let has_loader = ["sbin/ldconfig", "usr/sbin/ldconfig", "etc/ld.so.conf"]
        .iter()
        .any(|p| root.join(p).exists());
    if !has_loader {
        return Ok(format!(
            "{}: no dynamic loader, nothing to update",
            root.display()
        ));
    }
    let dir = root.join("etc/ld.so.conf.d");
    fs::create_dir_all(&dir).at("creating", &dir)?;
    let conf = dir.join("00-owui-nvidia.conf");
    let text: String = folders
        .iter()
        .map(|f| format!("{}\n", f.display()))
        .collect();
    fs::write(&conf, text).at("writing", &conf)?;
    Cmd::new("ldconfig").arg("-r").arg(root).output()?;
    Ok(format!("{}: loader cache updated", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_rootfs_from_the_oci_state() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("config.json"),
            r#"{"root": {"path": "rootfs"}}"#,
        )
        .unwrap();
        let state = format!(
            r#"{{"ociVersion": "1.0.2", "id": "x", "bundle": "{}"}}"#,
            t.path().display()
        );
        assert_eq!(rootfs(&state).unwrap(), t.path().join("rootfs"));
        assert!(rootfs("{}").is_err());
    }

    #[test]
    fn static_images_are_left_alone() {
        let t = tempfile::tempdir().unwrap();
        let out = update_in(t.path(), &[PathBuf::from("/usr/lib/x")]).unwrap();
        assert!(out.contains("nothing to update"));
        assert!(!t.path().join("etc").exists());
    }
}
