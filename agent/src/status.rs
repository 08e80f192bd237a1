//! `owui-agent status`: what the node is, what is healthy and what is not,
//! since when and why, on one screen; `--json` gives the same facts as one
//! versioned document (schema in docs/status.md).
//!
//! With the daemon running, `status` asks it over its local socket and shows
//! states with their history; without it, this command runs every check of
//! the node's role itself, once, concurrently, and says so.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use owui_bundle::generation::{AppliedBundle, ChannelState, Generations};
use owui_bundle::{Result, Role};
use serde::{Deserialize, Serialize};

use owui_bundle::apply::Node;

use crate::config::{self, Seed};
use crate::hardening::Audit;
use crate::health;
use crate::health::catalog::{self, CheckDef, Probes};
use crate::health::engine::{overall, run_bounded, CheckStatus, State};
use crate::health::outcome::CheckResult;
use crate::layout::Root;
use crate::seed_cmd::{self, SeedOrigin};

pub const SCHEMA: &str = "owui-status/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusDoc {
    pub schema: String,
    pub node: String,
    pub role: Role,
    pub overall: State,
    pub daemon: Daemon,
    pub checks: Vec<CheckStatus>,
    /// Present on GPU roles: the last GPU check's findings.
    pub gpu: Option<crate::gpu::health::GpuSection>,
    pub bundles: Bundles,
    /// Present on database roles.
    pub backups: Option<Section>,
    pub hardening: Audit,
    /// How the node's seed was checked when it was imported; absent when
    /// no import recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<SeedOrigin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Daemon {
    pub running: bool,
    pub detail: String,
}

/// A part of the node that is reported but not yet checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Section {
    pub state: State,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundles {
    /// Why the bundle state could not be read, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

async fn run_all(
    defs: Vec<CheckDef>,
    probes: Probes,
) -> Vec<(CheckDef, CheckResult, std::time::Duration)> {
    let probes = std::sync::Arc::new(probes);
    let tasks: Vec<_> = defs
        .into_iter()
        .map(|def| {
            let probes = probes.clone();
            tokio::spawn(async move {
                let (result, took) = run_bounded(def.run(&probes), def.policy.timeout).await;
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

/// Puts the status document together from check results and what is on disk.
pub fn assemble(
    seed: &Seed,
    node: &Node,
    checks: Vec<CheckStatus>,
    hardening: Audit,
    daemon: Daemon,
) -> Result<StatusDoc> {
    // The bundle state is one section of the document: when it cannot be
    // read (content partition not mounted, say) the rest still reports.
    let read = if node.bundles_dir.exists() {
        Generations::open(&node.bundles_dir).and_then(|g| g.current())
    } else {
        Ok(None)
    };
    let (current, error) = match read {
        Ok(c) => (c, None),
        Err(e) => (None, Some(e.to_string())),
    };
    let bundles = Bundles {
        error,
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
        schema: SCHEMA.to_string(),
        node: seed.node.to_string(),
        role: seed.role,
        overall: overall(checks.iter().map(|c| &c.state)),
        daemon,
        checks,
        gpu: matches!(seed.role, Role::Gpu | Role::Allinone).then(crate::gpu::health::section),
        bundles,
        backups: matches!(seed.role, Role::Db | Role::Allinone)
            .then(|| not_built("the backup loop is not built yet")),
        hardening,
        seed: None,
    })
}

/// Runs every check of the role once, now, in this process (the daemon is
/// not running).
pub fn collect_once(root: &Root) -> Result<StatusDoc> {
    let (seed, node) = config::node(root)?;
    let cfg = config::load_agent_config(root)?;
    let defs = catalog::checks(seed.role, &cfg.health, root);
    let runtime = crate::health::runtime(root)?;
    let results = runtime.block_on(run_all(defs, Probes::new(&cfg.health)));
    let now = SystemTime::now();
    let mut checks: Vec<CheckStatus> = results
        .into_iter()
        .map(|(def, result, took)| {
            let mut status = CheckStatus::new(&def.name, def.kind, now);
            status.record(result, &def.policy, took, now);
            status
        })
        .collect();
    let (audit, result) = health::audit::run(root, seed.role, &cfg.hardening);
    let mut h = CheckStatus::new(health::audit::NAME, health::audit::KIND, now);
    h.record(result, &health::audit::POLICY, Duration::ZERO, now);
    checks.push(h);
    let daemon = Daemon {
        running: false,
        detail: "the agent daemon is not running; these checks ran now, in this command".into(),
    };
    assemble(&seed, &node, checks, audit, daemon)
}

/// Asks the running daemon over its socket; `None` when no daemon answers.
pub fn from_daemon(root: &Root) -> Option<StatusDoc> {
    let cfg = config::load_agent_config(root).ok()?;
    let path = root.host(&cfg.daemon.socket);
    let mut stream = std::os::unix::net::UnixStream::connect(path).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(b"status\n").ok()?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The daemon's answer when there is one, else a one-shot run.
pub fn collect(root: &Root) -> Result<StatusDoc> {
    let mut doc = match from_daemon(root) {
        Some(doc) => doc,
        None => collect_once(root)?,
    };
    doc.seed = seed_cmd::origin(root);
    Ok(doc)
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
    if let Some(SeedOrigin::Unsigned { from }) = &doc.seed {
        writeln!(
            out,
            "seed      NOT SIGNED: imported from {from} with --insecure-seed (lab only)"
        )?;
    }
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
        _ => match &doc.bundles.error {
            Some(e) => writeln!(out, "bundles   unreadable: {e}")?,
            None => writeln!(out, "bundles   none applied")?,
        },
    }
    if let Some(g) = &doc.gpu {
        writeln!(out, "{:<9} {}: {}", "gpu", p.state(g.state), g.detail)?;
        if g.drained.is_some() {
            writeln!(out, "          this node is DRAINED: routing takes it out")?;
        }
    }
    if let Some(s) = &doc.backups {
        writeln!(out, "{:<9} {}: {}", "backups", p.state(s.state), s.detail)?;
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
