//! Free space on the node's filesystems, one rule for the `disk:<path>`
//! checks and for the per-partition lines of `status`:
//!
//! - a writable filesystem is degraded once its used share reaches
//!   `disk_warn_percent` or its free space falls below `disk_warn_free_mib`,
//!   failed at `disk_fail_percent` or below `disk_fail_free_mib` (a share
//!   alone says nothing on a small disk, a floor alone nothing on a big one);
//! - a read-only one (the verity root, the ESP) cannot fill up on the node:
//!   it only reports its size;
//! - a partition smaller than the least size the image's systemd-repart
//!   definition asks for its label has failed: the data partition on a disk
//!   too small for first boot to grow it.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::engine::State;
use super::outcome::{CheckResult, Observation};
use crate::layout::Root;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub warn_percent: f64,
    pub fail_percent: f64,
    pub warn_free_bytes: u64,
    pub fail_free_bytes: u64,
}

/// What statvfs says of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    /// Free to unprivileged writers (df's "Avail": root's reserve is not).
    pub available: u64,
    /// Size less every free block.
    pub used: u64,
    pub read_only: bool,
}

impl Usage {
    /// The used share as df counts it: root's reserve is unavailable.
    pub fn used_percent(&self) -> f64 {
        let counted = self.used + self.available;
        if counted == 0 {
            100.0
        } else {
            100.0 * self.used as f64 / counted as f64
        }
    }
}

pub fn usage(path: &Path) -> Result<Usage, String> {
    let st =
        nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {}: {e}", path.display()))?;
    let unit = st.fragment_size();
    let size = st.blocks().saturating_mul(unit);
    Ok(Usage {
        size,
        available: st.blocks_available().saturating_mul(unit),
        used: size.saturating_sub(st.blocks_free().saturating_mul(unit)),
        read_only: st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
    })
}

/// Bytes as people read them: `512 MiB`, `3.9 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The partition under a filesystem, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    /// The kernel's name (`vda4`, `dm-0`).
    pub name: Option<String>,
    /// The GPT partition label (`owui-data`).
    pub label: Option<String>,
    pub size: Option<u64>,
}

/// The least size the image asks of the partition labelled `label`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minimum {
    pub label: String,
    pub bytes: u64,
    /// The definition it comes from, for the message.
    pub from: PathBuf,
}

/// Judges one filesystem: the rule in the module's comment.
pub fn judge(u: &Usage, device: &Device, minimum: Option<&Minimum>, l: &Limits) -> Observation {
    let pct = u.used_percent();
    let amount = format!(
        "{} free of {} ({pct:.0} % used)",
        human(u.available),
        human(u.size)
    );
    let short = minimum.and_then(|m| {
        let size = device.size?;
        (device.label.as_deref() == Some(m.label.as_str()) && size < m.bytes).then_some((m, size))
    });
    if let Some((m, size)) = short {
        return Observation::Fail(format!(
            "{amount}; partition {} is {}, less than the {} {} asks for: the disk is too small \
             for first boot to grow it (journalctl -u systemd-repart)",
            m.label,
            human(size),
            human(m.bytes),
            m.from.display()
        ));
    }
    if u.read_only {
        return Observation::Ok(format!("read-only, {amount}"));
    }
    let floor = |limit: u64| format!("{amount}, below the {} floor", human(limit));
    if pct >= l.fail_percent {
        Observation::Fail(amount)
    } else if u.available < l.fail_free_bytes {
        Observation::Fail(floor(l.fail_free_bytes))
    } else if pct >= l.warn_percent {
        Observation::Warn(amount)
    } else if u.available < l.warn_free_bytes {
        Observation::Warn(floor(l.warn_free_bytes))
    } else {
        Observation::Ok(amount)
    }
}

/// Where the facts about mounts and block devices are read: the running
/// kernel's, or fixtures in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub mountinfo: PathBuf,
    /// `/sys/dev/block`: one directory per `major:minor`.
    pub sys_dev_block: PathBuf,
    /// The image's repart.d definition of the data partition.
    pub data_definition: PathBuf,
}

impl Sources {
    pub fn of(root: &Root) -> owui_bundle::Result<Sources> {
        Ok(Sources {
            mountinfo: "/proc/self/mountinfo".into(),
            sys_dev_block: "/sys/dev/block".into(),
            data_definition: data_definition(root)?,
        })
    }
}

