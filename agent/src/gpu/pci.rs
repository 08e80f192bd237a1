//! NVIDIA devices as the kernel lists them under `/sys/bus/pci/devices`
//! (taken under the root): GPUs are vendor 0x10de with PCI class display
//! VGA (0x0300) or 3D controller (0x0302); NVSwitch chips are vendor
//! 0x10de, class bridge/other (0x0680).

use std::fs;
use std::path::Path;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

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

fn is_display(class: u32) -> bool {
    matches!(class >> 8, 0x0300 | 0x0302)
}

fn is_bridge_other(class: u32) -> bool {
    class >> 8 == 0x0680
}

fn read_hex(dir: &Path, name: &str) -> Result<u32> {
    let path = dir.join(name);
    let text = fs::read_to_string(&path).at("reading", &path)?;
    let t = text.trim();
    t.strip_prefix("0x")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            Error::invalid(
                path.display().to_string(),
                format!("expected a hex number like 0x10de, found {t:?}"),
            )
        })
}

fn read_trimmed(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_link(dir: &Path) -> Option<PcieLink> {
    Some(PcieLink {
        current_speed: read_trimmed(&dir.join("current_link_speed"))?,
        max_speed: read_trimmed(&dir.join("max_link_speed"))?,
        current_width: read_trimmed(&dir.join("current_link_width"))?
            .parse()
            .ok()?,
        max_width: read_trimmed(&dir.join("max_link_width"))?.parse().ok()?,
    })
}

fn read_device(dir: &Path, address: &str) -> Result<PciDevice> {
    let vendor = read_hex(dir, "vendor")?;
    let device = read_hex(dir, "device")?;
    let class = read_hex(dir, "class")?;
    let too_big = |name: &str, v: u32| {
        Error::invalid(
            dir.join(name).display().to_string(),
            format!("0x{v:x} is not a 16-bit ID"),
        )
    };
    Ok(PciDevice {
        address: address.to_string(),
        vendor: u16::try_from(vendor).map_err(|_| too_big("vendor", vendor))?,
        device: u16::try_from(device).map_err(|_| too_big("device", device))?,
        class,
        driver: fs::read_link(dir.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        link: read_link(dir),
    })
}

/// Scans the PCI devices under the root. No sysfs PCI directory means no
/// devices (a container, a chroot).
pub fn scan(root: &Root) -> Result<Detected> {
    let dir = root.host(Path::new("/sys/bus/pci/devices"));
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
        let d = read_device(&dir.join(&name), &name)?;
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
}
