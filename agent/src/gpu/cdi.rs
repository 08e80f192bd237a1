//! The CDI spec (`/etc/cdi/nvidia.yaml`) that gives containers their GPUs:
//! `nvidia.com/gpu=0`, `=GPU-<uuid>` and `=all`, with the device nodes, the
//! driver libraries from the set, and a createContainer hook that updates
//! the container's linker cache. Debian has no nvidia-container-toolkit, so
//! the agent writes the spec itself.
//!
//! The spec is a typed value checked against the CDI specification's rules
//! ([`validate`]), then written as YAML by [`to_yaml`]: a small emitter for
//! the few shapes a spec has, with every string double-quoted using JSON
//! escapes (valid YAML), so no YAML library is needed (serde_yaml is no
//! longer maintained).

use std::fs;
use std::path::{Path, PathBuf};

use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::api::GpuDevice;
use super::devnodes::{DevNode, Nodes};
use super::firmware::DriverSet;
use crate::layout::Root;

pub const KIND: &str = "nvidia.com/gpu";
/// The lowest CDI version that allows device names starting with a digit
/// (`nvidia.com/gpu=0`) and `hostPath` on device nodes.
pub const CDI_VERSION: &str = "0.5.0";
pub const FILE_NAME: &str = "nvidia.yaml";
/// The device that holds every GPU of the node.
pub const ALL: &str = "all";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    pub devices: Vec<Device>,
    pub container_edits: Edits,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub name: String,
    pub container_edits: Edits,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub major: i64,
    pub minor: i64,
    pub permissions: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    pub args: Vec<String>,
}

fn node(n: &DevNode) -> DeviceNode {
    DeviceNode {
        path: n.path.to_string_lossy().into_owned(),
        kind: "c".into(),
        major: n.major as i64,
        minor: n.minor as i64,
        permissions: "rwm".into(),
    }
}

fn bind(host: &Path, container: &Path) -> Mount {
    Mount {
        host_path: host.to_string_lossy().into_owned(),
        container_path: container.to_string_lossy().into_owned(),
        options: vec!["ro".into(), "nosuid".into(), "nodev".into(), "bind".into()],
    }
}

/// The spec for `gpus` with the set's libraries. Every library and binary
/// must exist under the root: a missing one means the image lacks the set.
pub fn generate(
    root: &Root,
    set: &DriverSet,
    gpus: &[GpuDevice],
    nodes: &Nodes,
    hook_binary: &Path,
) -> Result<Spec> {
    let mut devices = Vec::new();
    let mut all = Vec::new();
    for g in gpus {
        let n = nodes.gpu(g.minor).ok_or_else(|| {
            Error::invalid(
                format!("/dev/nvidia{}", g.minor),
                format!("no device node for GPU {} ({})", g.index, g.uuid),
            )
        })?;
        let edits = Edits {
            device_nodes: vec![node(n)],
            ..Edits::default()
        };
        devices.push(Device {
            name: g.index.to_string(),
            container_edits: edits.clone(),
        });
        devices.push(Device {
            name: g.uuid.clone(),
            container_edits: edits,
        });
        all.push(node(n));
    }
    devices.push(Device {
        name: ALL.into(),
        container_edits: Edits {
            device_nodes: all,
            ..Edits::default()
        },
    });
    let dir = &set.container.library_dir;
    let mut mounts = Vec::new();
    let mut missing = Vec::new();
    for lib in &set.container.libraries {
        let path = dir.join(lib);
        if root.host(&path)?.exists() {
            mounts.push(bind(&path, &path));
        } else {
            missing.push(path.display().to_string());
        }
    }
    for bin in &set.container.binaries {
        if root.host(bin)?.exists() {
            let name = bin.file_name().map(PathBuf::from).unwrap_or_default();
            mounts.push(bind(bin, &Path::new("/usr/bin").join(name)));
        } else {
            missing.push(bin.display().to_string());
        }
    }
    if !missing.is_empty() {
        return Err(Error::invalid(
            format!("driver set {} ({})", set.name(), set.file.display()),
            format!(
                "not installed on this node: {} missing. The image must carry the set's packages",
                missing.join(", ")
            ),
        ));
    }
    let spec = Spec {
        cdi_version: CDI_VERSION.into(),
        kind: KIND.into(),
        devices,
        container_edits: Edits {
            env: vec![format!("NVIDIA_DRIVER_VERSION={}", set.version())],
            device_nodes: nodes.shared().map(node).collect(),
            mounts,
            hooks: vec![Hook {
                hook_name: "createContainer".into(),
                path: hook_binary.to_string_lossy().into_owned(),
                args: vec![
                    "owui-agent".into(),
                    "gpu".into(),
                    "cdi-hook".into(),
                    "update-ldcache".into(),
                    "--folder".into(),
                    dir.to_string_lossy().into_owned(),
                ],
            }],
        },
    };
    let problems = validate(&spec);
    if !problems.is_empty() {
        return Err(Error::invalid(
            "the generated CDI spec",
            problems.join("; "),
        ));
    }
    Ok(spec)
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// CDI device names: alphanumeric first and last, `_ - . :` between.
pub fn valid_device_name(name: &str) -> bool {
    let mut chars = name.chars();
    let (Some(first), Some(last)) = (chars.next(), name.chars().last()) else {
        return false;
    };
    alnum(first)
        && alnum(last)
        && name
            .chars()
            .all(|c| alnum(c) || matches!(c, '_' | '-' | '.' | ':'))
}

fn valid_vendor(v: &str) -> bool {
    v.starts_with(|c: char| c.is_ascii_alphabetic())
        && v.ends_with(alnum)
        && v.chars().all(|c| alnum(c) || matches!(c, '_' | '-' | '.'))
}

fn valid_class(c: &str) -> bool {
    !c.is_empty()
        && c.len() <= 63
        && c.starts_with(alnum)
        && c.ends_with(alnum)
        && c.chars()
            .all(|ch| alnum(ch) || matches!(ch, '_' | '-' | '.'))
}

fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let mut p = v.split('.').map(|x| x.parse::<u64>().ok());
    let out = (p.next()??, p.next()??, p.next()??);
    p.next().is_none().then_some(out)
}