/// Written by the builder (builder/src/image/rootfs.rs).
pub const DATA_DEFINITION: &str = "/usr/lib/repart.d/50-owui-data.conf";
/// The same definition with a lab seed's lower minimum, written by the
/// first-boot gate; systemd-repart reads it in place of the image's.
pub const DATA_DEFINITION_LAB: &str = "/run/repart.d/50-owui-data.conf";

/// The data partition's definition in force: the lab one when the gate
/// wrote it, else the image's.
pub fn data_definition(root: &Root) -> owui_bundle::Result<PathBuf> {
    let lab = root.host(Path::new(DATA_DEFINITION_LAB))?;
    if lab.exists() {
        return Ok(lab);
    }
    root.host(Path::new(DATA_DEFINITION))
}

/// The mount holding `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// `major:minor`.
    dev: String,
    fstype: String,
    /// The filesystem itself is read-only (its super options), not merely
    /// this view of it: the agent's unit sees every path read-only
    /// (`ProtectSystem=strict`), and /var must still count as writable.
    read_only: bool,
}

fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    let unescape = |s: &str| {
        s.replace("\\040", " ")
            .replace("\\011", "\t")
            .replace("\\012", "\n")
            .replace("\\134", "\\")
    };
    mountinfo
        .lines()
        .filter_map(|line| {
            let (front, back) = line.split_once(" - ")?;
            let fields: Vec<&str> = front.split(' ').collect();
            let point = PathBuf::from(unescape(fields.get(4)?));
            let mut back = back.split(' ');
            let fstype = back.next()?;
            let super_options = back.nth(1).unwrap_or_default();
            let mount = Mount {
                dev: fields[2].to_string(),
                fstype: fstype.to_string(),
                read_only: super_options.split(',').any(|o| o == "ro"),
            };
            path.starts_with(&point).then_some((point, mount))
        })
        // The last of the deepest: a later mount on the same point hides
        // the earlier one.
        .max_by_key(|(point, _)| point.components().count())
        .map(|(_, mount)| mount)
}

fn device(sys_dev_block: &Path, dev: &str) -> Device {
    let dir = sys_dev_block.join(dev);
    let uevent = fs::read_to_string(dir.join("uevent")).unwrap_or_default();
    let field = |name: &str| {
        uevent
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let size = fs::read_to_string(dir.join("size"))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|sectors| sectors.saturating_mul(512));
    Device {
        name: field("DEVNAME"),
        label: field("PARTNAME"),
        size,
    }
}

/// `Label=` and `SizeMinBytes=` of a repart.d definition; None when there
/// is none (not an image) or it has no minimum.
pub fn minimum(definition: &Path) -> Option<Minimum> {
    let text = fs::read_to_string(definition).ok()?;
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
    };
    let size = value("SizeMinBytes")?;
    let (digits, shift) = match size.chars().last()? {
        'K' => (&size[..size.len() - 1], 10),
        'M' => (&size[..size.len() - 1], 20),
        'G' => (&size[..size.len() - 1], 30),
        'T' => (&size[..size.len() - 1], 40),
        _ => (size, 0),
    };
    Some(Minimum {
        label: value("Label")?.to_string(),
        bytes: digits.parse::<u64>().ok()?.checked_mul(1 << shift)?,
        from: definition.to_path_buf(),
    })
}

/// One line of `status`'s partition list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// The path as configured (`[health] disks`).
    pub mount: String,
    pub device: Option<String>,
    pub label: Option<String>,
    pub fstype: Option<String>,
    pub read_only: bool,
    /// The filesystem's size and what is free in it (df's Size and Avail).
    pub size_bytes: u64,
    pub free_bytes: u64,
    pub used_percent: f64,
    /// The partition's size, and the least the image asks of it.
    pub partition_bytes: Option<u64>,
    pub minimum_bytes: Option<u64>,
    pub state: State,
    pub detail: String,
}

