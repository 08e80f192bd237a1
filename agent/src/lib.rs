//! owui-agent as a library: every verb of the `owui-agent` binary is one
//! function here, so `tests/` and the man-page generator reach the logic and
//! the CLI definition directly.

pub mod as_root;
pub mod backend;
pub mod bundles;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod db_setup;
pub mod firstboot;
pub mod gpu;
pub mod hardening;
pub mod health;
pub mod layout;
pub mod node_secrets;
pub mod seed_cmd;
pub mod status;
pub mod trust_cmd;
