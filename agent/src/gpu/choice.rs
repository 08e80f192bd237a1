//! Which driver set serves the GPUs this node has. A GPU the table does not
//! know, or whose architecture has no set, is refused with its name, its
//! address and the nearest sets, so the operator knows what to bring.

use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use super::firmware::{DriverSet, Firmware, ModuleFlavour};
use super::pci::{Detected, PciDevice};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenGpu {
    pub address: String,
    pub device_id: String,
    pub model: String,
    pub architecture: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub set: String,
    pub driver_version: String,
    pub kernel_modules: ModuleFlavour,
    pub module_package: String,
    pub gpus: Vec<ChosenGpu>,
    /// NVSwitch chips present: fabric manager is needed.
    pub nvswitches: usize,
    pub warnings: Vec<String>,
}

fn describe(d: &PciDevice) -> String {
    format!("{:04x}:{:04x} at {}", d.vendor, d.device, d.address)
}

/// The sets on offer and what each serves, newest driver first.
fn nearest(fw: &Firmware) -> String {
    let mut sets: Vec<&DriverSet> = fw.sets.values().collect();
    sets.sort_by_key(|s| std::cmp::Reverse(version_key(s.version())));
    if sets.is_empty() {
        return "none: firmware/sets/ is empty".into();
    }
    sets.iter()
        .map(|s| {
            let archs: Vec<&str> = fw
                .table
                .architecture
                .iter()
                .filter(|(_, a)| a.sets.iter().any(|n| n.get_ref() == s.name()))
                .map(|(k, _)| k.as_str())
                .collect();
            format!(
                "{} (driver {}, for {})",
                s.name(),
                s.version(),
                archs.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The NVSwitch models the table knows, by name.
fn switch_names(fw: &Firmware, found: &Detected) -> String {
    let mut names: Vec<&str> = found
        .nvswitches
        .iter()
        .map(|d| {
            fw.table
                .nvswitches
                .iter()
                .find(|m| m.device_ids.iter().any(|i| i.0 == d.device))
                .map_or("unknown NVSwitch", |m| m.name.as_str())
        })
        .collect();
    names.dedup();
    names.join(", ")
}

fn version_key(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// Picks the set for `found`; `None` when the node has no NVIDIA GPU.
pub fn choose(fw: &Firmware, found: &Detected) -> Result<Option<Choice>> {
    if found.gpus.is_empty() {
        return Ok(None);
    }
    let table = fw.table_file.display().to_string();
    let mut chosen = Vec::new();
    let mut candidates: Option<Vec<String>> = None;
    let mut flavour: Option<(ModuleFlavour, String)> = None;
    for d in &found.gpus {
        let Some(model) = fw
            .table
            .gpus
            .iter()
            .find(|g| g.device_ids.iter().any(|i| i.get_ref().0 == d.device))
        else {
            return Err(Error::refused(
                format!("GPU {}", describe(d)),
                format!(
                    "this NVIDIA device ID is not in {table}, so no driver set is known to \
                     support it; nearest sets: {}. Add it to the table with a set that \
                     supports it (see docs/gpu.md)",
                    nearest(fw)
                ),
            ));
        };
        let arch_name = model.architecture.get_ref();
        let Some(arch) = fw.table.architecture.get(arch_name) else {
            return Err(Error::invalid(
                &table,
                format!("no architecture {arch_name:?}"),
            ));
        };
        let sets: Vec<String> = arch
            .sets
            .iter()
            .map(|s| s.get_ref().clone())
            .filter(|s| fw.sets.contains_key(s))
            .collect();
        if sets.is_empty() {
            return Err(Error::refused(
                format!("GPU {} ({}, {arch_name})", describe(d), model.name),
                format!(
                    "no driver set on this node supports {arch_name}{}; nearest sets: {}",
                    arch.note
                        .as_deref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default(),
                    nearest(fw)
                ),
            ));
        }
        match &flavour {
            Some((f, first)) if *f != arch.kernel_modules => {
                return Err(Error::refused(
                    format!("GPU {} ({})", describe(d), model.name),
                    format!(
                        "needs the {} kernel modules but {first} needs the {f} ones; one node \
                         loads one flavour: put these GPUs in different nodes",
                        arch.kernel_modules
                    ),
                ));
            }
            Some(_) => {}
            None => flavour = Some((arch.kernel_modules, model.name.clone())),
        }
        candidates = Some(match candidates {
            None => sets,
            Some(prev) => prev.into_iter().filter(|s| sets.contains(s)).collect(),
        });
        chosen.push(ChosenGpu {
            address: d.address.clone(),
            device_id: format!("0x{:04x}", d.device),
            model: model.name.clone(),
            architecture: arch_name.clone(),
        });
    }
    let models: Vec<&str> = chosen.iter().map(|c| c.model.as_str()).collect();
    let Some(set_name) = candidates.and_then(|c| c.into_iter().next()) else {
        return Err(Error::refused(
            "GPUs",
            format!(
                "no one driver set serves all of {}; nearest sets: {}",
                models.join(", "),
                nearest(fw)
            ),
        ));
    };
    let Some(set) = fw.sets.get(&set_name) else {
        return Err(Error::invalid(table, format!("no set {set_name:?}")));
    };
    let (flavour, _) = flavour.unwrap_or((ModuleFlavour::Open, String::new()));
    let module_package = set.module_package(flavour).unwrap_or_default().to_string();
    let mut warnings = Vec::new();
    if !found.nvswitches.is_empty() {
        match &set.fabric_manager {
            Some(fm) if !fm.in_debian => warnings.push(format!(
                "{} NVSwitch chips ({}): fabric manager {} {} is needed and is not a Debian \
                 package; bring it as a signed bundle, else CUDA reports \"system not yet \
                 initialized\"",
                found.nvswitches.len(),
                switch_names(fw, found),
                fm.package,
                fm.version
            )),
            Some(_) => {}
            None => warnings.push(format!(
                "{} NVSwitch chips but set {} names no fabric manager",
                found.nvswitches.len(),
                set.name()
            )),
        }
    }
    Ok(Some(Choice {
        set: set.name().to_string(),
        driver_version: set.version().to_string(),
        kernel_modules: flavour,
        module_package,
        gpus: chosen,
        nvswitches: found.nvswitches.len(),
        warnings,
    }))
}
