//! The agent's side of the site (docs/cluster.md): enrolment and renewal
//! ([`enrol`]), the control nodes' agent API ([`api`]) over the wire
//! format in [`wire`] and the TLS rules in [`tls`], the files a node keeps
//! ([`files`]), and the commands that tie them together ([`cmd`]); etcd's
//! configuration on control nodes ([`etcd_config`]) and the shared state
//! in etcd ([`state`]).

pub mod api;
pub mod cmd;
pub mod enrol;
pub mod etcd_config;
pub mod files;
pub mod firewall;
mod ledger;
pub mod presence;
pub mod site_view;
pub mod state;
pub mod tls;
pub mod wire;

/// An etcd error as the agent reports it: unreachable and refused writes
/// are worth a retry later (exit 1), the rest are what they say.
pub fn state_error(e: state::StateError) -> owui_bundle::Error {
    owui_bundle::Error::internal("the site's etcd", e.to_string())
}
