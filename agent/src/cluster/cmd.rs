//! `owui-agent cluster …`: each verb as one function for main.rs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use owui_bundle::cluster::ca::ClusterCa;
use owui_bundle::cluster::site::AGENT_API_PORT;
use owui_bundle::cluster::token::{utc, JoinToken};
use owui_bundle::fsutil::write_atomic;
use owui_bundle::seed::{parse_role, NodeName, Seed};
use owui_bundle::{Error, Result};
use serde::Serialize;

use super::api::{self, Authority};
use super::enrol::{self, seed_cluster, Joined};
use super::etcd_config::client_endpoints;
use super::etcd_config::TlsFiles;
use super::files::ClusterFiles;
use super::state::{ClusterState, NodeRecord};
use super::tls;
use crate::config::load_seed;
use crate::layout::Root;

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal("starting the async runtime", e.to_string()))
}

pub fn join(
    root: &Root,
    token: Option<&str>,
    patience: Duration,
    if_seeded: bool,
) -> Result<Joined> {
    if if_seeded && load_seed(root)?.cluster.is_none() {
        return Ok(Joined::alone(&load_seed(root)?));
    }
    let token = token
        .map(|t| {
            t.parse::<JoinToken>()
                .map_err(|e| Error::invalid("--token", e.to_string()))
        })
        .transpose()?;
    runtime()?.block_on(enrol::join(root, token, patience))
}

pub fn renew(root: &Root, force: bool, patience: Duration) -> Result<Joined> {
    runtime()?.block_on(enrol::renew(root, force, patience))
}

pub fn print_joined(j: &Joined) {
    let Some(cert) = &j.certificate else {
        println!("{} ({}) runs alone: its seed names no site", j.node, j.role);
        return;
    };
    let via = j
        .via
        .as_deref()
        .map(|v| format!(" through control node {v}"))
        .unwrap_or_default();
    println!(
        "{} ({}) {} in site {}{via}: certificate {} valid until {}",
        j.node, j.role, j.action, cert.site, cert.serial, cert.not_after
    );
}

#[derive(Debug, Serialize)]
pub struct TokenMade {
    pub node: String,
    pub role: String,
    pub expires: String,
    pub token: String,
}

/// A join token made with the token key of this control node's seed.
pub fn token_create(root: &Root, node: &str, role: &str, ttl: Duration) -> Result<TokenMade> {
    let seed = load_seed(root)?;
    let cluster = seed_cluster(&seed)?;
    let secrets = cluster.control_secrets.as_ref().ok_or_else(|| {
        Error::refused(
            "cluster token create",
            format!(
                "{} is not a control node: tokens are made where the token key is",
                seed.node
            ),
        )
    })?;
    let key = secrets.token_key("the node seed: [cluster.control_secrets] token_key")?;
    let node = node
        .parse()
        .map_err(|e: Error| Error::invalid("--node", e.to_string()))?;
    let role = parse_role(role).map_err(|e| Error::invalid("--role", e.to_string()))?;
    let token = key.issue(cluster.site.as_str(), &node, role, SystemTime::now(), ttl)?;
    Ok(TokenMade {
        node: node.to_string(),
        role: role.to_string(),
        expires: utc(token.expires()),
        token: token.to_string(),
    })
}

pub fn print_token(t: &TokenMade) {
    eprintln!(
        "single-use join token for {} as {}, valid until {} (give it to the node: owui-agent cluster join --token TOKEN):",
        t.node, t.role, t.expires
    );
    println!("{}", t.token);
}

/// The etcd endpoints and TLS files of an enrolled node.
fn etcd_access(root: &Root) -> Result<(Seed, Vec<String>, TlsFiles)> {
    let seed = load_seed(root)?;
    let cluster = seed_cluster(&seed)?;
    let files = ClusterFiles::new(root)?;
    if files.load(&cluster.ca_pin)?.is_none() {
        return Err(Error::invalid(
            files.cert().display().to_string(),
            "missing: the node has not enrolled (`owui-agent cluster join`)",
        ));
    }
    let endpoints = client_endpoints(&cluster.control);
    let tls = files.tls_files();
    Ok((seed, endpoints, tls))
}

async fn connect(root: &Root) -> Result<(Seed, ClusterState)> {
    let (seed, endpoints, tls) = etcd_access(root)?;
    let state = ClusterState::connect(&endpoints, &tls, &seed.node)
        .await
        .map_err(super::state_error)?;
    Ok((seed, state))
}

