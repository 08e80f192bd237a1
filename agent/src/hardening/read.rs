//! The Quadlet `.container` units the rules read, with their drop-ins: each
//! file read through `files` and parsed by `owui_bundle::unit_file`, the
//! parser the builder checks the units it ships with.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use owui_bundle::unit_file::{is_env_name, parse_unit, split_words};

use super::files::{io_reason, read_text, under_root};
use super::{shown, Audit, HardeningConfig};

/// Drop-in files read for one Quadlet unit.
const MAX_DROPINS: usize = 64;

/// An environment file named by a unit (`EnvironmentFile=`).
#[derive(Debug, Clone)]
pub(super) struct UnitEnvFile {
    pub(super) path: PathBuf,
    /// `-` prefix: a missing file is not an error.
    pub(super) optional: bool,
}

/// What the audit needs from one Quadlet `.container` unit and its drop-ins.
#[derive(Debug, Clone)]
pub(super) struct QuadletUnit {
    pub(super) path: PathBuf,
    /// Effective `Image=` and the file that set it.
    pub(super) image: Option<(String, PathBuf)>,
    /// `Environment=` assignments in order: key, value, file.
    pub(super) env: Vec<(String, String, PathBuf)>,
    pub(super) env_files: Vec<UnitEnvFile>,
    /// `PublishPort=` values and the file of each.
    pub(super) publish: Vec<(String, PathBuf)>,
}

/// Reads every configured unit; the flag is false when one could not be read.
pub(super) fn read_quadlet_units(
    root: &Path,
    cfg: &HardeningConfig,
    a: &mut Audit,
) -> (Vec<QuadletUnit>, bool) {
    let mut units = Vec::new();
    let mut complete = true;
    for path in &cfg.quadlet_units {
        match read_quadlet(root, path, a) {
            Some(unit) => units.push(unit),
            None => complete = false,
        }
    }
    (units, complete)
}

