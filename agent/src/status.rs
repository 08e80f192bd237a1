//! `owui-agent status`: what the node is, what is healthy and what is not,
//! since when and why, on one screen; `--json` gives the same facts as one
//! versioned document (schema in docs/status.md).
//!
//! The daemon (`owui-agent run`) is not built yet, so this command runs
//! every check of the node's role itself, once, concurrently.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::SystemTime;

use owui_bundle::generation::{AppliedBundle, ChannelState, Generations};
use owui_bundle::{Error, Result, Role};
use serde::Serialize;

use crate::config;
use crate::hardening::{self, Audit, HardeningConfig, Severity};
use crate::health::catalog::{self, CheckDef};
use crate::health::engine::{overall, run_bounded, CheckStatus, State};
use crate::health::outcome::{CheckResult, Observation};
use crate::layout::Root;

pub const SCHEMA: &str = "owui-status/1";

#[derive(Debug, Clone, Serialize)]
pub struct StatusDoc {
    pub schema: &'static str,
    pub node: String,
    pub role: Role,
    pub overall: State,
    pub daemon: Daemon,
    pub checks: Vec<CheckStatus>,
    /// Present on GPU roles.
    pub gpu: Option<Section>,
    pub bundles: Bundles,
    /// Present on database roles.
    pub backups: Option<Section>,
    pub hardening: Audit,
}

#[derive(Debug, Clone, Serialize)]
pub struct Daemon {
    pub running: bool,
    pub detail: String,
}

/// A part of the node that is reported but not yet checked.
#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub state: State,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bundles {
    pub generation: Option<u64>,
    pub channels: BTreeMap<String, ChannelState>,
    pub last_applied: Option<AppliedBundle>,
}

/// Exit code of `status` for each overall state (docs/exit-codes.md).
pub fn exit_code(state: State) -> u8 {
    match state {
        State::Healthy => 0,
        State::Degraded => 8,
        State::Failed => 9,
        State::Unknown => 10,
    }
}

async fn run_all(defs: Vec<CheckDef>) -> Vec<(CheckDef, CheckResult, std::time::Duration)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let tasks: Vec<_> = defs
        .into_iter()
        .map(|def| {
            let client = client.clone();
            tokio::spawn(async move {
                let (result, took) = run_bounded(def.run(&client), def.policy.timeout).await;
                (def, result, took)
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(r) = t.await {
            out.push(r);
        }
    }
    out
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

pub fn collect(root: &Root) -> Result<StatusDoc> {
    let (seed, node) = config::node(root)?;
    let cfg = config::load_agent_config(root)?;
    let defs = catalog::checks(seed.role, &cfg.health, root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Io {
            action: "starting the async runtime for",
            path: root.seed(),
            source: e,
        })?;
    let results = runtime.block_on(run_all(defs));
    let now = SystemTime::now();
    let mut checks: Vec<CheckStatus> = results
        .into_iter()
        .map(|(def, result, took)| {
            let mut status = CheckStatus::new(&def.name, def.kind, now);
            status.record(result, &def.policy, took, now);
            status
        })
        .collect();
    let audit = hardening::audit(root.path(), &audit_scope(seed.role, &cfg.hardening));
    let mut h = CheckStatus::new("hardening", "audit", now);
    let policy = crate::health::engine::Policy {
        interval: std::time::Duration::from_secs(cfg.health.interval_s.max(1)),
        timeout: std::time::Duration::from_secs(cfg.health.timeout_s.max(1)),
        failure_threshold: 1,
        success_threshold: 1,
    };
    h.record(
        hardening_result(&audit),
        &policy,
        std::time::Duration::ZERO,
        now,
    );
    checks.push(h);

    let current = Generations::open(&node.bundles_dir).and_then(|g| g.current())?;
    let bundles = Bundles {
        generation: current.as_ref().map(|c| c.generation),
        channels: current
            .as_ref()
            .map(|c| c.channels.clone())
            .unwrap_or_default(),
        last_applied: current.and_then(|c| c.applied),
    };
    let not_built = |detail: &str| Section {
        state: State::Unknown,
        detail: detail.to_string(),
    };
    Ok(StatusDoc {
        schema: SCHEMA,
        node: seed.node,
        role: seed.role,
        overall: overall(checks.iter().map(|c| &c.state)),
        daemon: Daemon {
            running: false,
            detail: "owui-agent run is not built yet; these checks ran now, in this command".into(),
        },
        checks,
        gpu: matches!(seed.role, Role::Gpu | Role::Allinone)
            .then(|| not_built("GPU checks are not built yet (issue #5)")),
        bundles,
        backups: matches!(seed.role, Role::Db | Role::Allinone)
            .then(|| not_built("the backup loop is not built yet")),
        hardening: audit,
    })
}

struct Paint {
    colour: bool,
}

impl Paint {
    fn state(&self, s: State) -> String {
        let word = s.as_str();
        if !self.colour {
            return word.to_string();
        }
        let code = match s {
            State::Healthy => "32",
            State::Degraded => "33",
            State::Failed => "31;1",
            State::Unknown => "90",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    }
}

/// The table an operator reads; `colour` only on a terminal.
pub fn render(doc: &StatusDoc, out: &mut impl Write, colour: bool) -> io::Result<()> {
    let p = Paint { colour };
    writeln!(
        out,
        "node {}  role {}  overall {}",
        doc.node,
        doc.role,
        p.state(doc.overall).to_uppercase()
    )?;
    writeln!(
        out,
        "daemon: {}",
        if doc.daemon.running {
            "running"
        } else {
            "not running"
        }
    )?;
    writeln!(out, "  {}", doc.daemon.detail)?;
    writeln!(out)?;
    let name_w = doc
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<name_w$}  {:<8}  {:<8}  {:<20}  DETAIL",
        "CHECK", "KIND", "STATE", "SINCE"
    )?;
    for c in &doc.checks {
        // Pad the plain word so colour codes do not break the columns.
        let pad = " ".repeat(8usize.saturating_sub(c.state.as_str().len()));
        writeln!(
            out,
            "{:<name_w$}  {:<8}  {}{pad}  {:<20}  {}",
            c.name,
            c.kind,
            p.state(c.state),
            c.since,
            c.detail
        )?;
    }
    writeln!(out)?;
    match (&doc.bundles.generation, &doc.bundles.last_applied) {
        (Some(g), Some(a)) => writeln!(
            out,
            "bundles   generation {g}; last applied {} seq {} ({}){}",
            a.channel,
            a.sequence,
            a.bundle,
            if a.downgrade_forced {
                ", DOWNGRADE forced"
            } else {
                ""
            }
        )?,
        _ => writeln!(out, "bundles   none applied")?,
    }
    for (name, s) in [("gpu", &doc.gpu), ("backups", &doc.backups)] {
        if let Some(s) = s {
            writeln!(out, "{name:<9} {}: {}", p.state(s.state), s.detail)?;
        }
    }
    if doc.hardening.findings.is_empty() {
        writeln!(
            out,
            "hardening no deviations in {} items checked",
            doc.hardening.checked.len()
        )?;
    } else {
        writeln!(
            out,
            "hardening {} deviations from the secure defaults:",
            doc.hardening.findings.len()
        )?;
        for f in &doc.hardening.findings {
            writeln!(
                out,
                "  {}: expected {}, found {} ({})",
                f.item, f.expected, f.found, f.source
            )?;
        }
    }
    for e in &doc.hardening.errors {
        writeln!(out, "  could not audit: {e}")?;
    }
    Ok(())
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