/// Looks at the filesystem holding `host_path` (`mount` as configured).
pub fn partition(mount: &Path, host_path: &Path, limits: &Limits, src: &Sources) -> Partition {
    let canonical = fs::canonicalize(host_path).unwrap_or_else(|_| host_path.to_path_buf());
    let info = fs::read_to_string(&src.mountinfo).unwrap_or_default();
    let mount_info = mount_of(&info, &canonical);
    let device = mount_info
        .as_ref()
        .map(|m| device(&src.sys_dev_block, &m.dev))
        .unwrap_or_default();
    let min = minimum(&src.data_definition);
    let (usage, state, detail) = match usage(host_path) {
        Ok(mut u) => {
            if let Some(m) = &mount_info {
                u.read_only = m.read_only;
            }
            let (state, detail) = match judge(&u, &device, min.as_ref(), limits) {
                Observation::Ok(d) => (State::Healthy, d),
                Observation::Warn(d) => (State::Degraded, d),
                Observation::Fail(d) => (State::Failed, d),
            };
            (Some(u), state, detail)
        }
        Err(e) => (None, State::Unknown, e),
    };
    let applies = min
        .filter(|m| device.label.as_deref() == Some(m.label.as_str()))
        .map(|m| m.bytes);
    Partition {
        mount: mount.display().to_string(),
        device: device.name,
        label: device.label,
        fstype: mount_info.map(|m| m.fstype),
        read_only: usage.is_some_and(|u| u.read_only),
        size_bytes: usage.map_or(0, |u| u.size),
        free_bytes: usage.map_or(0, |u| u.available),
        used_percent: usage.map_or(0.0, |u| (u.used_percent() * 10.0).round() / 10.0),
        partition_bytes: device.size,
        minimum_bytes: applies,
        state,
        detail,
    }
}

