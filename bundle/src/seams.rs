//! Test seams a test build may turn on and a release build never has. The
//! tests crate enables the features; `cargo build --release` of a binary
//! does not, so no file on a node can switch these on.

/// Whether the agent may use the GPU fixture in place of NVML.
pub const GPU_FIXTURE: bool = cfg!(feature = "gpu-fixture");
