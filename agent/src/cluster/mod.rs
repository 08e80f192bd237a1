//! The agent's side of the site (docs/cluster.md): enrolment and renewal
//! ([`enrol`]), the control nodes' agent API ([`api`]) over the wire
//! format in [`wire`] and the TLS rules in [`tls`], the files a node keeps
//! ([`files`]), and the commands that tie them together ([`cmd`]).

pub mod api;
pub mod cmd;
pub mod enrol;
pub mod files;
pub mod tls;
pub mod wire;
