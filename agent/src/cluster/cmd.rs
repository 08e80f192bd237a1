//! `owui-agent cluster …`: each verb as one function for main.rs.

use std::time::{Duration, SystemTime};

use owui_bundle::cluster::token::{utc, JoinToken};
use owui_bundle::seed::parse_role;
use owui_bundle::{Error, Result};
use serde::Serialize;

use super::enrol::{self, seed_cluster, Joined};
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
