//! Tells the container runtimes where the CDI spec is: podman's
//! `containers.conf` always (podman runs the node's AI containers), Docker's
//! `daemon.json` and containerd's `config.toml` only where the node already
//! has them. Each file is merged, never replaced: every key the agent does
//! not own is kept as it was (TOML through toml_edit, comments included).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use owui_bundle::error::IoContext;
use owui_bundle::fsutil;
use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};
use toml_edit::{value, Array, DocumentMut, Item, Table};

use crate::layout::Root;

/// The directory runtimes also scan for generated (transient) specs.
const RUN_CDI: &str = "/var/run/cdi";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub runtime: String,
    pub file: PathBuf,
    /// `created`, `updated`, `unchanged`, or `absent` (runtime not here).
    pub action: String,
}

/// Replaces `path` (resolved inside the root) through a temporary file of
/// a fresh name: a link planted under a fixed temporary name would send
/// the write out of the root. The file keeps its mode (new ones: 0644).
pub(super) fn write_atomic(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("creating", dir)?;
    }
    let mode = fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    fsutil::write_atomic(path, text.as_bytes(), mode)
}

fn settle(
    runtime: &str,
    node_path: &Path,
    path: &Path,
    old: Option<&str>,
    new: &str,
) -> Result<Change> {
    let action = match old {
        Some(o) if o == new => "unchanged",
        Some(_) => "updated",
        None => "created",
    };
    if action != "unchanged" {
        write_atomic(path, new)?;
    }
    Ok(Change {
        runtime: runtime.into(),
        file: node_path.to_path_buf(),
        action: action.into(),
    })
}

pub(super) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at("reading", path),
    }
}

/// Makes sure the TOML array at `table[key]` holds every one of `dirs`,
/// keeping what is there.
fn ensure_dirs(file: &Path, table: &mut Table, key: &str, dirs: &[&str]) -> Result<()> {
    let item = table.entry(key).or_insert_with(|| value(Array::new()));
    let Some(array) = item.as_array_mut() else {
        return Err(Error::invalid(
            format!("{}: {key}", file.display()),
            "is not an array of directories",
        ));
    };
    for d in dirs {
        if !array.iter().any(|v| v.as_str() == Some(d)) {
            array.push(*d);
        }
    }
    Ok(())
}

/// The table at `path` (dotted by the caller), made if missing.
fn table_at<'a>(file: &Path, doc: &'a mut DocumentMut, path: &[&str]) -> Result<&'a mut Table> {
    let mut t = doc.as_table_mut();
    for (i, key) in path.iter().enumerate() {
        let item = t.entry(key).or_insert_with(|| {
            let mut new = Table::new();
            new.set_implicit(i + 1 < path.len());
            Item::Table(new)
        });
        t = item.as_table_mut().ok_or_else(|| {
            Error::invalid(
                format!("{}: {}", file.display(), path[..=i].join(".")),
                "is not a table",
            )
        })?;
    }
    Ok(t)
}

fn parse_toml(file: &Path, text: &str) -> Result<DocumentMut> {
    text.parse::<DocumentMut>()
        .map_err(|e| owui_bundle::toml_loc::parse_error(&file.display().to_string(), e))
}

