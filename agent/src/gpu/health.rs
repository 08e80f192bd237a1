//! GPU health for the health loop and `status`: temperature, power, ECC
//! errors, retired pages / remapped rows, the PCIe link, XID events, and
//! whether NVML still sees every GPU PCI shows. A critical XID (48, 79, 94,
//! 95 by default) marks the GPU failed and drains the node: a marker file
//! in the state directory keeps the node drained across restarts until an
//! operator runs `owui-agent gpu undrain`.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use super::api::{Answered, GpuApi, GpuDevice, Sample, XidEvent};
use super::pci::{self, PciDevice};
use super::GpuConfig;
use crate::health::engine::State;
use crate::health::outcome::{CheckResult, Observation};
use crate::layout::Root;

pub const CHECK_NAME: &str = "gpu";
pub const CHECK_KIND: &str = "gpu";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drain {
    /// RFC 3339, UTC.
    pub since: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuEntry {
    pub index: u32,
    pub uuid: String,
    pub name: String,
    pub pci_bus_id: String,
    pub state: State,
    pub sample: Sample,
    /// What is wrong with this GPU, worst first.
    pub problems: Vec<String>,
}

/// The `gpu` section of the status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSection {
    pub state: State,
    pub detail: String,
    /// Set when a critical XID drained the node.
    pub drained: Option<Drain>,
    #[serde(flatten)]
    pub answered: Answered,
    pub gpus: Vec<GpuEntry>,
}

impl GpuSection {
    pub fn unknown(detail: &str) -> GpuSection {
        GpuSection {
            state: State::Unknown,
            detail: detail.to_string(),
            drained: None,
            answered: Answered::default(),
            gpus: Vec::new(),
        }
    }
}

/// The last GPU check's findings, for `status` and the metrics, which are
/// put together in the same process that ran the check.
static LAST: Mutex<Option<GpuSection>> = Mutex::new(None);

fn remember(section: &GpuSection) {
    *LAST.lock().unwrap_or_else(|p| p.into_inner()) = Some(section.clone());
}

/// The status section: the last check's findings, or "not checked yet".
pub fn section() -> GpuSection {
    LAST.lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .unwrap_or_else(|| GpuSection::unknown("the GPU check has not run yet"))
}

fn drain_file(root: &Root, cfg: &GpuConfig) -> Result<PathBuf> {
    root.host(&cfg.state_dir.join("drained.json"))
}

pub fn read_drain(root: &Root, cfg: &GpuConfig) -> Result<Option<Drain>> {
    let path = drain_file(root, cfg)?;
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::invalid(path.display().to_string(), e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("reading", &path),
    }
}

fn write_drain(root: &Root, cfg: &GpuConfig, drain: &Drain) -> Result<()> {
    let path = drain_file(root, cfg)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("creating", dir)?;
    }
    let text = serde_json::to_string_pretty(drain)
        .map_err(|e| Error::internal("serialising the drain marker", e.to_string()))?;
    fs::write(&path, text).at("writing the drain marker", &path)?;
    tracing::error!(reason = %drain.reason, "node drained");
    Ok(())
}

/// `owui-agent gpu undrain`: the operator has dealt with the GPU.
pub fn undrain(root: &Root) -> Result<Option<Drain>> {
    let cfg = super::load_config(root)?;
    let was = read_drain(root, &cfg)?;
    if was.is_some() {
        let path = drain_file(root, &cfg)?;
        fs::remove_file(&path).at("removing the drain marker", &path)?;
    }
    Ok(was)
}

fn rank(s: State) -> u8 {
    match s {
        State::Healthy => 0,
        State::Unknown => 1,
        State::Degraded => 2,
        State::Failed => 3,
    }
}

