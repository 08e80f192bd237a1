//! NVIDIA devices as the kernel lists them under `/sys/bus/pci/devices`
//! (taken under the root): GPUs are vendor 0x10de with PCI class display
//! VGA (0x0300) or 3D controller (0x0302); NVSwitch chips are vendor
//! 0x10de, class bridge/other (0x0680).

use std::fs;
use std::path::Path;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use super::api::GpuDevice;
use crate::layout::Root;

pub const NVIDIA: u16 = 0x10de;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciDevice {
    /// `0000:1b:00.0`
    pub address: String,
    pub vendor: u16,
    pub device: u16,
    /// The 24-bit class code, e.g. 0x030200.
    pub class: u32,
    /// The bound kernel driver, if any (`nvidia`, `nouveau`, `vfio-pci`).
    pub driver: Option<String>,
    pub link: Option<PcieLink>,
}

/// The PCIe link from sysfs (`current_link_*`, `max_link_*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PcieLink {
    pub current_speed: String,
    pub max_speed: String,
    pub current_width: u32,
    pub max_width: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    pub gpus: Vec<PciDevice>,
    pub nvswitches: Vec<PciDevice>,
    /// Display devices of other vendors (a BMC's VGA chip), for the report.
    pub other_display: Vec<PciDevice>,
}

impl Detected {
    /// The PCI addresses of the GPUs here that are not among `devices`
    /// (what the driver sees).
    pub fn not_seen(&self, devices: &[GpuDevice]) -> Vec<&str> {
        self.gpus
            .iter()
            .filter(|p| !devices.iter().any(|d| d.pci_bus_id == p.address))
            .map(|p| p.address.as_str())
            .collect()
    }
}

fn is_display(class: u32) -> bool {
    matches!(class >> 8, 0x0300 | 0x0302)
}

fn is_bridge_other(class: u32) -> bool {
    class >> 8 == 0x0680
}

/// Sysfs holds the PCI devices as links (`0000:1b:00.0 ->
/// ../../../devices/…`); every file is resolved inside the root on its own,
/// so a link on a mounted disk cannot make the scan read the host's.
const DEVICES: &str = "/sys/bus/pci/devices";

/// A hex number (`0x10de`) that fits a `T`: 16 bits for an ID, 32 for the class.
fn read_hex<T: TryFrom<u32>>(root: &Root, dir: &Path, name: &str) -> Result<T> {
    let path = root.host(&dir.join(name))?;
    let text = fs::read_to_string(&path).at("reading", &path)?;
    let t = text.trim();
    let v = t
        .strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            Error::invalid(
                path.display().to_string(),
                format!("expected a hex number like 0x10de, found {t:?}"),
            )
        })?;
    T::try_from(v).map_err(|_| {
        Error::invalid(
            path.display().to_string(),
            format!("0x{v:x} is not a 16-bit ID"),
        )
    })
}

fn read_trimmed(root: &Root, dir: &Path, name: &str) -> Option<String> {
    let path = root.host(&dir.join(name)).ok()?;
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_link(root: &Root, dir: &Path) -> Option<PcieLink> {
    let read = |name| read_trimmed(root, dir, name);
    Some(PcieLink {
        current_speed: read("current_link_speed")?,
        max_speed: read("max_link_speed")?,
        current_width: read("current_link_width")?.parse().ok()?,
        max_width: read("max_link_width")?.parse().ok()?,
    })
}

/// The device at `dir` (a path of the node's namespace).
fn read_device(root: &Root, dir: &Path, address: &str) -> Result<PciDevice> {
    Ok(PciDevice {
        address: address.to_string(),
        vendor: read_hex(root, dir, "vendor")?,
        device: read_hex(root, dir, "device")?,
        class: read_hex(root, dir, "class")?,
        driver: root
            .resolve_entry(&dir.join("driver"))
            .ok()
            .and_then(|link| fs::read_link(link).ok())
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        link: read_link(root, dir),
    })
}

/// Scans the PCI devices under the root. No sysfs PCI directory means no
/// devices (a container, a chroot).
pub fn scan(root: &Root) -> Result<Detected> {
    let dir = root.host(Path::new(DEVICES))?;
    let mut out = Detected::default();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).at("reading", &dir),
    };
    let mut names: Vec<String> = Vec::new();
    for entry in entries {
        names.push(
            entry
                .at("reading", &dir)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    names.sort();
    for name in names {
        let d = read_device(root, &Path::new(DEVICES).join(&name), &name)?;
        match (
            d.vendor == NVIDIA,
            is_display(d.class),
            is_bridge_other(d.class),
        ) {
            (true, true, _) => out.gpus.push(d),
            (true, false, true) => out.nvswitches.push(d),
            (false, true, _) => out.other_display.push(d),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(root: &Path, addr: &str, vendor: &str, device: &str, class: &str) {
        let d = root.join("sys/bus/pci/devices").join(addr);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
        fs::write(d.join("device"), format!("{device}\n")).unwrap();
        fs::write(d.join("class"), format!("{class}\n")).unwrap();
    }

    #[test]
    fn finds_gpus_and_switches_and_skips_the_rest() {
        let t = tempfile::tempdir().unwrap();
        dev(t.path(), "0000:1b:00.0", "0x10de", "0x2330", "0x030200");
        dev(t.path(), "0000:05:00.0", "0x10de", "0x22a3", "0x068000");
        dev(t.path(), "0000:02:00.0", "0x1a03", "0x2000", "0x030000");
        dev(t.path(), "0000:00:1f.0", "0x8086", "0x1234", "0x060100");
        dev(t.path(), "0000:1b:00.1", "0x10de", "0x22ba", "0x040300");
        let found = scan(&Root::new(t.path())).unwrap();
        assert_eq!(found.gpus.len(), 1);
        assert_eq!(found.gpus[0].device, 0x2330);
        assert_eq!(found.nvswitches.len(), 1);
        assert_eq!(found.other_display.len(), 1);
    }

    #[test]
    fn garbage_in_sysfs_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        dev(t.path(), "0000:1b:00.0", "nvidia", "0x2330", "0x030200");
        let err = scan(&Root::new(t.path())).unwrap_err().to_string();
        assert!(err.contains("0000:1b:00.0/vendor"), "{err}");
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(scan(&Root::new(empty.path())).unwrap(), Detected::default());
    }

    #[test]
    fn a_device_linked_out_of_the_root_is_read_inside_it() {
        // The host's GPU, and a mounted disk whose sysfs links to it.
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        dev(&host, "0000:1b:00.0", "0x10de", "0x2330", "0x030200");
        let node = t.path().join("node");
        fs::create_dir_all(node.join("sys/bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(
            host.join("sys/bus/pci/devices/0000:1b:00.0"),
            node.join("sys/bus/pci/devices/0000:1b:00.0"),
        )
        .unwrap();
        let err = scan(&Root::new(&node)).unwrap_err();
        // The link's target is taken inside the root, where there is none.
        assert!(
            err.to_string().contains(&format!("{}/", node.display())),
            "{err}"
        );
        assert_eq!(err.exit_code(), 1);
    }
}
