//! `owui-agent gpu status [--json]`: what PCI shows, which set serves it,
//! what NVML says (driver, devices, health), whether the node is drained,
//! and the CDI spec's state. Every part that cannot be read is reported
//! with why, instead of stopping the command.

use std::fs;

use owui_bundle::Result;
use serde::{Deserialize, Serialize};

use super::choice::{self, Choice};
use super::firmware::Firmware;
use super::health::{self, GpuSection};
use super::pci::{self, PciDevice};
use super::setup;
use super::{cdi, open_api};
use crate::health::engine::State;
use crate::layout::Root;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CdiState {
    pub path: String,
    pub present: bool,
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GpuStatus {
    pub schema: String,
    pub state: State,
    pub pci_gpus: Vec<PciDevice>,
    pub nvswitches: usize,
    pub choice: Option<Choice>,
    /// Why no set could be chosen.
    pub choice_error: Option<String>,
    pub health: GpuSection,
    pub cdi: CdiState,
    /// When `gpu setup` last succeeded, what it reported.
    pub last_setup: Option<String>,
}

pub const SCHEMA: &str = "owui-gpu-status/1";

pub fn collect(root: &Root) -> Result<GpuStatus> {
    let cfg = super::load_config(root)?;
    let found = pci::scan(root)?;
    let (choice, choice_error) = if found.gpus.is_empty() {
        (None, None)
    } else {
        match root
            .host(&cfg.firmware_dir)
            .and_then(|dir| Firmware::load(&dir))
            .and_then(|fw| choice::choose(&fw, &found))
        {
            Ok(c) => (c, None),
            Err(e) => (None, Some(e.to_string())),
        }
    };
    let health = if found.gpus.is_empty() && super::fixture_path(root).is_none() {
        GpuSection {
            state: State::Healthy,
            ..GpuSection::unknown("no NVIDIA GPU on the PCI bus")
        }
    } else {
        match open_api(root, &cfg).and_then(|mut api| health::inspect(root, &cfg, api.as_mut())) {
            Ok(s) => s,
            Err(e) => {
                let mut s = GpuSection::unknown(&e.to_string());
                s.drained = health::read_drain(root, &cfg).ok().flatten();
                if s.drained.is_some() {
                    s.state = State::Failed;
                }
                s
            }
        }
    };
    let cdi_path = cfg.cdi_dir.join(cdi::FILE_NAME);
    let text = root
        .host(&cdi_path)
        .ok()
        .and_then(|p| fs::read_to_string(p).ok());
    let cdi = CdiState {
        path: cdi_path.display().to_string(),
        present: text.is_some(),
        devices: text.as_deref().map(cdi::device_names).unwrap_or_default(),
    };
    let mut state = health.state;
    if choice_error.is_some() || (!found.gpus.is_empty() && !cdi.present) {
        state = match state {
            State::Healthy => State::Degraded,
            s => s,
        };
    }
    Ok(GpuStatus {
        schema: SCHEMA.into(),
        state,
        nvswitches: found.nvswitches.len(),
        pci_gpus: found.gpus,
        choice,
        choice_error,
        health,
        cdi,
        last_setup: setup::last(root, &cfg.state_dir).map(|r| r.detail),
    })
}

pub fn print(s: &GpuStatus) {
    println!("gpu      {}: {}", s.state.as_str(), s.health.detail);
    if let Some(d) = &s.health.drained {
        println!("DRAINED  since {}: {}", d.since, d.reason);
    }
    println!(
        "pci      {} NVIDIA GPUs, {} NVSwitch chips",
        s.pci_gpus.len(),
        s.nvswitches
    );
    match (&s.choice, &s.choice_error) {
        (Some(c), _) => println!(
            "set      {} (driver {}, {} kernel modules)",
            c.set, c.driver_version, c.kernel_modules
        ),
        (None, Some(e)) => println!("set      none: {e}"),
        (None, None) => {}
    }
    s.health.answered.print();
    for g in &s.health.gpus {
        let t = g
            .sample
            .temperature_c
            .map(|t| format!("{t} °C"))
            .unwrap_or_else(|| "-".into());
        let p = g
            .sample
            .power_w
            .map(|p| format!("{p:.0} W"))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {}  {:<8} {}  {}  {t}  {p}  {}",
            g.index,
            g.state.as_str(),
            g.pci_bus_id,
            g.name,
            g.problems.join("; ")
        );
    }
    println!(
        "cdi      {} {}{}",
        s.cdi.path,
        if s.cdi.present {
            "present"
        } else {
            "MISSING (run `owui-agent gpu setup`)"
        },
        if s.cdi.devices.is_empty() {
            String::new()
        } else {
            format!(": {}", s.cdi.devices.join(" "))
        }
    );
    if let Some(l) = &s.last_setup {
        println!("setup    last: {l}");
    }
}