fn worse(a: State, b: State) -> State {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// Judges one GPU's sample (and its PCIe link as sysfs shows it).
pub fn judge(cfg: &GpuConfig, s: &Sample, link: Option<&pci::PcieLink>) -> (State, Vec<String>) {
    let mut state = State::Healthy;
    let mut problems = Vec::new();
    let mut flag = |level: State, what: String| {
        state = worse(state, level);
        problems.push(what);
    };
    if let Some(t) = s.temperature_c {
        if t >= cfg.temperature_fail_c {
            flag(
                State::Failed,
                format!(
                    "temperature {t} °C (fails at {} °C)",
                    cfg.temperature_fail_c
                ),
            );
        } else if t >= cfg.temperature_warn_c {
            flag(
                State::Degraded,
                format!(
                    "temperature {t} °C (warns at {} °C)",
                    cfg.temperature_warn_c
                ),
            );
        }
    }
    if s.remapped_rows_failure == Some(true) {
        flag(
            State::Failed,
            "row remapping failed: the GPU needs service".into(),
        );
    }
    if let Some(n) = s.ecc_uncorrected_volatile.filter(|n| *n > 0) {
        flag(
            State::Degraded,
            format!("{n} uncorrectable ECC errors since the driver loaded"),
        );
    }
    if s.remapped_rows_pending == Some(true) {
        flag(
            State::Degraded,
            "rows are waiting to be remapped: reset the GPU when drained".into(),
        );
    }
    if s.retired_pages_pending == Some(true) {
        flag(
            State::Degraded,
            "pages are waiting to be retired: reload the driver when drained".into(),
        );
    }
    if let (Some(p), Some(limit)) = (s.power_w, s.power_limit_w) {
        if limit > 0.0 && p > limit * 1.05 {
            flag(
                State::Degraded,
                format!("power {p:.0} W over the {limit:.0} W limit"),
            );
        }
    }
    // Fewer lanes than slot and card allow is a seating or riser fault; a
    // lower speed alone is normal (GPUs drop the link speed when idle).
    let width = match (s.pcie_width_current, s.pcie_width_max) {
        (Some(c), Some(m)) => Some((c, m)),
        _ => link.map(|l| (l.current_width, l.max_width)),
    };
    if let Some((c, m)) = width.filter(|(c, m)| c < m) {
        flag(State::Degraded, format!("PCIe link degraded: x{c} of x{m}"));
    }
    (state, problems)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// One pass: asks the GPU interface, compares with PCI, handles XIDs and
/// the drain marker. `Err` only when the checker itself broke.
pub fn inspect(root: &Root, cfg: &GpuConfig, api: &mut dyn GpuApi) -> Result<GpuSection> {
    let found = pci::scan(root)?;
    let driver = api.driver_version()?;
    let devices: Vec<GpuDevice> = api.devices()?;
    let xids: Vec<XidEvent> = api.xid_events()?;
    let mut overall = State::Healthy;
    let mut notes = Vec::new();
    let mut gpus = Vec::new();
    for d in &devices {
        let sample = api.sample(d)?;
        let link = found
            .gpus
            .iter()
            .find(|p: &&PciDevice| p.address == d.pci_bus_id)
            .and_then(|p| p.link.as_ref());
        let (mut state, mut problems) = judge(cfg, &sample, link);
        for x in xids.iter().filter(|x| x.index == d.index) {
            if cfg.critical_xids.contains(&x.xid) {
                state = State::Failed;
                problems.insert(0, format!("critical XID {}", x.xid));
            } else {
                problems.push(format!("XID {} (not critical)", x.xid));
            }
        }
        overall = worse(overall, state);
        gpus.push(GpuEntry {
            index: d.index,
            uuid: d.uuid.clone(),
            name: d.name.clone(),
            pci_bus_id: d.pci_bus_id.clone(),
            state,
            sample,
            problems,
        });
    }
    if found.gpus.len() != devices.len() {
        overall = State::Failed;
        let missing = found.not_seen(&devices);
        notes.push(format!(
            "PCI shows {} NVIDIA GPUs, the driver sees {}{}",
            found.gpus.len(),
            devices.len(),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" (missing: {})", missing.join(", "))
            }
        ));
    }
    let critical: Vec<String> = xids
        .iter()
        .filter(|x| cfg.critical_xids.contains(&x.xid))
        .map(|x| {
            let uuid = devices
                .iter()
                .find(|d| d.index == x.index)
                .map_or("?", |d| d.uuid.as_str());
            format!("XID {} on GPU {} ({uuid})", x.xid, x.index)
        })
        .collect();
    let mut drained = read_drain(root, cfg)?;
    if !critical.is_empty() && drained.is_none() {
        let d = Drain {
            since: now(),
            reason: critical.join(", "),
        };
        write_drain(root, cfg, &d)?;
        drained = Some(d);
    }
    if let Some(d) = &drained {
        overall = State::Failed;
        notes.insert(
            0,
            format!(
                "node DRAINED since {}: {}; clear with `owui-agent gpu undrain` once serviced",
                d.since, d.reason
            ),
        );
    }
    let bad: Vec<String> = gpus
        .iter()
        .filter(|g| !g.problems.is_empty())
        .map(|g| format!("GPU {}: {}", g.index, g.problems.join(", ")))
        .collect();
    notes.extend(bad);
    let detail = if notes.is_empty() {
        let hottest = gpus.iter().filter_map(|g| g.sample.temperature_c).max();
        format!(
            "{} GPUs healthy, driver {driver}{}",
            gpus.len(),
            hottest
                .map(|t| format!(", hottest {t} °C"))
                .unwrap_or_default()
        )
    } else {
        notes.join("; ")
    };
    Ok(GpuSection {
        state: overall,
        detail,
        drained,
        answered: Answered::by(api, driver),
        gpus,
    })
}

