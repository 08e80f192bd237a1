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
pub mod state;
pub mod tls;
pub mod wire;
