//! Role images: spec → signed, reproducible GPT disk image (docs/images.md).

pub mod build;
mod content;
pub mod disk;
mod esp;
mod manifest;
mod mirror;
mod podman_store;
mod rootfs;
pub mod sbom;
pub mod spec;
mod uki;
pub mod verify;
mod verity;