/// The health-loop check: runs [`inspect`] and remembers the result for
/// `status` and the metrics.
pub fn check(root: &Root, cfg: &GpuConfig) -> CheckResult {
    let found = pci::scan(root).map_err(|e| e.to_string())?;
    if found.gpus.is_empty() && super::fixture_path(root).is_none() {
        let s = GpuSection {
            state: State::Failed,
            detail: "no NVIDIA GPU on the PCI bus of a GPU-role node".into(),
            ..GpuSection::unknown("")
        };
        remember(&s);
        return Ok(Observation::Fail(s.detail));
    }
    let outcome = super::open_api(root, cfg).and_then(|mut api| inspect(root, cfg, api.as_mut()));
    match outcome {
        Ok(s) => {
            remember(&s);
            Ok(match s.state {
                State::Healthy => Observation::Ok(s.detail),
                State::Degraded => Observation::Warn(s.detail),
                State::Failed | State::Unknown => Observation::Fail(s.detail),
            })
        }
        Err(e) => {
            let mut s = GpuSection::unknown(&e.to_string());
            s.drained = read_drain(root, cfg).ok().flatten();
            remember(&s);
            Err(e.to_string())
        }
    }
}

/// The catalog's entry point: reads the `[gpu]` config, then [`check`].
pub fn check_node(root: &Root) -> CheckResult {
    let cfg = super::load_config(root).map_err(|e| e.to_string())?;
    check(root, &cfg)
}

/// A gauge: name, help text, and how to read it from a sample.
type Gauge = (&'static str, &'static str, fn(&Sample) -> Option<f64>);

/// GPU gauges in the Prometheus text format, from the last check.
pub fn metrics_text() -> String {
    let Some(s) = LAST.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
        return String::new();
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP owui_gpu_drained 1 when a critical XID drained the node.\n# TYPE owui_gpu_drained gauge\nowui_gpu_drained {}",
        u8::from(s.drained.is_some())
    );
    let gauges: [Gauge; 5] = [
        ("owui_gpu_temperature_celsius", "GPU temperature.", |s| {
            s.temperature_c.map(f64::from)
        }),
        ("owui_gpu_power_watts", "GPU power draw.", |s| s.power_w),
        (
            "owui_gpu_ecc_uncorrected_volatile",
            "Uncorrectable ECC errors since the driver loaded.",
            |s| s.ecc_uncorrected_volatile.map(|v| v as f64),
        ),
        (
            "owui_gpu_remapped_rows_pending",
            "1 when rows wait for remapping.",
            |s| s.remapped_rows_pending.map(|v| f64::from(u8::from(v))),
        ),
        (
            "owui_gpu_pcie_link_width",
            "Current PCIe link width (lanes).",
            |s| s.pcie_width_current.map(f64::from),
        ),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for g in &s.gpus {
            if let Some(v) = get(&g.sample) {
                let _ = writeln!(
                    out,
                    "{name}{{gpu=\"{}\",uuid=\"{}\"}} {v}",
                    g.index,
                    g.uuid.replace('"', "")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP owui_gpu_healthy 1 when the GPU has no problem.\n# TYPE owui_gpu_healthy gauge"
    );
    for g in &s.gpus {
        let _ = writeln!(
            out,
            "owui_gpu_healthy{{gpu=\"{}\",uuid=\"{}\"}} {}",
            g.index,
            g.uuid.replace('"', ""),
            u8::from(g.state == State::Healthy)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GpuConfig {
        GpuConfig::default()
    }

    #[test]
    fn thresholds_and_link() {
        let ok = Sample {
            temperature_c: Some(40),
            power_w: Some(300.0),
            power_limit_w: Some(700.0),
            ecc_uncorrected_volatile: Some(0),
            pcie_width_current: Some(16),
            pcie_width_max: Some(16),
            ..Sample::default()
        };
        assert_eq!(judge(&cfg(), &ok, None), (State::Healthy, vec![]));
        let hot = Sample {
            temperature_c: Some(88),
            ..ok.clone()
        };
        assert_eq!(judge(&cfg(), &hot, None).0, State::Degraded);
        let fire = Sample {
            temperature_c: Some(96),
            ..ok.clone()
        };
        assert_eq!(judge(&cfg(), &fire, None).0, State::Failed);
        let narrow = Sample {
            pcie_width_current: Some(8),
            ..ok.clone()
        };
        let (s, p) = judge(&cfg(), &narrow, None);
        assert_eq!(s, State::Degraded);
        assert!(p[0].contains("x8 of x16"), "{p:?}");
        let remap = Sample {
            remapped_rows_failure: Some(true),
            ..ok.clone()
        };
        assert_eq!(judge(&cfg(), &remap, None).0, State::Failed);
        // A GeForce card reports no ECC at all: that is not a problem.
        let geforce = Sample {
            temperature_c: Some(50),
            ..Sample::default()
        };
        assert_eq!(judge(&cfg(), &geforce, None).0, State::Healthy);
    }
}
