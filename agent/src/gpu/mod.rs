//! GPU nodes: find NVIDIA devices in sysfs, choose the pinned driver set
//! from `firmware/`, load the kernel modules, verify the driver through NVML,
//! write the CDI spec and the container runtimes' configuration, and watch
//! GPU health (temperature, power, ECC, retired pages / remapped rows, PCIe
//! link, XID events).
//!
//! Every host path goes through [`Root`]; NVML sits behind [`api::GpuApi`]
//! with a real implementation (the driver's `libnvidia-ml.so.1`, loaded at
//! run time) and a fixture-driven one (`<root>/etc/owui/gpu-fixture.toml`)
//! that only test builds honour (owui-bundle's `gpu-fixture` feature).

pub mod api;
pub mod cdi;
pub mod choice;
pub mod containers_env;
pub mod devnodes;
pub mod fixture;
pub mod health;
pub mod hook;
pub mod nvml;
pub mod pci;
pub mod runtime_config;
pub mod setup;
pub mod status;

/// The driver set files are shared with the builder.
pub use owui_bundle::firmware;

use std::path::{Path, PathBuf};

use owui_bundle::Result;
use serde::Deserialize;

use crate::layout::Root;

/// The `[gpu]` table of `etc/owui/agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// The driver sets and the GPU table (`sets/*.toml`, `gpus.toml`),
    /// shipped in the image.
    pub firmware_dir: PathBuf,
    /// Where the CDI spec goes (`nvidia.yaml`).
    pub cdi_dir: PathBuf,
    /// The NVML library to load (a name for the dynamic loader or a path).
    pub nvml_library: String,
    /// The agent binary as the container runtime calls it for the CDI
    /// ldcache hook.
    pub hook_binary: PathBuf,
    /// Degraded at or above this GPU temperature (°C).
    pub temperature_warn_c: u32,
    /// Failed at or above this GPU temperature (°C).
    pub temperature_fail_c: u32,
    /// XID codes that mark the GPU failed and drain the node.
    pub critical_xids: Vec<u64>,
    /// Where the drain marker and the last report are kept.
    pub state_dir: PathBuf,
    /// The environment file the GPU containers' Quadlet units read
    /// (`OWUI_GPU_DEVICES`, see [`containers_env`]).
    pub containers_env: PathBuf,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            firmware_dir: "/usr/share/owui/firmware".into(),
            cdi_dir: "/etc/cdi".into(),
            nvml_library: "libnvidia-ml.so.1".into(),
            hook_binary: "/usr/bin/owui-agent".into(),
            temperature_warn_c: 85,
            temperature_fail_c: 95,
            critical_xids: vec![48, 79, 94, 95],
            state_dir: "/var/lib/owui/gpu".into(),
            containers_env: containers_env::DEFAULT_PATH.into(),
        }
    }
}

/// The fixture that replaces NVML, when this is a test build and the file
/// exists (see docs/gpu.md). A release binary never reads it.
pub fn fixture_path(root: &Root) -> Option<PathBuf> {
    let path = root.host(Path::new("/etc/owui/gpu-fixture.toml")).ok()?;
    (owui_bundle::seams::GPU_FIXTURE && path.exists()).then_some(path)
}

/// Opens the GPU interface: the fixture in a test build that has one,
/// else the real NVML library.
pub fn open_api(root: &Root, cfg: &GpuConfig) -> Result<Box<dyn api::GpuApi>> {
    if let Some(fixture) = fixture_path(root) {
        tracing::warn!(
            "using the GPU fixture {} instead of NVML",
            fixture.display()
        );
        return Ok(Box::new(fixture::FixtureGpu::load(&fixture)?));
    }
    Ok(Box::new(nvml::NvmlGpu::open(&cfg.nvml_library)?))
}

/// The GPU config from agent.toml (defaults when the file has none).
pub fn load_config(root: &Root) -> Result<GpuConfig> {
    Ok(crate::config::load_agent_config(root)?.gpu)
}