/// Podman reads `containers.conf`, then `containers.conf.d/*.conf` in name
/// order, a later file's key replacing an earlier one's. So the file that
/// decides `[engine] cdi_spec_dirs` is the last drop-in setting it, else the
/// main file: that is the one to merge into. (On an appliance image it is
/// the image's read-only drop-in, which already names the spec directory.)
fn podman_file(root: &Root) -> Result<PathBuf> {
    let dropins = Path::new("/etc/containers/containers.conf.d");
    let dir = root.host(dropins)?;
    let mut names = Vec::new();
    match fs::read_dir(&dir) {
        Ok(entries) => {
            for e in entries {
                let name = e.at("listing", &dir)?.file_name();
                if Path::new(&name).extension().is_some_and(|x| x == "conf") {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).at("listing", &dir),
    }
    names.sort();
    let mut decides = PathBuf::from("/etc/containers/containers.conf");
    for name in names {
        let path = root.host(&dropins.join(&name))?;
        let text = fs::read_to_string(&path).at("reading", &path)?;
        let doc = parse_toml(&path, &text)?;
        if doc
            .get("engine")
            .and_then(|e| e.get("cdi_spec_dirs"))
            .is_some()
        {
            decides = dropins.join(name);
        }
    }
    Ok(decides)
}

/// podman: `[engine] cdi_spec_dirs` in `/etc/containers/containers.conf`,
/// or in the drop-in that overrides it there.
pub fn podman(root: &Root, cdi_dir: &Path) -> Result<Change> {
    let node_path = podman_file(root)?;
    let path = root.host(&node_path)?;
    let old = read_optional(&path)?;
    let mut doc = parse_toml(&path, old.as_deref().unwrap_or(""))?;
    let engine = table_at(&path, &mut doc, &["engine"])?;
    let cdi = cdi_dir.to_string_lossy();
    ensure_dirs(&path, engine, "cdi_spec_dirs", &[&cdi, RUN_CDI])?;
    settle(
        "podman",
        &node_path,
        &path,
        old.as_deref(),
        &doc.to_string(),
    )
}

/// containerd: `enable_cdi` and `cdi_spec_dirs` in the CRI plugin's table
/// (config version 2 or 3), only when `/etc/containerd/config.toml` exists.
pub fn containerd(root: &Root, cdi_dir: &Path) -> Result<Change> {
    let node_path = Path::new("/etc/containerd/config.toml");
    let path = root.host(node_path)?;
    let Some(old) = read_optional(&path)? else {
        return Ok(Change {
            runtime: "containerd".into(),
            file: node_path.into(),
            action: "absent".into(),
        });
    };
    let mut doc = parse_toml(&path, &old)?;
    let version = doc.get("version").and_then(|v| v.as_integer()).unwrap_or(2);
    let plugin = if version >= 3 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    };
    let t = table_at(&path, &mut doc, &["plugins", plugin])?;
    t.insert("enable_cdi", value(true));
    let cdi = cdi_dir.to_string_lossy();
    ensure_dirs(&path, t, "cdi_spec_dirs", &[&cdi, RUN_CDI])?;
    settle("containerd", node_path, &path, Some(&old), &doc.to_string())
}

/// Docker: `features.cdi` and `cdi-spec-dirs` in `/etc/docker/daemon.json`,
/// only when the file exists.
pub fn docker(root: &Root, cdi_dir: &Path) -> Result<Change> {
    let node_path = Path::new("/etc/docker/daemon.json");
    let path = root.host(node_path)?;
    let Some(old) = read_optional(&path)? else {
        return Ok(Change {
            runtime: "docker".into(),
            file: node_path.into(),
            action: "absent".into(),
        });
    };
    let bad = |detail: String| Error::invalid(path.display().to_string(), detail);
    let mut doc: serde_json::Value = if old.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&old).map_err(|e| bad(format!("not JSON: {e}")))?
    };
    let Some(map) = doc.as_object_mut() else {
        return Err(bad("is not a JSON object".into()));
    };
    let features = map
        .entry("features")
        .or_insert_with(|| serde_json::json!({}));
    let Some(features) = features.as_object_mut() else {
        return Err(bad("features: is not an object".into()));
    };
    features.insert("cdi".into(), serde_json::Value::Bool(true));
    let dirs = map
        .entry("cdi-spec-dirs")
        .or_insert_with(|| serde_json::json!([]));
    let Some(dirs) = dirs.as_array_mut() else {
        return Err(bad("cdi-spec-dirs: is not an array".into()));
    };
    for d in [cdi_dir.to_string_lossy().as_ref(), RUN_CDI] {
        if !dirs.iter().any(|v| v.as_str() == Some(d)) {
            dirs.push(serde_json::Value::String(d.to_string()));
        }
    }
    let mut new = serde_json::to_string_pretty(&doc).map_err(|e| bad(e.to_string()))?;
    new.push('\n');
    // Same meaning, different layout: leave the operator's file alone.
    let same = serde_json::from_str::<serde_json::Value>(&old).ok() == Some(doc.clone());
    let old_for_settle = if same { new.as_str() } else { old.as_str() };
    settle("docker", node_path, &path, Some(old_for_settle), &new)
}

