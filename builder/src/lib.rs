//! owui-builder as a library: every verb of the `owui-builder` binary is one
//! function here, so `tests/` and the man-page generator reach the logic and
//! the CLI definition directly.

pub mod bundles;
pub mod cli;
pub mod cluster;
pub mod image;
pub mod images;
pub mod keys;
pub mod oci;
pub mod pull;
pub mod seeds;
