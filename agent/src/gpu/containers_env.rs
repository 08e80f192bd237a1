//! The environment file that hands the GPUs to the Ollama and vLLM
//! containers. Their Quadlet units carry `PodmanArgs=$OWUI_GPU_DEVICES` and
//! read this file (optional, `EnvironmentFile=-`): once `gpu setup` has
//! written the CDI spec, the variable is podman's `--device` for every GPU;
//! on a node without NVIDIA GPUs the file is removed, systemd expands the
//! unset variable to no words, and the same units run on CPU. Nothing is
//! written to the read-only root and no `systemctl daemon-reload` is needed.

use std::fs;
use std::path::Path;

use owui_bundle::error::IoContext;
use owui_bundle::Result;
use serde::{Deserialize, Serialize};

use super::runtime_config::{read_optional, write_atomic};
use crate::layout::Root;

/// Where the units look for it (`[gpu] containers_env` in agent.toml).
pub const DEFAULT_PATH: &str = "/run/owui/gpu/containers.env";

/// The variable the units expand.
pub const VARIABLE: &str = "OWUI_GPU_DEVICES";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvChange {
    pub file: std::path::PathBuf,
    /// What the containers get, e.g. `--device=nvidia.com/gpu=all`; empty
    /// when they get no GPU.
    pub args: String,
    /// `written`, `unchanged`, `removed` or `absent`.
    pub action: String,
}

fn contents(cdi_device: &str) -> String {
    format!(
        "# Written by `owui-agent gpu setup` on every boot; read by the Ollama and vLLM units.\n\
         {VARIABLE}=--device={cdi_device}\n"
    )
}

/// Gives the containers `cdi_device` (a qualified CDI name).
pub fn publish(root: &Root, node_path: &Path, cdi_device: &str) -> Result<EnvChange> {
    let path = root.host(node_path)?;
    let new = contents(cdi_device);
    let action = if read_optional(&path)?.as_deref() == Some(new.as_str()) {
        "unchanged"
    } else {
        write_atomic(&path, &new)?;
        "written"
    };
    Ok(EnvChange {
        file: node_path.to_path_buf(),
        args: format!("--device={cdi_device}"),
        action: action.into(),
    })
}

/// Takes the GPUs away from the containers (no NVIDIA GPU on this node).
pub fn withdraw(root: &Root, node_path: &Path) -> Result<EnvChange> {
    let path = root.host(node_path)?;
    let action = match fs::remove_file(&path) {
        Ok(()) => "removed",
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent",
        Err(e) => return Err(e).at("removing", &path),
    };
    Ok(EnvChange {
        file: node_path.to_path_buf(),
        args: String::new(),
        action: action.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_once_then_unchanged_then_withdrawn() {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        let p = Path::new(DEFAULT_PATH);
        let c = publish(&r, p, "nvidia.com/gpu=all").unwrap();
        assert_eq!(
            (c.action.as_str(), c.args.as_str()),
            ("written", "--device=nvidia.com/gpu=all")
        );
        let text = fs::read_to_string(t.path().join("run/owui/gpu/containers.env")).unwrap();
        assert!(
            text.lines()
                .any(|l| l == "OWUI_GPU_DEVICES=--device=nvidia.com/gpu=all"),
            "{text}"
        );
        assert_eq!(
            publish(&r, p, "nvidia.com/gpu=all").unwrap().action,
            "unchanged"
        );
        assert_eq!(withdraw(&r, p).unwrap().action, "removed");
        assert!(!t.path().join("run/owui/gpu/containers.env").exists());
        assert_eq!(withdraw(&r, p).unwrap().action, "absent");
    }

    /// The shipped units read this file and expand the variable unquoted
    /// (split into words; none when unset).
    #[test]
    fn the_gpu_units_read_this_file_and_variable() {
        for (name, unit) in [
            ("ollama", include_str!("../../../units/ollama.container")),
            ("vllm", include_str!("../../../units/vllm.container")),
        ] {
            let lines: Vec<&str> = unit.lines().collect();
            assert!(
                lines.contains(&format!("EnvironmentFile=-{DEFAULT_PATH}").as_str()),
                "{name}"
            );
            assert!(
                lines.contains(&format!("PodmanArgs=${VARIABLE}").as_str()),
                "{name}"
            );
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("After=") && l.contains("owui-gpu-setup.service")),
                "{name}"
            );
        }
    }
}
