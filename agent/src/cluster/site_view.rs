//! The site as `owui-agent status` shows it on any enrolled node: every
//! node's record (role, addresses, health, last seen) and each etcd
//! member's reachability and alarms, read from etcd when `status` runs. A
//! node that cannot reach etcd says so and still shows its own checks.

use std::io::{self, Write};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::enrol::seed_cluster;
use super::files::ClusterFiles;
use super::state::{ClusterState, NodeRecord};
use crate::config::load_seed;
use crate::layout::Root;

/// The most `status` waits for etcd: it must answer a console quickly.
const SITE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteView {
    pub site: String,
    /// Each etcd member: its endpoint and "ok" or why it does not answer.
    pub members: Vec<MemberView>,
    /// Why the site could not be read (no member answered, NOSPACE…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub nodes: Vec<NodeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberView {
    pub endpoint: String,
    pub reachable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The site view, or None on a node whose seed names no site. An enrolled
/// node always gets a view; what failed is in it.
pub fn collect(root: &Root) -> Option<SiteView> {
    let seed = load_seed(root).ok()?;
    let cluster = seed_cluster(&seed).ok()?;
    let mut view = SiteView {
        site: cluster.site.to_string(),
        members: Vec::new(),
        error: None,
        nodes: Vec::new(),
    };
    let files = match ClusterFiles::new(root) {
        Ok(f) => f,
        Err(e) => {
            view.error = Some(e.to_string());
            return Some(view);
        }
    };
    match files.load(&cluster.ca_pin) {
        Ok(Some(_)) => {}
        Ok(None) => {
            view.error = Some("this node has not enrolled yet (owui-cluster-join.service)".into());
            return Some(view);
        }
        Err(e) => {
            view.error = Some(e.to_string());
            return Some(view);
        }
    }
    let endpoints = super::etcd_config::client_endpoints(&cluster.control);
    let tls = files.tls_files();
    let read = async {
        let state = ClusterState::connect(&endpoints, &tls, &seed.node).await?;
        let members = state.probe().await;
        let alarms = state.check_alarms().await.err();
        let nodes = state.nodes().await?;
        Ok::<_, super::state::StateError>((members, alarms, nodes))
    };
    let outcome = crate::health::runtime()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async { tokio::time::timeout(SITE_TIMEOUT, read).await })
                .map_err(|_| {
                    format!(
                        "etcd did not answer within {}",
                        humantime::format_duration(SITE_TIMEOUT)
                    )
                })
        });
    match outcome {
        Ok(Ok((members, alarm, nodes))) => {
            view.members = members
                .into_iter()
                .map(|m| match m {
                    Ok(endpoint) => MemberView {
                        endpoint,
                        reachable: true,
                        reason: None,
                    },
                    Err(f) => MemberView {
                        endpoint: f.endpoint,
                        reachable: false,
                        reason: Some(f.reason),
                    },
                })
                .collect();
            view.error = alarm.map(|a| a.to_string());
            view.nodes = nodes;
        }
        Ok(Err(e)) => view.error = Some(e.to_string()),
        Err(e) => view.error = Some(e),
    }
    Some(view)
}

/// The site's lines of the status table; `shown` makes node text safe for
/// a terminal.
pub fn render(
    view: &SiteView,
    out: &mut impl Write,
    shown: impl Fn(&str) -> String,
) -> io::Result<()> {
    writeln!(out, "site {}", shown(&view.site))?;
    if let Some(e) = &view.error {
        writeln!(out, "  cannot read the site: {}", shown(e))?;
    }
    for m in &view.members {
        match &m.reason {
            None => writeln!(out, "  etcd {}: ok", shown(&m.endpoint))?,
            Some(r) => writeln!(
                out,
                "  etcd {}: UNREACHABLE ({})",
                shown(&m.endpoint),
                shown(r)
            )?,
        }
    }
    if !view.nodes.is_empty() {
        writeln!(
            out,
            "  {:<24} {:<9} {:<16} {:<9} LAST SEEN",
            "NODE", "ROLE", "ADDRESS", "HEALTH"
        )?;
    }
    for n in &view.nodes {
        let address = n
            .addresses
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let failing = if n.health.failing.is_empty() {
            String::new()
        } else {
            format!(" (not healthy: {})", n.health.failing.join(", "))
        };
        writeln!(
            out,
            "  {:<24} {:<9} {:<16} {:<9} {}{}",
            shown(&n.node),
            n.role,
            address,
            n.health.state.as_str(),
            shown(&n.last_seen),
            shown(&failing)
        )?;
    }
    Ok(())
}
