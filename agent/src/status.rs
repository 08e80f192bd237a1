//! `owui-agent status`: what the node is, what is healthy and what is not,
//! since when and why, on one screen; `--json` gives the same facts as one
//! versioned document (schema in docs/status.md).
//!
//! With the daemon running, `status` asks it over its local socket and shows
//! states with their history; without it, this command runs every check of
//! the node's role itself, once, concurrently, and says so.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use owui_bundle::generation::{AppliedBundle, ChannelState, Generations};
use owui_bundle::{Result, Role};
use serde::{Deserialize, Serialize};

use owui_bundle::apply::Node;

use crate::config::{self, Seed};
use crate::firstboot;
use crate::hardening::Audit;
use crate::health;
use crate::health::catalog::{self, CheckDef, Probes};
use crate::health::engine::{overall, run_bounded, CheckStatus, State};
use crate::health::outcome::CheckResult;
use crate::health::space::{self, Partition, Sources};
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
    /// Free space of each watched filesystem (`[health] disks`), looked at
    /// when `status` runs.
    #[serde(default)]
    pub partitions: Vec<Partition>,
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
    /// The site this node is in, read from etcd when `status` runs; absent
    /// on a node alone (docs/cluster.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<crate::cluster::site_view::SiteView>,
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

/// `status` of a node the first-boot gate holds (docs/status.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitingDoc {
    pub schema: String,
    /// Failed: the node serves nothing until the fix.
    pub overall: State,
    pub first_boot: Vec<firstboot::Problem>,
}

/// The waiting document when the gate holds the node, else None.
pub fn waiting(root: &Root) -> Option<WaitingDoc> {
    match firstboot::recorded(root)? {
        firstboot::Gate::Waiting { problems } => Some(WaitingDoc {
            schema: SCHEMA.to_string(),
            overall: State::Failed,
            first_boot: problems,
        }),
        firstboot::Gate::Open { .. } => None,
    }
}

/// The gate's message as the console showed it, or the document.
pub fn print_waiting(doc: &WaitingDoc, json: bool) -> io::Result<()> {
    let text = if json {
        serde_json::to_string_pretty(doc).map_err(io::Error::from)?
    } else {
        firstboot::message(&doc.first_boot)
    };
    writeln!(io::stdout().lock(), "{text}")
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
    // read (data partition not mounted, say) the rest still reports.
    let read = if node.bundles_dir.exists() {
        Generations::open_read_only(&node.bundles_dir).and_then(|g| g.current())
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
        partitions: Vec::new(),
        gpu: matches!(seed.role, Role::Gpu | Role::Allinone).then(crate::gpu::health::section),
        bundles,
        backups: matches!(seed.role, Role::Db | Role::Allinone)
            .then(|| not_built("the backup loop is not built yet")),
        hardening,
        seed: None,
        site: None,
    })
}

/// Runs every check of the role once, now, in this process (the daemon is
/// not running).
pub fn collect_once(root: &Root) -> Result<StatusDoc> {
    let (seed, node) = config::node(root)?;
    let cfg = config::load_agent_config(root)?;
    let defs = catalog::checks(seed.role, &cfg.health, root)?;
    let runtime = crate::health::runtime()?;
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
    let path = root.host(&cfg.daemon.socket).ok()?;
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
    doc.partitions = partitions(root)?;
    doc.site = crate::cluster::site_view::collect(root);
    Ok(doc)
}

/// Every watched filesystem's space, now: statvfs is cheap, so this is
/// fresh even when the daemon answered.
fn partitions(root: &Root) -> Result<Vec<Partition>> {
    let cfg = config::load_agent_config(root)?;
    let limits = cfg.health.disk_limits();
    let sources = Sources::of(root)?;
    cfg.health
        .disks
        .iter()
        .map(|d| Ok(space::partition(d, &root.host(d)?, &limits, &sources)))
        .collect()
}

struct Paint {
    colour: bool,
}

impl Paint {
    fn state(&self, s: State) -> String {
        self.word(s, s.as_str())
    }

