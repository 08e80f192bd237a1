//! The daemon's part in the site: keep this node's record in etcd (role,
//! addresses, agent version, health summary) under a lease that the
//! registration keeps alive, rewritten every few seconds with the current
//! health, so every node's `status` shows it and a dead node ages out.
//! With etcd unreachable the node's own checks go on; the outage is logged
//! once and retried with growing waits.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use owui_bundle::seed::Seed;

use super::etcd_config::TlsFiles;
use super::state::{self, ClusterState, HealthSummary, NodeRecord, NODE_TTL};
use crate::health::engine::{overall, State};

/// How often the record is rewritten with the current health.
const PUBLISH_EVERY: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where and how this node reaches the site's etcd.
pub struct Presence {
    pub seed: Seed,
    pub addresses: Vec<IpAddr>,
    pub endpoints: Vec<String>,
    pub tls: TlsFiles,
}

/// This node's presence, when its seed names a site (None: a node
/// alone). A node still enrolling is retried like an unreachable etcd:
/// its certificate is read at each attempt.
pub fn for_node(root: &crate::layout::Root, seed: &Seed) -> Option<Presence> {
    let cluster = seed.cluster.as_ref()?;
    let files = super::files::ClusterFiles::new(root).ok()?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    if let Some(c) = cluster.control.iter().find(|c| c.node == seed.node) {
        addresses.push(c.address);
    } else if let Some(a) = seed.network.as_ref().and_then(|n| n.address.as_ref()) {
        addresses.push(a.address);
    }
    Some(Presence {
        seed: seed.clone(),
        addresses,
        endpoints: super::etcd_config::client_endpoints(&cluster.control),
        tls: files.tls_files(),
    })
}

impl Presence {
    fn record(&self, health: HealthSummary) -> NodeRecord {
        NodeRecord {
            node: self.seed.node.clone(),
            role: self.seed.role,
            addresses: self.addresses.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            health,
            last_seen: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }

    /// Runs until the process ends.
    pub async fn run(self, health: impl Fn() -> HealthSummary) {
        let mut wait = Duration::from_secs(1);
        let mut in_outage = false;
        loop {
            let error = self.publish_until_error(&health, &mut in_outage).await;
            if !in_outage {
                wait = Duration::from_secs(1);
                tracing::warn!(error = %error, "this node's record is not in the site's etcd; retrying");
                in_outage = true;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    async fn publish_until_error(
        &self,
        health: &impl Fn() -> HealthSummary,
        in_outage: &mut bool,
    ) -> state::StateError {
        let connected = ClusterState::connect(&self.endpoints, &self.tls, &self.seed.node).await;
        let state = match connected {
            Ok(state) => state,
            Err(e) => return e,
        };
        let mut registration = match state.register(&self.record(health()), NODE_TTL).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        if std::mem::take(in_outage) {
            tracing::info!("this node's record is back in the site's etcd");
        }
        loop {
            tokio::time::sleep(PUBLISH_EVERY).await;
            if let Err(e) = registration.publish(&self.record(health())).await {
                return e;
            }
        }
    }
}

/// The overall state of `checks` and the names of those not healthy.
pub fn summary<'a>(checks: impl Iterator<Item = (&'a str, &'a State)> + Clone) -> HealthSummary {
    HealthSummary {
        state: overall(checks.clone().map(|(_, s)| s)),
        failing: checks
            .filter(|(_, s)| **s != State::Healthy)
            .map(|(n, _)| n.to_string())
            .collect(),
    }
}