fn read_quadlet(root: &Path, path: &Path, a: &mut Audit) -> Option<QuadletUnit> {
    let text = match read_text(root, path) {
        Ok((text, _)) => text,
        Err(reason) => {
            a.errors
                .push(format!("quadlet unit {}: {reason}", path.display()));
            return None;
        }
    };
    let mut unit = QuadletUnit {
        path: path.to_path_buf(),
        image: None,
        env: Vec::new(),
        env_files: Vec::new(),
        publish: Vec::new(),
    };
    apply_unit_text(&text, path, &mut unit, a);

    // Drop-ins: <unit>.d/*.conf in name order, applied after the unit.
    let mut dropin_dir = path.as_os_str().to_owned();
    dropin_dir.push(".d");
    let dropin_dir = PathBuf::from(dropin_dir);
    let listing = under_root(root, &dropin_dir).and_then(|dir| match fs::read_dir(dir) {
        Ok(entries) => Ok(Some(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_reason(&e)),
    });
    match listing {
        Ok(None) => {}
        Ok(Some(entries)) => {
            let mut names: Vec<OsString> = entries
                .filter_map(|entry| entry.ok().map(|e| e.file_name()))
                .filter(|name| Path::new(name).extension().is_some_and(|ext| ext == "conf"))
                .collect();
            names.sort();
            if names.len() > MAX_DROPINS {
                a.errors.push(format!(
                    "quadlet drop-ins {}: more than {MAX_DROPINS}: the rest not audited",
                    dropin_dir.display()
                ));
                names.truncate(MAX_DROPINS);
            }
            for name in names {
                let dropin = dropin_dir.join(name);
                match read_text(root, &dropin) {
                    Ok((text, _)) => apply_unit_text(&text, &dropin, &mut unit, a),
                    Err(reason) => a
                        .errors
                        .push(format!("quadlet drop-in {}: {reason}", dropin.display())),
                }
            }
        }
        Err(reason) => a.errors.push(format!(
            "quadlet drop-ins {}: {reason}",
            dropin_dir.display()
        )),
    }
    Some(unit)
}

/// Applies the `[Container]` lines of one unit file (or drop-in) at `source`.
fn apply_unit_text(text: &str, source: &Path, unit: &mut QuadletUnit, a: &mut Audit) {
    let unit_dir = unit
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for entry in parse_unit(text) {
        if entry.section != "Container" {
            continue;
        }
        let here = || format!("{} line {}", source.display(), entry.line);
        match entry.key.as_str() {
            "Image" => {
                unit.image = if entry.value.is_empty() {
                    None
                } else {
                    Some((entry.value.clone(), source.to_path_buf()))
                };
            }
            "Environment" => {
                if entry.value.is_empty() {
                    // An empty assignment resets the list.
                    unit.env.clear();
                    continue;
                }
                match split_words(&entry.value) {
                    Ok(words) => {
                        for word in words {
                            match word.split_once('=') {
                                Some((key, value)) if is_env_name(key) => unit.env.push((
                                    key.to_string(),
                                    value.to_string(),
                                    source.to_path_buf(),
                                )),
                                _ => a.errors.push(format!(
                                    "{}: Environment= word {} is not KEY=VALUE, ignored",
                                    here(),
                                    shown(&word)
                                )),
                            }
                        }
                    }
                    Err(e) => a
                        .errors
                        .push(format!("{}: Environment= {e}, line ignored", here())),
                }
            }
            "EnvironmentFile" => {
                if entry.value.is_empty() {
                    unit.env_files.clear();
                    continue;
                }
                let (optional, name) = match entry.value.strip_prefix('-') {
                    Some(rest) => (true, rest.trim()),
                    None => (false, entry.value.as_str()),
                };
                if name.contains('%') {
                    a.errors.push(format!(
                        "{}: EnvironmentFile={} uses a specifier: cannot audit",
                        here(),
                        shown(name)
                    ));
                    continue;
                }
                let name = Path::new(name);
                // Quadlet resolves a relative path against the unit's directory.
                let path = if name.is_absolute() {
                    name.to_path_buf()
                } else {
                    unit_dir.join(name)
                };
                unit.env_files.push(UnitEnvFile { path, optional });
            }
            "PublishPort" => {
                for spec in entry.value.split_whitespace() {
                    unit.publish.push((spec.to_string(), source.to_path_buf()));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::hardening::fixture::*;
    use crate::hardening::Severity;

    #[test]
    fn env_file_syntax_variants() {
        let n = Node::compliant();
        // The syntax variants the parser's own tests read (owui_bundle::unit_file).
        n.write(
            ENV,
            include_str!("../../../bundle/testdata/env-syntax-variants.env"),
            0o600,
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert!(a.errors.is_empty(), "{a:#?}");

        // A quoted insecure value is still insecure.
        n.replace(
            ENV,
            "export ENABLE_SIGNUP=\"false\"",
            "export ENABLE_SIGNUP=\"True\"",
        );
        assert_finding(
            only(&n.audit()),
            "ENABLE_SIGNUP",
            "False",
            "True",
            Severity::Fail,
            ENV,
        );

        // An inline '#' is part of the value, as in systemd.
        n.edit(ENV, |text| {
            text.replace("export ENABLE_SIGNUP=\"True\"", "ENABLE_SIGNUP=False")
                .replace(
                    "DEFAULT_USER_ROLE='pending'",
                    "DEFAULT_USER_ROLE=pending # approval",
                )
        });
        assert_finding(
            only(&n.audit()),
            "DEFAULT_USER_ROLE",
            "pending",
            "pending # approval",
            Severity::Fail,
            ENV,
        );
    }

    #[test]
    fn env_file_problems_are_errors_not_findings() {
        let n = Node::compliant();
        n.edit(ENV, |text| format!("{text}garbage line\n"));
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![format!("env file {ENV} line 13: not KEY=VALUE, ignored")]
        );
    }

    #[test]
    fn unit_environment_problems_are_errors() {
        let n = Node::compliant();
        n.replace(
            UNIT,
            "Environment=PORT=8080",
            "Environment=\"ENABLE_SIGNUP=true",
        );
        let a = n.audit();
        assert!(a.findings.is_empty(), "{a:#?}");
        assert_eq!(
            a.errors,
            vec![format!(
                "{UNIT} line 7: Environment= unterminated quote, line ignored"
            )]
        );
    }

    #[test]
    fn unit_environment_file_relative_and_optional() {
        let n = Node::compliant();
        n.write(
            "/etc/containers/systemd/extra.env",
            "ENABLE_ADMIN_EXPORT=True\n",
            0o600,
        );
        n.replace(UNIT, &format!("EnvironmentFile={ENV}\n"), &format!("EnvironmentFile={ENV}\nEnvironmentFile=extra.env\nEnvironmentFile=-/etc/owui/absent.env\n"));
        let a = n.audit();
        assert_finding(
            only(&a),
            "ENABLE_ADMIN_EXPORT",
            "False",
            "True",
            Severity::Fail,
            "/etc/containers/systemd/extra.env",
        );
        assert!(a.errors.is_empty(), "{a:#?}");
    }
}