    /// `word` in the colour of state `s`.
    fn word(&self, s: State, word: &str) -> String {
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

/// Text from the node (a service's reply, a file's line, a path) as the
/// terminal shows it: control characters (C0, DEL, C1: ESC, CR, BEL, a
/// newline…) and the bidirectional overrides written as escapes (`\u{1b}`,
/// `\r`, `\u{9b}`), so no value can move the cursor, clear the screen,
/// reorder the text or forge a line of the table. Other text, UTF-8
/// included, stays as it is; `--json` keeps the exact text.
fn shown(text: &str) -> Cow<'_, str> {
    let hidden =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The table an operator reads; `colour` only on a terminal. Every value
/// from the node goes through [`shown`].
pub fn render(doc: &StatusDoc, out: &mut impl Write, colour: bool) -> io::Result<()> {
    let p = Paint { colour };
    writeln!(
        out,
        "node {}  role {}  overall {}",
        shown(&doc.node),
        doc.role,
        // Upper case before painting: "\x1b[31;1M" would delete lines.
        p.word(doc.overall, &doc.overall.as_str().to_uppercase())
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
    writeln!(out, "  {}", shown(&doc.daemon.detail))?;
    writeln!(out)?;
    let name_w = doc
        .checks
        .iter()
        .map(|c| shown(&c.name).chars().count())
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
            shown(&c.name),
            shown(&c.kind),
            p.state(c.state),
            shown(&c.since),
            shown(&c.detail)
        )?;
    }
    writeln!(out)?;
    render_partitions(&doc.partitions, out, &p)?;
    if let Some(site) = &doc.site {
        crate::cluster::site_view::render(site, out, |t| shown(t).into_owned())?;
    }
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
            shown(&a.channel),
            a.sequence,
            a.bundle,
            if a.downgrade_forced {
                ", DOWNGRADE forced"
            } else {
                ""
            }
        )?,
        _ => match &doc.bundles.error {
            Some(e) => writeln!(out, "bundles   unreadable: {}", shown(e))?,
            None => writeln!(out, "bundles   none applied")?,
        },
    }
    if let Some(g) = &doc.gpu {
        writeln!(
            out,
            "{:<9} {}: {}",
            "gpu",
            p.state(g.state),
            shown(&g.detail)
        )?;
        if g.drained.is_some() {
            writeln!(out, "          this node is DRAINED: routing takes it out")?;
        }
    }
    if let Some(s) = &doc.backups {
        writeln!(
            out,
            "{:<9} {}: {}",
            "backups",
            p.state(s.state),
            shown(&s.detail)
        )?;
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
                shown(&f.item),
                shown(&f.expected),
                shown(&f.found),
                shown(&f.source)
            )?;
        }
    }
    for e in &doc.hardening.errors {
        writeln!(out, "  could not audit: {}", shown(e))?;
    }
    Ok(())
}