fn check_edits(where_: &str, e: &Edits, problems: &mut Vec<String>) {
    for env in &e.env {
        if env.split_once('=').is_none_or(|(k, _)| k.is_empty()) {
            problems.push(format!("{where_}: env {env:?} is not NAME=VALUE"));
        }
    }
    for d in &e.device_nodes {
        if !d.path.starts_with('/') {
            problems.push(format!(
                "{where_}: device node path {:?} is not absolute",
                d.path
            ));
        }
        if !matches!(d.kind.as_str(), "c" | "b" | "p" | "u") {
            problems.push(format!(
                "{where_}: device node {} has type {:?}",
                d.path, d.kind
            ));
        }
        if d.permissions.is_empty() || !d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
        {
            problems.push(format!(
                "{where_}: device node {} permissions {:?}",
                d.path, d.permissions
            ));
        }
    }
    for m in &e.mounts {
        if !m.host_path.starts_with('/') || !m.container_path.starts_with('/') {
            problems.push(format!(
                "{where_}: mount {} -> {} is not absolute",
                m.host_path, m.container_path
            ));
        }
    }
    for h in &e.hooks {
        if !matches!(
            h.hook_name.as_str(),
            "prestart"
                | "createRuntime"
                | "createContainer"
                | "startContainer"
                | "poststart"
                | "poststop"
        ) {
            problems.push(format!("{where_}: unknown hook name {:?}", h.hook_name));
        }
        if !h.path.starts_with('/') {
            problems.push(format!("{where_}: hook path {:?} is not absolute", h.path));
        }
    }
}

/// Checks a spec against the CDI specification's rules: version, kind,
/// device names (unique, allowed characters, digits first only from
/// 0.5.0), at least one device, and the edits' fields.
pub fn validate(spec: &Spec) -> Vec<String> {
    let mut problems = Vec::new();
    match semver(&spec.cdi_version) {
        None => problems.push(format!(
            "cdiVersion {:?} is not a semantic version",
            spec.cdi_version
        )),
        Some(v) if v < (0, 3, 0) => problems.push(format!(
            "cdiVersion {} is older than 0.3.0, the first released spec",
            spec.cdi_version
        )),
        Some(v) => {
            let digit_names = spec
                .devices
                .iter()
                .any(|d| d.name.starts_with(|c: char| c.is_ascii_digit()));
            if digit_names && v < (0, 5, 0) {
                problems.push(format!(
                    "device names starting with a digit need cdiVersion 0.5.0, spec says {}",
                    spec.cdi_version
                ));
            }
        }
    }
    match spec.kind.split_once('/') {
        Some((vendor, class)) if valid_vendor(vendor) && valid_class(class) => {}
        _ => problems.push(format!("kind {:?} is not vendor.tld/class", spec.kind)),
    }
    if spec.devices.is_empty() {
        problems.push("no devices: a spec must list at least one".into());
    }
    for (i, d) in spec.devices.iter().enumerate() {
        if !valid_device_name(&d.name) {
            problems.push(format!(
                "device name {:?} has characters CDI does not allow",
                d.name
            ));
        }
        if spec.devices[..i].iter().any(|o| o.name == d.name) {
            problems.push(format!("device name {:?} appears twice", d.name));
        }
        check_edits(
            &format!("device {}", d.name),
            &d.container_edits,
            &mut problems,
        );
    }
    check_edits("containerEdits", &spec.container_edits, &mut problems);
    problems
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        // JSON string escapes are valid in YAML double-quoted scalars.
        Value::String(s) => Some(Value::String(s.clone()).to_string()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Object(o) if o.is_empty() => Some("{}".into()),
        _ => None,
    }
}

