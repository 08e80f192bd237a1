//! The hardening audit run as one more health check, scoped to what the
//! node's role runs.

use owui_bundle::Role;

use std::time::Duration;

use super::engine::Policy;
use super::outcome::{CheckResult, Observation};
use crate::hardening::{self, Audit, HardeningConfig, Severity};
use crate::layout::Root;

pub const NAME: &str = "hardening";
pub const KIND: &str = "audit";
/// The audit reads files only; its result counts at once.
pub const POLICY: Policy = Policy {
    interval: Duration::from_secs(300),
    timeout: Duration::from_secs(30),
    failure_threshold: 1,
    success_threshold: 1,
};

/// Runs the audit; returns its findings and the check result they make.
pub fn run(root: &Root, role: Role, cfg: &HardeningConfig) -> (Audit, CheckResult) {
    let audit = hardening::audit(root.path(), &audit_scope(role, cfg));
    let result = hardening_result(&audit);
    (audit, result)
}

/// The hardening audit as one more check: drift is `degraded` (or `failed`
/// for a finding marked so), an audit that could not read its inputs is `unknown`.
fn hardening_result(audit: &Audit) -> CheckResult {
    if audit.findings.iter().any(|f| f.severity == Severity::Fail) {
        Ok(Observation::Fail(format!(
            "{} deviations from the secure defaults",
            audit.findings.len()
        )))
    } else if !audit.findings.is_empty() {
        Ok(Observation::Warn(format!(
            "{} deviations from the secure defaults",
            audit.findings.len()
        )))
    } else if let Some(e) = audit.errors.first() {
        Err(e.clone())
    } else {
        Ok(Observation::Ok(format!(
            "{} items match the secure defaults",
            audit.checked.len()
        )))
    }
}

/// Ports a role serves to other nodes, allowed beyond loopback on top of
/// the configured list: PostgreSQL, Redis, Sentinel, etcd on database nodes;
/// Ollama and vLLM on GPU nodes.
fn role_ports(role: Role) -> &'static [u16] {
    match role {
        Role::App => &[],
        Role::Db => &[5432, 6379, 26379, 2379, 2380],
        Role::Gpu => &[11434, 8000],
        Role::Allinone => &[],
    }
}

/// What the audit covers on this role: Open WebUI's settings only where
/// Open WebUI runs, Redis's only where Redis runs.
fn audit_scope(role: Role, cfg: &HardeningConfig) -> HardeningConfig {
    let mut scoped = cfg.clone();
    if !matches!(role, Role::App | Role::Allinone) {
        scoped.env_files.clear();
        scoped.quadlet_units.clear();
    }
    if !matches!(role, Role::Db | Role::Allinone) {
        scoped.redis_conf = std::path::PathBuf::new();
    }
    scoped.allowed_ports.extend_from_slice(role_ports(role));
    scoped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_covers_what_the_role_runs() {
        let cfg = HardeningConfig::default();
        let db = audit_scope(Role::Db, &cfg);
        assert!(db.env_files.is_empty() && db.quadlet_units.is_empty());
        assert_eq!(db.redis_conf, cfg.redis_conf);
        assert!(db.allowed_ports.contains(&5432) && db.allowed_ports.contains(&443));
        let app = audit_scope(Role::App, &cfg);
        assert_eq!(app.env_files, cfg.env_files);
        assert!(app.redis_conf.as_os_str().is_empty());
        assert!(!app.allowed_ports.contains(&5432));
        let all = audit_scope(Role::Allinone, &cfg);
        assert_eq!(
            (all.env_files, all.redis_conf),
            (cfg.env_files.clone(), cfg.redis_conf.clone())
        );
    }
}
