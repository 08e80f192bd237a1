//! Signed content for owui-appliance: the one format both `owui-builder` and
//! `owui-agent` speak. See docs/bundles.md for the file format.

// First: the test macro is used by the modules below.
#[cfg(test)]
#[macro_use]
mod refused_inputs;
// `string_serde!`, used by the seed's value types.
mod string_serde;

pub mod apply;
pub mod archive;
pub mod channels;
pub mod cluster;
pub mod command;
pub mod crash;
pub mod create;
pub mod digest;
pub mod error;
pub mod firmware;
pub mod first_admin;
pub mod fsutil;
pub mod generation;
pub mod have;
pub mod huggingface;
pub mod items;
pub mod manifest;
pub mod node_network;
pub mod oci;
pub mod ollama;
pub mod outcome;
pub mod parallel;
pub mod progress;
pub mod role;
pub mod seams;
pub mod seed;
pub mod sign;
pub mod space;
pub mod spec;
pub mod ssh_key;
pub mod store;
pub mod toml_loc;
pub(crate) mod tree;
pub mod trust;
pub mod unit_file;
pub mod upkeep;
pub mod verify;

pub use digest::Sha256Digest;
pub use error::{Error, Result};
pub use role::Role;
