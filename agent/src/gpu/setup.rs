//! `owui-agent gpu setup`: idempotent, run by hand or at boot for GPU roles.
//! Finds the NVIDIA GPUs on the PCI bus, picks the pinned driver set, loads
//! its kernel modules, checks through NVML that the running driver is the
//! set's and sees every GPU PCI shows, makes the device nodes and their
//! `/dev/char` links, writes the CDI spec, and points the container
//! runtimes at it. With no NVIDIA GPU it says so and succeeds.

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::command::Cmd;
use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};

use super::api::{Answered, GpuDevice};
use super::choice::{self, Choice};
use super::containers_env::{self, EnvChange};
use super::devnodes::{self, Nodes};
use super::firmware::Firmware;
use super::runtime_config::{self, Change};
use super::{cdi, open_api, pci};
use crate::layout::Root;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleStep {
    pub module: String,
    /// `already loaded`, `loaded`, or why it was not.
    pub action: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SetupReport {
    /// `configured` or `no-gpu`.
    pub outcome: String,
    pub detail: String,
    pub choice: Option<Choice>,
    pub modules: Vec<ModuleStep>,
    #[serde(flatten)]
    pub answered: Answered,
    pub devices: Vec<GpuDevice>,
    pub nodes: Option<Nodes>,
    pub cdi_spec: Option<PathBuf>,
    /// `written` or `unchanged`.
    pub cdi_action: Option<String>,
    pub cdi_devices: Vec<String>,
    pub runtimes: Vec<Change>,
    /// What the Ollama/vLLM units are told (`--device=…` or nothing).
    pub containers: EnvChange,
    pub warnings: Vec<String>,
}

/// The kernel's name for a module (`nvidia-uvm` is `nvidia_uvm`).
fn loaded(root: &Root, module: &str) -> Result<bool> {
    Ok(root
        .host(&Path::new("/sys/module").join(module.replace('-', "_")))?
        .exists())
}

fn load_modules(root: &Root, modules: &[String]) -> Result<Vec<ModuleStep>> {
    let live = root.path() == Path::new("/");
    let mut steps = Vec::new();
    for m in modules {
        let action = if loaded(root, m)? {
            "already loaded".to_string()
        } else if live {
            Cmd::new("modprobe").arg(m).output()?;
            "loaded".to_string()
        } else {
            "not loaded: --root is not /, the module loads when that system boots".to_string()
        };
        steps.push(ModuleStep {
            module: m.clone(),
            action,
        });
    }
    Ok(steps)
}

fn save(root: &Root, state_dir: &Path, report: &SetupReport) -> Result<()> {
    let dir = root.host(state_dir)?;
    fs::create_dir_all(&dir).at("creating", &dir)?;
    let path = root.host(&state_dir.join("setup.json"))?;
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| Error::internal("serialising the setup report", e.to_string()))?;
    fs::write(&path, text).at("writing", &path)
}

