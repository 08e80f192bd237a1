//! The GPU interface the rest of the agent talks to. Two implementations:
//! [`super::nvml::NvmlGpu`] (the driver's NVML library) and
//! [`super::fixture::FixtureGpu`] (a fixture file, for tests and `--root`
//! runs on machines without a GPU).

use owui_bundle::Result;
use serde::{Deserialize, Serialize};

/// A GPU as NVML numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuDevice {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    /// `0000:1b:00.0` (lowercase, with domain).
    pub pci_bus_id: String,
    /// The N of `/dev/nvidiaN`.
    pub minor: u32,
}

/// One reading of a GPU's health. `None` where the GPU does not report the
/// value (no ECC on a GeForce card, no remapping before Ampere).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    /// Uncorrectable ECC errors since the driver loaded.
    pub ecc_uncorrected_volatile: Option<u64>,
    /// Uncorrectable ECC errors over the GPU's life.
    pub ecc_uncorrected_aggregate: Option<u64>,
    /// Pages waiting for retirement at the next driver reload (pre-Ampere).
    pub retired_pages_pending: Option<bool>,
    /// Rows waiting for remapping at the next GPU reset (Ampere and newer).
    pub remapped_rows_pending: Option<bool>,
    /// A row remapping failed: the GPU needs service.
    pub remapped_rows_failure: Option<bool>,
    pub remapped_rows_uncorrectable: Option<u64>,
    pub pcie_gen_current: Option<u32>,
    pub pcie_gen_max: Option<u32>,
    pub pcie_width_current: Option<u32>,
    pub pcie_width_max: Option<u32>,
}

/// An XID error the driver reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidEvent {
    /// NVML index of the GPU.
    pub index: u32,
    pub xid: u64,
}

/// Which GPU interface answered and the driver version it reported, as
/// `gpu setup` and `gpu status` show them (both absent when none answered).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answered {
    /// The loaded kernel driver's version, e.g. "550.163.01".
    pub driver_version: Option<String>,
    /// "NVML (libnvidia-ml.so.1)" or "fixture <path>".
    pub source: Option<String>,
}

impl Answered {
    pub fn by(api: &dyn GpuApi, driver_version: String) -> Answered {
        Answered {
            driver_version: Some(driver_version),
            source: Some(api.source()),
        }
    }

    /// The reports' `driver   VERSION via SOURCE` line, when one answered.
    pub fn print(&self) {
        if let Some(s) = &self.source {
            println!(
                "driver   {} via {s}",
                self.driver_version.as_deref().unwrap_or("?")
            );
        }
    }
}

pub trait GpuApi: Send {
    /// What answers: "NVML (libnvidia-ml.so.1)" or "fixture <path>".
    fn source(&self) -> String;
    /// The loaded kernel driver's version, e.g. "550.163.01".
    fn driver_version(&mut self) -> Result<String>;
    fn devices(&mut self) -> Result<Vec<GpuDevice>>;
    fn sample(&mut self, device: &GpuDevice) -> Result<Sample>;
    /// XID errors seen since the last call (the first call starts watching).
    fn xid_events(&mut self) -> Result<Vec<XidEvent>>;
}
