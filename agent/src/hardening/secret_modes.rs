//! **Secret file modes**: `chmod 600 .env`, applied to the
//! environment files (they hold `WEBUI_SECRET_KEY`) and to
//! everything under the configured secret paths.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::files::{io_reason, under_root};
use super::{Audit, Scope, Severity};

/// Entries visited under all the secret paths together.
const MAX_SECRET_ENTRIES: usize = 10_000;
/// Directory depth under one secret path.
const MAX_SECRET_DEPTH: usize = 16;

/// Permission bits allowed on a secret: 0600 and anything stricter.
const SECRET_MODE_MAX: u32 = 0o600;

pub(super) fn check_secret_mode(a: &mut Audit, path: &Path, mode: u32) {
    a.checked.push(format!("mode of {}", path.display()));
    let perm = mode & 0o7777;
    if perm & !SECRET_MODE_MAX == 0 {
        return;
    }
    // Any group/other access is an open door; an owner execute bit or a
    // set-id bit is only untidy.
    let severity = if perm & 0o077 != 0 {
        Severity::Fail
    } else {
        Severity::Warn
    };
    a.finding(
        severity,
        "secret file mode",
        "0600 or stricter",
        format!("{perm:04o}"),
        path.display().to_string(),
    );
}

pub(super) fn audit_secret_paths(s: &mut Scope<'_>, a: &mut Audit) {
    let (root, cfg, mode_checked) = (s.root, s.cfg, &mut s.mode_checked);
    let mut budget = MAX_SECRET_ENTRIES;
    for path in &cfg.secret_files {
        let host = match under_root(root, path) {
            Ok(host) => host,
            Err(reason) => {
                a.errors
                    .push(format!("secret path {}: {reason}", path.display()));
                continue;
            }
        };
        // The configured path itself may be a link (to a data partition).
        match fs::metadata(&host) {
            Err(e) => a
                .errors
                .push(format!("secret path {}: {}", path.display(), io_reason(&e))),
            Ok(meta) if meta.is_dir() => {
                walk_secret_dir(&host, path, 0, &mut budget, mode_checked, a)
            }
            Ok(meta) if meta.is_file() => {
                if mode_checked.insert(host) {
                    check_secret_mode(a, path, meta.permissions().mode());
                }
            }
            Ok(_) => a.errors.push(format!(
                "secret path {}: neither a file nor a directory: cannot audit",
                path.display()
            )),
        }
    }
}

fn walk_secret_dir(
    host: &Path,
    path: &Path,
    depth: usize,
    budget: &mut usize,
    mode_checked: &mut BTreeSet<PathBuf>,
    a: &mut Audit,
) {
    if depth >= MAX_SECRET_DEPTH {
        a.errors.push(format!(
            "secret directory {}: deeper than {MAX_SECRET_DEPTH} levels: not audited",
            path.display()
        ));
        return;
    }
    let entries = match fs::read_dir(host) {
        Ok(entries) => entries,
        Err(e) => {
            a.errors.push(format!(
                "secret directory {}: {}",
                path.display(),
                io_reason(&e)
            ));
            return;
        }
    };
    let mut names: Vec<OsString> = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => names.push(entry.file_name()),
            Err(e) => a.errors.push(format!(
                "secret directory {}: {}",
                path.display(),
                io_reason(&e)
            )),
        }
        if names.len() > *budget {
            break;
        }
    }
    names.sort();
    for name in names {
        let child_path = path.join(&name);
        if *budget == 0 {
            a.errors.push(format!(
                "secret path {}: more than {MAX_SECRET_ENTRIES} entries: rest not audited",
                child_path.display()
            ));
            return;
        }
        *budget -= 1;
        let child_host = host.join(&name);
        match fs::symlink_metadata(&child_host) {
            Err(e) => a.errors.push(format!(
                "secret path {}: {}",
                child_path.display(),
                io_reason(&e)
            )),
            Ok(meta) if meta.file_type().is_symlink() => a.errors.push(format!(
                "secret path {}: symbolic link, not followed: cannot audit",
                child_path.display()
            )),
            Ok(meta) if meta.is_dir() => {
                walk_secret_dir(&child_host, &child_path, depth + 1, budget, mode_checked, a)
            }
            Ok(meta) if meta.is_file() => {
                if mode_checked.insert(child_host) {
                    check_secret_mode(a, &child_path, meta.permissions().mode());
                }
            }
            // Sockets, FIFOs, devices: not secrets at rest.
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardening::fixture::*;
    use crate::hardening::{audit, HardeningConfig};

    #[test]
    fn secret_modes() {
        let n = Node::compliant();
        n.write(&format!("{SECRETS}/vllm-api-key"), "x\n", 0o644);
        let a = n.audit();
        assert_finding(
            only(&a),
            "secret file mode",
            "0600 or stricter",
            "0644",
            Severity::Fail,
            "/etc/owui/secrets/vllm-api-key",
        );

        for (mode, severity) in [
            (0o640, Severity::Fail),
            (0o602, Severity::Fail),
            (0o700, Severity::Warn),
            (0o4600, Severity::Warn),
        ] {
            let n = Node::compliant();
            n.write(&format!("{SECRETS}/tls/privkey.pem"), "x\n", mode);
            assert_finding(
                only(&n.audit()),
                "secret file mode",
                "0600 or stricter",
                &format!("{mode:04o}"),
                severity,
                "/etc/owui/secrets/tls/privkey.pem",
            );
        }

        // The env file is a secret too (the guide's chmod 600 .env).
        let n = Node::compliant();
        fs::set_permissions(n.host(ENV), fs::Permissions::from_mode(0o644)).unwrap();
        assert_finding(
            only(&n.audit()),
            "secret file mode",
            "0600 or stricter",
            "0644",
            Severity::Fail,
            ENV,
        );

        // A link inside the secrets is not followed; a missing path is unknown.
        let n = Node::compliant();
        std::os::unix::fs::symlink("/etc/passwd", n.host(&format!("{SECRETS}/link"))).unwrap();
        let a = n.audit();
        assert!(a.findings.is_empty());
        assert_eq!(
            a.errors,
            vec![format!(
                "secret path {SECRETS}/link: symbolic link, not followed: cannot audit"
            )]
        );
        fs::remove_dir_all(n.host(SECRETS)).unwrap();
        assert_eq!(
            n.audit().errors,
            vec![format!("secret path {SECRETS}: not found: cannot audit")]
        );

        // A single secret file may be named directly.
        let n = Node::compliant();
        let cfg = HardeningConfig {
            secret_files: vec![PathBuf::from("/etc/owui/secrets/postgres-password")],
            ..HardeningConfig::default()
        };
        fs::set_permissions(
            n.host("/etc/owui/secrets/postgres-password"),
            fs::Permissions::from_mode(0o664),
        )
        .unwrap();
        let a = audit(n.root(), &cfg);
        assert_finding(
            only(&a),
            "secret file mode",
            "0600 or stricter",
            "0664",
            Severity::Fail,
            "/etc/owui/secrets/postgres-password",
        );
    }
}