/// The last report `gpu setup` saved.
pub fn last(root: &Root, state_dir: &Path) -> Option<SetupReport> {
    let text = fs::read_to_string(root.host(&state_dir.join("setup.json")).ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn setup(root: &Root) -> Result<SetupReport> {
    let cfg = super::load_config(root)?;
    let found = pci::scan(root)?;
    if found.gpus.is_empty() {
        let containers = containers_env::withdraw(root, &cfg.containers_env)?;
        return Ok(SetupReport {
            outcome: "no-gpu".into(),
            detail: format!(
                "no NVIDIA GPU on the PCI bus ({} other display devices): nothing to set up",
                found.other_display.len()
            ),
            containers,
            ..SetupReport::default()
        });
    }
    let fw = Firmware::load(&root.host(&cfg.firmware_dir)?)?;
    let Some(choice) = choice::choose(&fw, &found)? else {
        return Err(Error::invalid("GPUs", "no GPU to choose a set for"));
    };
    let Some(set) = fw.sets.get(&choice.set) else {
        return Err(Error::invalid(
            fw.table_file.display().to_string(),
            "chosen set vanished",
        ));
    };
    let modules = load_modules(root, &set.kernel_modules.load)?;
    let mut api = open_api(root, &cfg)?;
    let driver = api.driver_version()?;
    if driver != set.version() {
        return Err(Error::refused(
            format!("driver {driver}"),
            format!(
                "{} reports driver {driver} but the pinned set {} is {}: the loaded kernel \
                 module is not the set's. Boot the image's own kernel, or rebuild the image \
                 with the set",
                api.source(),
                set.name(),
                set.version()
            ),
        ));
    }
    let devices = api.devices()?;
    if devices.len() != found.gpus.len() {
        let missing = found.not_seen(&devices);
        return Err(Error::refused(
            "GPUs",
            format!(
                "PCI shows {} NVIDIA GPUs but {} sees {} (not seen: {}); check `dmesg` for \
                 NVRM errors",
                found.gpus.len(),
                api.source(),
                devices.len(),
                missing.join(", ")
            ),
        ));
    }
    let nodes = devnodes::ensure(root, &devices)?;
    let spec = cdi::generate(root, set, &devices, &nodes, &cfg.hook_binary)?;
    let yaml = cdi::to_yaml(&spec)?;
    let written = cdi::write(&root.host(&cfg.cdi_dir.join(cdi::FILE_NAME))?, &yaml)?;
    let runtimes = runtime_config::configure_all(root, &cfg.cdi_dir)?;
    // Last: the containers are handed the GPUs only once the spec is there.
    let containers = containers_env::publish(
        root,
        &cfg.containers_env,
        &format!("{}={}", cdi::KIND, cdi::ALL),
    )?;
    let mut warnings = choice.warnings.clone();
    warnings.extend(nodes.warnings.iter().cloned());
    let report = SetupReport {
        outcome: "configured".into(),
        detail: format!(
            "{} GPUs ({}), set {} driver {} (Debian {} from {}), {} kernel modules",
            devices.len(),
            choice
                .gpus
                .iter()
                .map(|g| g.model.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", "),
            set.name(),
            set.version(),
            set.debian_version,
            set.suite,
            choice.kernel_modules
        ),
        cdi_devices: spec
            .devices
            .iter()
            .map(|d| format!("{}={}", cdi::KIND, d.name))
            .collect(),
        choice: Some(choice),
        modules,
        answered: Answered::by(api.as_ref(), driver),
        devices,
        nodes: Some(nodes),
        cdi_spec: Some(cfg.cdi_dir.join(cdi::FILE_NAME)),
        cdi_action: Some(if written { "written" } else { "unchanged" }.into()),
        runtimes,
        containers,
        warnings,
    };
    save(root, &cfg.state_dir, &report)?;
    Ok(report)
}

pub fn print(r: &SetupReport) {
    println!("{}", r.detail);
    for m in &r.modules {
        println!("module   {}: {}", m.module, m.action);
    }
    r.answered.print();
    if let Some(n) = &r.nodes {
        let made = n.nodes.iter().filter(|n| n.created).count();
        println!(
            "devices  {} nodes ({made} made now), {} /dev/char links",
            n.nodes.len(),
            n.links.len()
        );
    }
    if let (Some(p), Some(a)) = (&r.cdi_spec, &r.cdi_action) {
        println!("cdi      {} {a}: {}", p.display(), r.cdi_devices.join(" "));
    }
    for c in &r.runtimes {
        println!("runtime  {} {}: {}", c.runtime, c.file.display(), c.action);
    }
    let c = &r.containers;
    let given = if c.args.is_empty() {
        "no GPU devices"
    } else {
        &c.args
    };
    println!("units    {} {}: {given}", c.file.display(), c.action);
    for w in &r.warnings {
        println!("warning  {w}");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A root, and beside it a directory no path under the root may reach.
    fn root_and_outside() -> (tempfile::TempDir, Root, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(t.path().join("node")).unwrap();
        let root = Root::new(&t.path().join("node"));
        (t, root, outside)
    }

    #[test]
    fn the_setup_report_is_not_written_through_a_link_out_of_the_root() {
        let (_t, root, outside) = root_and_outside();
        let state = Path::new("/var/lib/owui/gpu");
        let dir = root.path().join("var/lib/owui/gpu");
        fs::create_dir_all(&dir).unwrap();
        let victim = outside.join("victim");
        fs::write(&victim, "precious").unwrap();
        symlink(&victim, dir.join("setup.json")).unwrap();
        let report = SetupReport {
            outcome: "no-gpu".into(),
            ..SetupReport::default()
        };
        // The link's absolute target, taken inside the root.
        let inside = root.path().join(victim.strip_prefix("/").unwrap());
        fs::create_dir_all(inside.parent().unwrap()).unwrap();
        save(&root, state, &report).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::read_to_string(inside).unwrap().contains("no-gpu"));
    }

    #[test]
    fn a_module_is_looked_up_inside_the_root() {
        let (_t, root, outside) = root_and_outside();
        fs::create_dir_all(root.path().join("sys/module")).unwrap();
        fs::create_dir_all(outside.join("nvidia")).unwrap();
        symlink(&outside, root.path().join("sys/module/nvidia")).unwrap();
        assert!(!loaded(&root, "nvidia").unwrap());
    }
}