/// The `disk:<path>` check: [`partition`]'s verdict.
pub fn check(mount: &Path, host_path: &Path, limits: &Limits, src: &Sources) -> CheckResult {
    let p = partition(mount, host_path, limits, src);
    match p.state {
        State::Healthy => Ok(Observation::Ok(p.detail)),
        State::Degraded => Ok(Observation::Warn(p.detail)),
        State::Failed => Ok(Observation::Fail(p.detail)),
        State::Unknown => Err(p.detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    const LIMITS: Limits = Limits {
        warn_percent: 85.0,
        fail_percent: 95.0,
        warn_free_bytes: 2 * GIB,
        fail_free_bytes: 256 * MIB,
    };

    fn fs(size: u64, available: u64) -> Usage {
        Usage {
            size,
            available,
            used: size - available,
            read_only: false,
        }
    }

    fn verdict(o: Observation) -> (&'static str, String) {
        match o {
            Observation::Ok(d) => ("ok", d),
            Observation::Warn(d) => ("warn", d),
            Observation::Fail(d) => ("fail", d),
        }
    }

    /// One case per edge of the rule: the share and the floor, each on
    /// both sides of the warning and the failure limits.
    #[test]
    fn free_space_is_judged_by_share_and_by_floor() {
        let none = Device::default();
        let cases = [
            (
                "big and empty",
                fs(100 * GIB, 90 * GIB),
                "ok",
                "90.0 GiB free of 100.0 GiB (10 % used)",
            ),
            (
                "share at the warning",
                fs(100 * GIB, 15 * GIB),
                "warn",
                "(85 % used)",
            ),
            (
                "share at the failure",
                fs(100 * GIB, 5 * GIB),
                "fail",
                "(95 % used)",
            ),
            (
                "small disk under the floor",
                fs(3 * GIB, 3 * GIB / 2),
                "warn",
                "below the 2.0 GiB floor",
            ),
            (
                "just above the floor",
                fs(10 * GIB, 2 * GIB + MIB),
                "ok",
                "(80 % used)",
            ),
            (
                "under the failure floor",
                fs(1024 * MIB, 200 * MIB),
                "fail",
                "below the 256.0 MiB floor",
            ),
        ];
        for (name, u, want, says) in cases {
            let (got, detail) = verdict(judge(&u, &none, None, &LIMITS));
            assert_eq!(got, want, "{name}: {detail}");
            assert!(detail.contains(says), "{name}: {detail}");
        }
        let roomy = fs(400 * GIB, 300 * GIB);
        assert_eq!(verdict(judge(&roomy, &none, None, &LIMITS)).0, "ok");
        // A full read-only filesystem (erofs reports nothing free) is fine.
        let root = Usage {
            read_only: true,
            ..fs(800 * MIB, 0)
        };
        let (got, detail) = verdict(judge(&root, &none, None, &LIMITS));
        assert_eq!(
            (got, detail.starts_with("read-only, 0 B free")),
            ("ok", true)
        );
    }

    /// The data partition left at its built size on a disk too small for
    /// repart's minimum fails, naming the definition; other partitions and
    /// a grown one do not.
    #[test]
    fn a_partition_below_the_images_minimum_fails() {
        let min = Minimum {
            label: "owui-data".into(),
            bytes: 8 * GIB,
            from: DATA_DEFINITION.into(),
        };
        let data = |size| Device {
            name: Some("vda4".into()),
            label: Some("owui-data".into()),
            size: Some(size),
        };
        let roomy = fs(100 * GIB, 90 * GIB);
        let (got, detail) = verdict(judge(&roomy, &data(300 * MIB), Some(&min), &LIMITS));
        assert_eq!(got, "fail");
        assert!(
            detail.contains("300.0 MiB, less than the 8.0 GiB") && detail.contains(DATA_DEFINITION),
            "{detail}"
        );
        assert_eq!(
            verdict(judge(&roomy, &data(8 * GIB), Some(&min), &LIMITS)).0,
            "ok"
        );
        let esp = Device {
            label: Some("owui-esp".into()),
            ..data(128 * MIB)
        };
        assert_eq!(verdict(judge(&roomy, &esp, Some(&min), &LIMITS)).0, "ok");
    }

    /// Mount, device and label come from mountinfo and sysfs, the minimum
    /// from the repart.d definition the builder writes.
    #[test]
    fn a_partition_is_found_through_mountinfo_and_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mountinfo = d.join("mountinfo");
        fs::write(
            &mountinfo,
            format!(
                "22 1 253:0 / / ro,relatime - erofs /dev/mapper/root ro\n\
                 30 22 254:4 / {var} rw,nodev - ext4 /dev/vda4 rw\n\
                 40 22 254:4 / {var} ro,nodev shared:9 - ext4 /dev/vda4 rw,errors=remount-ro\n\
                 31 22 0:40 / /tmp rw - tmpfs tmpfs rw\n",
                var = d.display()
            ),
        )
        .unwrap();
        let sys = d.join("sys");
        fs::create_dir_all(sys.join("254:4")).unwrap();
        fs::write(
            sys.join("254:4/uevent"),
            "MAJOR=254\nMINOR=4\nDEVNAME=vda4\nDEVTYPE=partition\nPARTN=4\nPARTNAME=owui-data\n",
        )
        .unwrap();
        fs::write(sys.join("254:4/size"), "614400\n").unwrap();
        let definition = d.join("50-owui-data.conf");
        fs::write(
            &definition,
            "# comment\n[Partition]\nType=8a5f0b7c-3e2d-4c61-9b7e-6f1d2c3b4a59\nLabel=owui-data\nSizeMinBytes=8192M\n",
        )
        .unwrap();
        let src = Sources {
            mountinfo,
            sys_dev_block: sys,
            data_definition: definition,
        };
        let p = partition(Path::new("/var"), d, &LIMITS, &src);
        assert_eq!(p.mount, "/var");
        assert_eq!(p.device.as_deref(), Some("vda4"));
        assert_eq!(p.label.as_deref(), Some("owui-data"));
        assert_eq!(p.fstype.as_deref(), Some("ext4"));
        // Seen read-only through a read-only bind mount (the agent's
        // ProtectSystem=strict), the filesystem is writable all the same.
        assert!(!p.read_only);
        assert_eq!(p.partition_bytes, Some(300 * MIB));
        assert_eq!(p.minimum_bytes, Some(8 * GIB));
        assert_eq!(p.state, State::Failed, "{}", p.detail);
        assert!(p.size_bytes > 0);
        assert!(matches!(
            check(Path::new("/var"), d, &LIMITS, &src),
            Ok(Observation::Fail(_))
        ));
        // No such path: the checker cannot tell.
        let absent = d.join("absent");
        assert!(check(Path::new("/x"), &absent, &LIMITS, &src).is_err());
    }
}