/// Runs the agent API of this control node until the process ends.
pub fn serve(root: &Root, cert_lifetime: Duration) -> Result<()> {
    let seed = load_seed(root)?;
    let cluster = seed_cluster(&seed)?;
    let secrets = cluster.control_secrets.as_ref().ok_or_else(|| {
        Error::refused(
            "cluster serve",
            format!(
                "{} is not a control node of site {}",
                seed.node, cluster.site
            ),
        )
    })?;
    let me = cluster
        .control
        .iter()
        .find(|c| c.node == seed.node)
        .ok_or_else(|| {
            Error::internal("the node seed", "control node missing from its own list")
        })?;
    let what = "the node seed: [cluster.control_secrets]";
    let ca = secrets.ca(what)?;
    let token_key = secrets.token_key(what)?;
    let files = ClusterFiles::new(root)?;
    let enrolment = files.load(&cluster.ca_pin)?.ok_or_else(|| {
        Error::invalid(
            files.cert().display().to_string(),
            "missing: run `owui-agent cluster join` first (owui-cluster-join.service)",
        )
    })?;
    let tls = tls::api_server(&ca.cert_pem, enrolment.identity()?, Vec::new())?;
    let listen = SocketAddr::new(me.address, AGENT_API_PORT);
    let site = cluster.site.to_string();
    let runtime = crate::health::runtime()?;
    let crl_file = files.crl();
    runtime.block_on(async move {
        // etcd may start after this service (or be waiting for its peers):
        // wait for it, saying why, rather than fail.
        let mut wait = Duration::from_millis(500);
        let state = loop {
            match connect(root).await {
                Ok((_, state)) => break state,
                Err(e) => {
                    tracing::warn!(error = %e, "the agent API waits for the site's etcd");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        tokio::spawn(keep_crl(state.clone(), ca.clone(), crl_file));
        let authority = Authority {
            site,
            ca,
            token_key,
            ledger: state,
            cert_lifetime,
        };
        api::serve(listen, tls, Arc::new(authority)).await
    })
}

/// Rewrites this control node's CRL (etcd reads it at every handshake)
/// whenever the site's revocations change, within CRL_POLL.
async fn keep_crl(state: ClusterState, ca: ClusterCa, file: std::path::PathBuf) {
    const CRL_POLL: Duration = Duration::from_secs(3);
    let mut written = None;
    loop {
        match state.revoked().await {
            Ok(revoked) if Some(&revoked) != written.as_ref() => {
                let serials: Vec<String> = revoked.iter().cloned().collect();
                let number = owui_bundle::cluster::ca::unix_secs(SystemTime::now());
                let done = ca
                    .crl(&serials, number, SystemTime::now())
                    .and_then(|pem| write_atomic(&file, pem.as_bytes(), 0o644));
                match done {
                    Ok(()) => {
                        tracing::info!(revoked = serials.len(), "wrote the CRL etcd reads");
                        written = Some(revoked);
                    }
                    Err(e) => tracing::warn!(error = %e, "writing the CRL"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reading revocations"),
        }
        tokio::time::sleep(CRL_POLL).await;
    }
}

#[derive(Debug, Serialize)]
pub struct Removed {
    pub node: String,
    pub revoked_serials: Vec<String>,
}

/// Removes `node` from the site: every certificate issued to it is revoked
/// (its renewals refused from now on).
pub fn remove(root: &Root, node: &str) -> Result<Removed> {
    let node: NodeName = node
        .parse()
        .map_err(|e: Error| Error::invalid("NODE", e.to_string()))?;
    runtime()?.block_on(async {
        let (_, state) = connect(root).await?;
        let serials = state.issued(&node).await.map_err(super::state_error)?;
        state
            .revoke(&node, &serials)
            .await
            .map_err(super::state_error)?;
        Ok(Removed {
            node: node.to_string(),
            revoked_serials: serials,
        })
    })
}

pub fn print_removed(r: &Removed) {
    println!(
        "{} removed from the site: {} certificates revoked; it enrols again only with a new join token",
        r.node,
        r.revoked_serials.len()
    );
}

/// Every node's record in etcd.
pub fn nodes(root: &Root) -> Result<Vec<NodeRecord>> {
    runtime()?.block_on(async {
        let (_, state) = connect(root).await?;
        state.nodes().await.map_err(super::state_error)
    })
}

pub fn print_nodes(nodes: &Vec<NodeRecord>) {
    println!(
        "{:<24} {:<9} {:<16} {:<9} LAST SEEN",
        "NODE", "ROLE", "ADDRESS", "HEALTH"
    );
    for n in nodes {
        println!(
            "{:<24} {:<9} {:<16} {:<9} {}",
            n.node,
            n.role,
            n.addresses
                .first()
                .map(|a| a.to_string())
                .unwrap_or_default(),
            n.health.state.as_str(),
            n.last_seen
        );
    }
}