/// One line per watched filesystem: where, which partition, its state and
/// the space left.
fn render_partitions(parts: &[Partition], out: &mut impl Write, p: &Paint) -> io::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    let mount_w = parts
        .iter()
        .map(|x| shown(&x.mount).chars().count())
        .max()
        .unwrap_or(0);
    let what = |x: &Partition| {
        let name = x.label.as_deref().or(x.device.as_deref()).unwrap_or("?");
        format!("{} {}", name, x.fstype.as_deref().unwrap_or("?"))
    };
    let what_w = parts
        .iter()
        .map(|x| shown(&what(x)).chars().count())
        .max()
        .unwrap_or(0);
    writeln!(out, "partitions")?;
    for x in parts {
        let pad = " ".repeat(8usize.saturating_sub(x.state.as_str().len()));
        writeln!(
            out,
            "  {:<mount_w$}  {:<what_w$}  {}{pad}  {}",
            shown(&x.mount),
            shown(&what(x)),
            p.state(x.state),
            shown(&x.detail)
        )?;
    }
    writeln!(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clears the screen, returns the cursor, rings the bell, a C1 CSI,
    /// a forged line and a right-to-left override, around readable UTF-8.
    const HOSTILE: &str = "é 日本\u{1b}[2J\rhealthy\u{7}\u{9b}31m\nredis healthy\u{202e}ok";
    const SHOWN: &str = "é 日本\\u{1b}[2J\\rhealthy\\u{7}\\u{9b}31m\\nredis healthy\\u{202e}ok";

    /// A document with the hostile text in every string the table shows.
    fn hostile_doc() -> StatusDoc {
        let h = HOSTILE;
        let check = serde_json::json!({
            "name": h, "kind": h, "state": "failed", "since": h, "detail": h,
            "last_error": h, "duration_ms": 1,
        });
        serde_json::from_value(serde_json::json!({
            "schema": SCHEMA, "node": h, "role": "allinone", "overall": "failed",
            "daemon": {"running": true, "detail": h},
            "checks": [check.clone(), check],
            "gpu": {"state": "failed", "detail": h, "drained": null,
                    "driver_version": null, "source": null, "gpus": []},
            "bundles": {"error": null, "generation": 3, "channels": {},
                        "last_applied": {"channel": h, "sequence": 2,
                            "bundle": format!("sha256:{}", "ab".repeat(32)),
                            "signed_by": h, "applied_at": 0}},
            "backups": {"state": "unknown", "detail": h},
            "hardening": {"findings": [{"item": h, "expected": h, "found": h,
                                        "severity": "fail", "source": h}],
                          "checked": [h], "errors": [h]},
        }))
        .unwrap()
    }

    /// The partition list: one aligned line per watched filesystem, the
    /// label (or the device) and type, the state, the space.
    #[test]
    fn the_partitions_are_listed_with_their_state_and_space() {
        let mut doc = hostile_doc();
        let part = |mount: &str, label: Option<&str>, fstype: &str, state: State, detail: &str| {
            Partition {
                mount: mount.into(),
                device: Some("dm-0".into()),
                label: label.map(str::to_string),
                fstype: Some(fstype.into()),
                read_only: false,
                size_bytes: 0,
                free_bytes: 0,
                used_percent: 0.0,
                partition_bytes: None,
                minimum_bytes: None,
                state,
                detail: detail.into(),
            }
        };
        doc.partitions = vec![
            part(
                "/var",
                Some("owui-data"),
                "ext4",
                State::Degraded,
                "1.5 GiB free of 3.0 GiB (50 % used), below the 2.0 GiB floor",
            ),
            part(
                "/",
                None,
                "erofs",
                State::Healthy,
                "read-only, 0 B free of 812.0 MiB (100 % used)",
            ),
        ];
        let mut out = Vec::new();
        render(&doc, &mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = "partitions\n  \
            /var  owui-data ext4  degraded  1.5 GiB free of 3.0 GiB (50 % used), below the 2.0 GiB floor\n  \
            /     dm-0 erofs      healthy   read-only, 0 B free of 812.0 MiB (100 % used)\n\n";
        assert!(text.contains(want), "{text}");
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["partitions"][0]["label"], "owui-data");
        assert_eq!(json["partitions"][0]["state"], "degraded");
    }

    #[test]
    fn the_table_escapes_control_characters_and_json_keeps_the_exact_text() {
        let doc = hostile_doc();
        let mut out = Vec::new();
        render(&doc, &mut out, false).unwrap();
        let text = String::from_utf8(out).unwrap();
        let controls: Vec<char> = text
            .chars()
            .filter(|&c| c != '\n' && (c.is_control() || ('\u{202a}'..='\u{2069}').contains(&c)))
            .collect();
        assert!(controls.is_empty(), "{controls:?} in:\n{text}");
        // One line per row: a newline in a value forges none.
        assert_eq!(text.lines().count(), 14, "{text}");
        assert!(text.contains(SHOWN), "{text}");
        assert!(text.contains("é 日本"), "UTF-8 stays readable: {text}");
        // Colour adds only the renderer's own SGR codes around states.
        let mut coloured = Vec::new();
        render(&doc, &mut coloured, true).unwrap();
        let coloured = String::from_utf8(coloured).unwrap();
        assert_eq!(
            coloured
                .replace("\u{1b}[31;1m", "")
                .replace("\u{1b}[90m", "")
                .replace("\u{1b}[0m", ""),
            text
        );
        let json = serde_json::to_value(&doc).unwrap();
        assert_eq!(json["checks"][0]["detail"], HOSTILE);
        assert_eq!(json["hardening"]["findings"][0]["found"], HOSTILE);
    }
}