/// Every runtime, in a fixed order.
pub fn configure_all(root: &Root, cdi_dir: &Path) -> Result<Vec<Change>> {
    Ok(vec![
        podman(root, cdi_dir)?,
        docker(root, cdi_dir)?,
        containerd(root, cdi_dir)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let r = Root::new(t.path());
        (t, r)
    }

    #[test]
    fn podman_merge_keeps_unrelated_keys_and_comments() {
        let (t, r) = root();
        let file = t.path().join("etc/containers/containers.conf");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(
            &file,
            "# site settings\n[containers]\ndefault_ulimits = [\"nofile=20000:20000\"]\n\n[engine]\nruntime = \"runc\"\ncdi_spec_dirs = [\"/opt/cdi\"]\n",
        )
        .unwrap();
        let c = podman(&r, Path::new("/etc/cdi")).unwrap();
        assert_eq!(c.action, "updated");
        let text = fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# site settings\n"), "{text}");
        assert!(
            text.contains("default_ulimits = [\"nofile=20000:20000\"]"),
            "{text}"
        );
        assert!(text.contains("runtime = \"runc\""), "{text}");
        assert!(
            text.contains("cdi_spec_dirs = [\"/opt/cdi\", \"/etc/cdi\", \"/var/run/cdi\"]"),
            "{text}"
        );
        assert_eq!(
            podman(&r, Path::new("/etc/cdi")).unwrap().action,
            "unchanged"
        );
    }

    #[test]
    fn podman_file_is_created_when_missing() {
        let (t, r) = root();
        assert_eq!(podman(&r, Path::new("/etc/cdi")).unwrap().action, "created");
        let text = fs::read_to_string(t.path().join("etc/containers/containers.conf")).unwrap();
        assert_eq!(
            text,
            "[engine]\ncdi_spec_dirs = [\"/etc/cdi\", \"/var/run/cdi\"]\n"
        );
    }

    #[test]
    fn podman_merges_into_the_dropin_that_decides_and_leaves_a_complete_one_alone() {
        let (t, r) = root();
        let d = t.path().join("etc/containers/containers.conf.d");
        fs::create_dir_all(&d).unwrap();
        // The image's drop-in already names the run-time spec directory.
        let image = "[engine]\nruntime = \"crun\"\ncdi_spec_dirs = [\"/var/run/cdi\"]\n";
        fs::write(d.join("50-owui.conf"), image).unwrap();
        fs::write(
            d.join("10-site.conf"),
            "[engine]\ncdi_spec_dirs = [\"/opt/cdi\"]\n",
        )
        .unwrap();
        fs::write(d.join("90-other.conf"), "[containers]\npids_limit = 10\n").unwrap();
        fs::write(d.join("README"), "not toml [").unwrap();
        let c = podman(&r, Path::new("/var/run/cdi")).unwrap();
        assert_eq!(
            c.file,
            Path::new("/etc/containers/containers.conf.d/50-owui.conf")
        );
        assert_eq!(c.action, "unchanged");
        assert_eq!(fs::read_to_string(d.join("50-owui.conf")).unwrap(), image);
        assert!(!t.path().join("etc/containers/containers.conf").exists());
        // Another directory is merged into that same drop-in, keys kept.
        assert_eq!(podman(&r, Path::new("/etc/cdi")).unwrap().action, "updated");
        let text = fs::read_to_string(d.join("50-owui.conf")).unwrap();
        assert!(
            text.contains("runtime = \"crun\"")
                && text.contains("cdi_spec_dirs = [\"/var/run/cdi\", \"/etc/cdi\"]"),
            "{text}"
        );
        fs::write(d.join("60-bad.conf"), "[engine\n").unwrap();
        let err = podman(&r, Path::new("/etc/cdi")).unwrap_err().to_string();
        assert!(err.contains("60-bad.conf"), "{err}");
    }

    #[test]
    fn no_write_or_read_follows_a_link_out_of_the_root() {
        let t = tempfile::tempdir().unwrap();
        let (node, outside) = (t.path().join("node"), t.path().join("outside"));
        let d = node.join("etc/containers/containers.conf.d");
        fs::create_dir_all(&d).unwrap();
        fs::create_dir_all(&outside).unwrap();
        let r = Root::new(&node);
        // A link at the temporary name the write once used: it pointed the
        // write at a file outside the root.
        let victim = outside.join("victim");
        fs::write(&victim, "precious").unwrap();
        let conf = node.join("etc/containers");
        std::os::unix::fs::symlink(&victim, conf.join(".containers.conf.owui-tmp")).unwrap();
        // A drop-in linked to the host's: the node does not have it.
        fs::write(
            outside.join("host.conf"),
            "[engine]\ncdi_spec_dirs = [\"/host\"]\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.join("host.conf"), d.join("90-host.conf")).unwrap();
        let err = podman(&r, Path::new("/etc/cdi")).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{}/", node.display())),
            "{err}"
        );
        fs::remove_file(d.join("90-host.conf")).unwrap();
        let c = podman(&r, Path::new("/etc/cdi")).unwrap();
        assert_eq!(c.file, Path::new("/etc/containers/containers.conf"));
        assert_eq!(c.action, "created");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert!(fs::read_to_string(conf.join("containers.conf"))
            .unwrap()
            .contains("/etc/cdi"));
    }

    #[test]
    fn docker_merge_keeps_keys_and_is_skipped_when_absent() {
        let (t, r) = root();
        assert_eq!(docker(&r, Path::new("/etc/cdi")).unwrap().action, "absent");
        let file = t.path().join("etc/docker/daemon.json");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(
            &file,
            r#"{"log-driver": "journald", "features": {"buildkit": true}}"#,
        )
        .unwrap();
        assert_eq!(docker(&r, Path::new("/etc/cdi")).unwrap().action, "updated");
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(v["log-driver"], "journald");
        assert_eq!(v["features"]["buildkit"], true);
        assert_eq!(v["features"]["cdi"], true);
        assert_eq!(
            v["cdi-spec-dirs"],
            serde_json::json!(["/etc/cdi", "/var/run/cdi"])
        );
        assert_eq!(
            docker(&r, Path::new("/etc/cdi")).unwrap().action,
            "unchanged"
        );
        fs::write(&file, "[1, 2]").unwrap();
        let err = docker(&r, Path::new("/etc/cdi")).unwrap_err().to_string();
        assert!(
            err.contains("daemon.json") && err.contains("not a JSON object"),
            "{err}"
        );
    }

    #[test]
    fn containerd_v2_and_v3() {
        let (t, r) = root();
        assert_eq!(
            containerd(&r, Path::new("/etc/cdi")).unwrap().action,
            "absent"
        );
        let file = t.path().join("etc/containerd/config.toml");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(
            &file,
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\nsandbox_image = \"pause:3.9\"\n",
        )
        .unwrap();
        containerd(&r, Path::new("/etc/cdi")).unwrap();
        let doc: toml::Table = fs::read_to_string(&file).unwrap().parse().unwrap();
        let cri = &doc["plugins"]["io.containerd.grpc.v1.cri"];
        assert_eq!(cri["sandbox_image"].as_str(), Some("pause:3.9"));
        assert_eq!(cri["enable_cdi"].as_bool(), Some(true));
        fs::write(&file, "version = 3\n[grpc]\naddress = \"/run/c.sock\"\n").unwrap();
        containerd(&r, Path::new("/etc/cdi")).unwrap();
        let doc: toml::Table = fs::read_to_string(&file).unwrap().parse().unwrap();
        assert_eq!(doc["grpc"]["address"].as_str(), Some("/run/c.sock"));
        assert_eq!(
            doc["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"].as_bool(),
            Some(true)
        );
        fs::write(&file, "version = 2\nplugins = 3\n").unwrap();
        let err = containerd(&r, Path::new("/etc/cdi"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("config.toml: plugins") && err.contains("not a table"),
            "{err}"
        );
    }
}
