//! `firmware/`: the pinned driver sets (`sets/<name>.toml`) and the table
//! from GPU PCI device IDs to architectures and sets (`gpus.toml`). The
//! builder puts a set into GPU images; the agent picks and loads it. Every
//! error names the file, the line and the field.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::toml_loc::{self, Loc};
use crate::{Error, Result, Sha256Digest};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

/// Which kernel modules a GPU generation wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModuleFlavour {
    Open,
    Proprietary,
}

impl fmt::Display for ModuleFlavour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModuleFlavour::Open => "open",
            ModuleFlavour::Proprietary => "proprietary",
        })
    }
}

/// A PCI device ID written as `0x` and four hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PciId(pub u16);

impl fmt::Display for PciId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}

impl<'de> Deserialize<'de> for PciId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.strip_prefix("0x")
            .filter(|h| h.len() == 4)
            .and_then(|h| u16::from_str_radix(h, 16).ok())
            .map(PciId)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "device_ids: expected a PCI device ID like \"0x2330\", found {s:?}"
                ))
            })
    }
}

/// A driver version like `550.163.01`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverVersion(pub String);

impl<'de> Deserialize<'de> for DriverVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.split('.').count() >= 2
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            Ok(DriverVersion(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "driver_version: expected dotted numbers like \"550.163.01\", found {s:?}"
            )))
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverSet {
    pub name: Spanned<String>,
    pub driver_version: DriverVersion,
    pub debian_version: String,
    pub suite: String,
    pub kernel_modules: KernelModules,
    pub gsp_firmware: Option<GspFirmware>,
    pub fabric_manager: Option<FabricManager>,
    pub container: ContainerFiles,
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    #[serde(skip)]
    pub file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelModules {
    pub open: Option<Spanned<String>>,
    pub proprietary: Option<Spanned<String>>,
    /// Module names in load order.
    pub load: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GspFirmware {
    pub package: Spanned<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricManager {
    pub package: String,
    pub version: String,
    /// Whether the distribution carries it (Debian does not).
    pub in_debian: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerFiles {
    /// Where the user-space driver libraries are on the node.
    pub library_dir: PathBuf,
    /// Library file names (sonames) in `library_dir` that go into containers.
    pub libraries: Vec<String>,
    /// Programs that go into containers (at /usr/bin/<name>).
    #[serde(default)]
    pub binaries: Vec<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub component: String,
    pub size: u64,
    /// Written as Debian's indices write it: 64 lowercase hex digits.
    #[serde(with = "crate::digest::bare_hex")]
    pub sha256: Sha256Digest,
}

impl DriverSet {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub fn version(&self) -> &str {
        &self.driver_version.0
    }

    /// The module package for `flavour`, if the set has one.
    pub fn module_package(&self, flavour: ModuleFlavour) -> Option<&str> {
        match flavour {
            ModuleFlavour::Open => self.kernel_modules.open.as_ref(),
            ModuleFlavour::Proprietary => self.kernel_modules.proprietary.as_ref(),
        }
        .map(|s| s.get_ref().as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuTable {
    pub architecture: BTreeMap<String, Architecture>,
    #[serde(rename = "gpu")]
    pub gpus: Vec<GpuModel>,
    #[serde(default, rename = "nvswitch")]
    pub nvswitches: Vec<NvSwitchModel>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Sets that serve it, best first; empty: none shipped.
    pub sets: Vec<Spanned<String>>,
    pub kernel_modules: ModuleFlavour,
    /// What a site must do when no set is shipped.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuModel {
    pub name: String,
    pub architecture: Spanned<String>,
    pub device_ids: Vec<Spanned<PciId>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvSwitchModel {
    pub name: String,
    pub device_ids: Vec<PciId>,
}

/// Everything under `firmware/`, checked.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub sets: BTreeMap<String, DriverSet>,
    pub table: GpuTable,
    pub table_file: PathBuf,
}

/// Parses and checks one set file.
fn parse_set(file: &Path, text: &str) -> Result<DriverSet> {
    let mut set: DriverSet = toml_loc::parse(&file.display().to_string(), text)?;
    set.file = file.to_path_buf();
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if set.name.get_ref() != stem {
        return Err(Loc::at(file, text, set.name.span().start).err(
            "name",
            format!(
                "the set is named {:?} but its file is {stem}.toml: they must match",
                set.name.get_ref()
            ),
        ));
    }
    if set.kernel_modules.open.is_none() && set.kernel_modules.proprietary.is_none() {
        return Err(Error::invalid(
            format!("{}: kernel_modules", file.display()),
            "names neither an open nor a proprietary module package",
        ));
    }
    if set.kernel_modules.load.is_empty() {
        return Err(Error::invalid(
            format!("{}: kernel_modules.load", file.display()),
            "lists no modules to load",
        ));
    }
    let listed = |name: &Spanned<String>, field: &str| -> Result<()> {
        if set.packages.iter().any(|p| &p.name == name.get_ref()) {
            Ok(())
        } else {
            Err(Loc::at(file, text, name.span().start).err(field, format!(
                    "package {:?} is not in the set's [[package]] list (every package is pinned by digest)",
                    name.get_ref()
                )))
        }
    };
    // The builder's module package takes over the DKMS package's virtual
    // package, named after it: `<name less -dkms>-<driver version>`.
    let modules = [
        (&set.kernel_modules.open, "kernel_modules.open"),
        (
            &set.kernel_modules.proprietary,
            "kernel_modules.proprietary",
        ),
    ];
    for (p, field) in modules {
        let Some(p) = p else { continue };
        listed(p, field)?;
        if !p.get_ref().ends_with("-dkms") {
            return Err(Loc::at(file, text, p.span().start).err(
                field,
                format!(
                    "{:?} is not a DKMS package (name ending in -dkms)",
                    p.get_ref()
                ),
            ));
        }
    }
    if let Some(g) = &set.gsp_firmware {
        listed(&g.package, "gsp_firmware.package")?;
    }
    for (i, p) in set.packages.iter().enumerate() {
        if set.packages[..i].iter().any(|o| o.name == p.name) {
            return Err(Error::invalid(
                format!("{}: package[{i}].name", file.display()),
                format!("package {:?} is listed twice", p.name),
            ));
        }
    }
    if set.container.libraries.is_empty() {
        return Err(Error::invalid(
            format!("{}: container.libraries", file.display()),
            "lists no libraries: containers would get no driver",
        ));
    }
    if !set.container.library_dir.is_absolute() {
        return Err(Error::invalid(
            format!("{}: container.library_dir", file.display()),
            "must be an absolute path",
        ));
    }
    Ok(set)
}

/// Parses the GPU table and checks it against the sets that exist.
fn parse_table(file: &Path, text: &str, sets: &BTreeMap<String, DriverSet>) -> Result<GpuTable> {
    let table: GpuTable = toml_loc::parse(&file.display().to_string(), text)?;
    for (arch, a) in &table.architecture {
        let field = format!("architecture.{arch}.sets");
        for s in &a.sets {
            let loc = Loc::at(file, text, s.span().start);
            let Some(set) = sets.get(s.get_ref()) else {
                return Err(loc.err(
                    &field,
                    format!(
                        "no set {:?} in sets/ (have: {})",
                        s.get_ref(),
                        sets.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            };
            if set.module_package(a.kernel_modules).is_none() {
                return Err(loc.err(
                    &field,
                    format!(
                        "{arch} needs {} kernel modules and set {:?} has none",
                        a.kernel_modules,
                        s.get_ref()
                    ),
                ));
            }
        }
    }
    let mut seen: BTreeMap<PciId, &str> = BTreeMap::new();
    for (i, g) in table.gpus.iter().enumerate() {
        if !table.architecture.contains_key(g.architecture.get_ref()) {
            return Err(Loc::at(file, text, g.architecture.span().start).err(
                &format!("gpu[{i}].architecture"),
                format!(
                    "unknown architecture {:?} (have: {})",
                    g.architecture.get_ref(),
                    table
                        .architecture
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        for id in &g.device_ids {
            if let Some(other) = seen.insert(*id.get_ref(), &g.name) {
                return Err(Loc::at(file, text, id.span().start).err(
                    &format!("gpu[{i}].device_ids"),
                    format!("device ID {} is also listed for {other:?}", id.get_ref()),
                ));
            }
        }
    }
    Ok(table)
}

impl Firmware {
    /// Reads `dir/sets/*.toml` and `dir/gpus.toml`.
    pub fn load(dir: &Path) -> Result<Firmware> {
        let sets_dir = dir.join("sets");
        let mut sets = BTreeMap::new();
        let entries = fs::read_dir(&sets_dir).at("reading the driver sets in", &sets_dir)?;
        for entry in entries {
            let path = entry.at("reading", &sets_dir)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = fs::read_to_string(&path).at("reading", &path)?;
            let set = parse_set(&path, &text)?;
            sets.insert(set.name().to_string(), set);
        }
        let table_file = dir.join("gpus.toml");
        let text = fs::read_to_string(&table_file).at("reading", &table_file)?;
        let table = parse_table(&table_file, &text, &sets)?;
        Ok(Firmware {
            sets,
            table,
            table_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_firmware() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
    }

    #[test]
    fn the_shipped_firmware_tables_load() {
        let fw = Firmware::load(&repo_firmware()).unwrap();
        let set = &fw.sets["debian-tesla-535"];
        assert_eq!(set.version(), "535.274.02");
        assert_eq!(
            set.module_package(ModuleFlavour::Proprietary),
            Some("nvidia-tesla-535-kernel-dkms")
        );
        assert_eq!(set.module_package(ModuleFlavour::Open), None);
        assert!(set.packages.iter().all(|p| p.sha256.hex().len() == 64));
        assert!(fw.table.architecture["blackwell"].sets.is_empty());
        assert!(fw
            .table
            .gpus
            .iter()
            .any(|g| g.device_ids.iter().any(|i| i.get_ref().0 == 0x2330)));
    }

    fn set_text() -> String {
        fs::read_to_string(repo_firmware().join("sets/debian-tesla-535.toml")).unwrap()
    }

    #[test]
    fn a_bad_digest_names_file_line_and_field() {
        let text = set_text().replacen(
            "4c070db22ba452f21c61f182796bd3878447a58672789330bc6e5357c3d9c787",
            "4c070db2",
            1,
        );
        let err = parse_set(Path::new("/f/sets/debian-tesla-535.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("debian-tesla-535.toml")
                && err.contains("sha256")
                && err.contains("line "),
            "{err}"
        );
    }

    #[test]
    fn an_unpinned_module_package_is_refused() {
        let set = Path::new("/f/sets/debian-tesla-535.toml");
        let module = "proprietary = \"nvidia-tesla-535-kernel-dkms\"";
        let text = set_text().replace(module, "proprietary = \"nvidia-tesla-535-kernel-dkms-570\"");
        let err = parse_set(set, &text).unwrap_err().to_string();
        assert!(
            err.contains("line 26: kernel_modules.proprietary") && err.contains("not in the set"),
            "{err}"
        );
        // A module package that is not DKMS's: no virtual package to take over.
        let text = set_text().replace(module, "proprietary = \"nvidia-tesla-535-smi\"");
        let err = parse_set(set, &text).unwrap_err().to_string();
        assert!(
            err.contains("line 26: kernel_modules.proprietary") && err.contains("-dkms"),
            "{err}"
        );
        let err = parse_set(Path::new("/f/sets/other.toml"), &set_text())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 16: name"), "{err}");
    }

    #[test]
    fn table_errors_name_line_and_field() {
        let dir = repo_firmware();
        let fw = Firmware::load(&dir).unwrap();
        let text = fs::read_to_string(dir.join("gpus.toml")).unwrap();
        // The error for the table with `from` replaced by `to` once.
        let error_for = |from: &str, to: &str| {
            parse_table(
                Path::new("/f/gpus.toml"),
                &text.replacen(from, to, 1),
                &fw.sets,
            )
            .unwrap_err()
            .to_string()
        };
        let err = error_for("sets = [\"debian-tesla-535\"]", "sets = [\"debian-535\"]");
        assert!(
            err.contains("architecture.volta.sets") && err.contains("debian-535"),
            "{err}"
        );
        let err = error_for("architecture = \"turing\"", "architecture = \"tesla\"");
        assert!(
            err.contains("gpu[3].architecture") && err.contains("line "),
            "{err}"
        );
        let err = error_for("\"0x1eb8\"", "\"0x1db1\"");
        assert!(err.contains("also listed"), "{err}");
        let err = error_for("\"0x1eb8\"", "\"1eb8\"");
        assert!(err.contains("device_ids") && err.contains("line "), "{err}");
    }
}