fn emit(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match scalar(v) {
                    Some(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                    None => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        let child = if v.is_array() { indent } else { indent + 2 };
                        emit(v, child, out);
                    }
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match scalar(item) {
                    Some(s) => out.push_str(&format!("{pad}- {s}\n")),
                    None => {
                        let mut inner = String::new();
                        emit(item, indent + 2, &mut inner);
                        // The first line of the item goes after the dash.
                        let body = inner.get(indent + 2..).unwrap_or("");
                        out.push_str(&format!("{pad}- {body}"));
                    }
                }
            }
        }
        other => {
            if let Some(s) = scalar(other) {
                out.push_str(&format!("{pad}{s}\n"));
            }
        }
    }
}

/// The spec as YAML, with a header saying who wrote it.
pub fn to_yaml(spec: &Spec) -> Result<String> {
    let value = serde_json::to_value(spec)
        .map_err(|e| Error::internal("the CDI spec", format!("cannot render: {e}")))?;
    let mut out = String::from(
        "# Written by `owui-agent gpu setup` from the pinned driver set; changes are\n\
         # overwritten on the next run.\n",
    );
    // cdiVersion and kind first, as people expect to read them.
    if let Value::Object(mut map) = value {
        let mut head = serde_json::Map::new();
        for k in ["cdiVersion", "kind"] {
            if let Some(v) = map.remove(k) {
                head.insert(k.into(), v);
            }
        }
        emit(&Value::Object(head), 0, &mut out);
        emit(&Value::Object(map), 0, &mut out);
    }
    Ok(out)
}

/// Writes `text` to `dir/nvidia.yaml` atomically; `false` when it was
/// already there, byte for byte.
/// Writes the spec to `path` (resolved inside the root) unless it holds
/// `text` already; true when written.
pub fn write(path: &Path, text: &str) -> Result<bool> {
    if fs::read_to_string(path).ok().as_deref() == Some(text) {
        return Ok(false);
    }
    super::runtime_config::write_atomic(path, text)?;
    Ok(true)
}

/// The device names in a spec file this module wrote (`gpu status`).
pub fn device_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("  name: "))
        .filter_map(|q| serde_json::from_str::<String>(q).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Spec {
        Spec {
            cdi_version: CDI_VERSION.into(),
            kind: KIND.into(),
            devices: vec![Device {
                name: "0".into(),
                container_edits: Edits {
                    device_nodes: vec![DeviceNode {
                        path: "/dev/nvidia0".into(),
                        kind: "c".into(),
                        major: 195,
                        minor: 0,
                        permissions: "rwm".into(),
                    }],
                    ..Edits::default()
                },
            }],
            container_edits: Edits {
                env: vec!["A=\"quoted\"".into()],
                ..Edits::default()
            },
        }
    }

    #[test]
    fn yaml_has_the_expected_shape() {
        let yaml = to_yaml(&tiny()).unwrap();
        let body: Vec<&str> = yaml.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            body,
            [
                "cdiVersion: \"0.5.0\"",
                "kind: \"nvidia.com/gpu\"",
                "containerEdits:",
                "  env:",
                "  - \"A=\\\"quoted\\\"\"",
                "devices:",
                "- containerEdits:",
                "    deviceNodes:",
                "    - major: 195",
                "      minor: 0",
                "      path: \"/dev/nvidia0\"",
                "      permissions: \"rwm\"",
                "      type: \"c\"",
                "  name: \"0\"",
            ]
        );
    }

    #[test]
    fn the_rules_of_the_cdi_spec_are_enforced() {
        assert!(validate(&tiny()).is_empty());
        let mut s = tiny();
        s.cdi_version = "0.4.0".into();
        assert!(validate(&s)[0].contains("0.5.0"));
        s.cdi_version = "five".into();
        assert!(validate(&s)[0].contains("semantic"));
        let mut s = tiny();
        s.kind = "nvidia/gpu/x".into();
        assert!(validate(&s)[0].contains("kind"));
        let mut s = tiny();
        s.devices.push(s.devices[0].clone());
        assert!(validate(&s)[0].contains("twice"));
        let mut s = tiny();
        s.devices[0].name = "gpu 0".into();
        assert!(validate(&s)[0].contains("characters"));
        let mut s = tiny();
        s.devices.clear();
        assert!(validate(&s)[0].contains("at least one"));
        let mut s = tiny();
        s.container_edits.hooks.push(Hook {
            hook_name: "afterParty".into(),
            path: "bin/x".into(),
            args: vec![],
        });
        assert_eq!(validate(&s).len(), 2);
        assert!(valid_device_name(
            "GPU-4b1e0e0a-2d1f-4e4e-9e0e-0a0b0c0d0e0f"
        ));
        assert!(!valid_device_name("-x"));
    }
}
