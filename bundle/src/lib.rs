//! Signed content for owui-appliance: the one format both `owui-builder` and
//! `owui-agent` speak. See docs/bundles.md for the file format.

pub mod command;
pub mod digest;
pub mod error;
pub mod fsutil;
pub mod huggingface;
pub mod items;
pub mod oci;
pub mod ollama;
pub mod role;
pub mod spec;
pub mod store;

pub use digest::Sha256Digest;
pub use error::{Error, Result};
pub use role::Role;
