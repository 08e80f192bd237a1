//! The fake GPU interface: NVML's answers read from a TOML fixture, for
//! tests and for `--root` runs on machines without a GPU. The fixture is
//! read again on every call, so a test (or an operator rehearsing) can
//! change temperatures or add an XID while the daemon runs. Format in
//! docs/gpu.md.

use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::Deserialize;

use super::api::{GpuApi, GpuDevice, Sample, XidEvent};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub driver_version: String,
    /// Makes every call fail with this message (an NVML that broke).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default, rename = "gpu")]
    pub gpus: Vec<FixtureGpuEntry>,
    #[serde(default, rename = "xid")]
    pub xids: Vec<XidEvent>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixtureGpuEntry {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub minor: u32,
    // The health numbers; any left out are "not reported by this GPU".
    pub temperature_c: Option<u32>,
    pub power_w: Option<f64>,
    pub power_limit_w: Option<f64>,
    pub ecc_uncorrected_volatile: Option<u64>,
    pub ecc_uncorrected_aggregate: Option<u64>,
    pub retired_pages_pending: Option<bool>,
    pub remapped_rows_pending: Option<bool>,
    pub remapped_rows_failure: Option<bool>,
    pub remapped_rows_uncorrectable: Option<u64>,
    pub pcie_gen_current: Option<u32>,
    pub pcie_gen_max: Option<u32>,
    pub pcie_width_current: Option<u32>,
    pub pcie_width_max: Option<u32>,
}

impl FixtureGpuEntry {
    fn sample(&self) -> Sample {
        Sample {
            temperature_c: self.temperature_c,
            power_w: self.power_w,
            power_limit_w: self.power_limit_w,
            ecc_uncorrected_volatile: self.ecc_uncorrected_volatile,
            ecc_uncorrected_aggregate: self.ecc_uncorrected_aggregate,
            retired_pages_pending: self.retired_pages_pending,
            remapped_rows_pending: self.remapped_rows_pending,
            remapped_rows_failure: self.remapped_rows_failure,
            remapped_rows_uncorrectable: self.remapped_rows_uncorrectable,
            pcie_gen_current: self.pcie_gen_current,
            pcie_gen_max: self.pcie_gen_max,
            pcie_width_current: self.pcie_width_current,
            pcie_width_max: self.pcie_width_max,
        }
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Fixture> {
    let f: Fixture = owui_bundle::toml_loc::parse(&path.display().to_string(), text)?;
    for (i, g) in f.gpus.iter().enumerate() {
        if f.gpus[..i].iter().any(|o| o.index == g.index) {
            return Err(Error::invalid(
                format!("{}: gpu[{i}].index", path.display()),
                format!("index {} appears twice", g.index),
            ));
        }
    }
    Ok(f)
}

pub struct FixtureGpu {
    path: PathBuf,
    /// XIDs already handed out, so each is reported once.
    xids_seen: usize,
}

impl FixtureGpu {
    /// Checks the fixture parses now, so a malformed one is reported at once.
    pub fn load(path: &Path) -> Result<FixtureGpu> {
        let gpu = FixtureGpu {
            path: path.to_path_buf(),
            xids_seen: 0,
        };
        gpu.read()?;
        Ok(gpu)
    }

    fn read(&self) -> Result<Fixture> {
        let text = std::fs::read_to_string(&self.path).at("reading", &self.path)?;
        let f = parse(&self.path, &text)?;
        if let Some(e) = &f.error {
            return Err(Error::tool(
                format!("NVML (fixture {})", self.path.display()),
                e.clone(),
            ));
        }
        Ok(f)
    }
}

impl GpuApi for FixtureGpu {
    fn source(&self) -> String {
        format!("fixture {}", self.path.display())
    }

    fn driver_version(&mut self) -> Result<String> {
        Ok(self.read()?.driver_version)
    }

    fn devices(&mut self) -> Result<Vec<GpuDevice>> {
        let mut out: Vec<GpuDevice> = self
            .read()?
            .gpus
            .into_iter()
            .map(|g| GpuDevice {
                index: g.index,
                uuid: g.uuid,
                name: g.name,
                pci_bus_id: super::nvml::normalise_bus_id(&g.pci_bus_id),
                minor: g.minor,
            })
            .collect();
        out.sort_by_key(|d| d.index);
        Ok(out)
    }

    fn sample(&mut self, device: &GpuDevice) -> Result<Sample> {
        self.read()?
            .gpus
            .into_iter()
            .find(|g| g.index == device.index)
            .map(|g| g.sample())
            .ok_or_else(|| {
                Error::invalid(
                    self.path.display().to_string(),
                    format!("no [[gpu]] with index {}", device.index),
                )
            })
    }

    fn xid_events(&mut self) -> Result<Vec<XidEvent>> {
        let all = self.read()?.xids;
        let new = all.get(self.xids_seen..).unwrap_or_default().to_vec();
        self.xids_seen = all.len();
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_fixture_names_file_and_field() {
        let p = Path::new("/x/gpu-fixture.toml");
        let err = parse(p, "driver_version = \"550.163.01\"\n[[gpu]]\nindex = 0\nuuid = \"GPU-1\"\nname = \"H100\"\npci_bus_id = \"0000:1b:00.0\"\nminor = 0\ntemperature_c = \"hot\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gpu-fixture.toml") && err.contains("line 8"),
            "{err}"
        );
        let err = parse(p, "driver_version = \"1\"\nfan = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fan") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn xids_are_reported_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.toml");
        std::fs::write(
            &p,
            "driver_version = \"550.163.01\"\n[[xid]]\nindex = 0\nxid = 79\n",
        )
        .unwrap();
        let mut g = FixtureGpu::load(&p).unwrap();
        assert_eq!(g.xid_events().unwrap(), [XidEvent { index: 0, xid: 79 }]);
        assert!(g.xid_events().unwrap().is_empty());
    }
}
