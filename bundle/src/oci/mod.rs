//! OCI images. The build side reads an OCI image layout (or an oci-archive
//! of one), checks every blob against its digest and packs the manifest,
//! config and layers as they are, so digests survive the trip. The node side
//! writes the blobs back out as a layout (hard links into the content store)
//! and has skopeo copy each image into podman's storage with
//! `--preserve-digests`: the digest podman reports is the one we signed.
//!
//! - `reference.rs`: `ImageReference`, the image reference grammar and its
//!   normal form.
//! - `layout.rs`: reading and checking an OCI image layout.
//! - `pack.rs`: build side, an image from a layout or oci-archive into blobs.
//! - `materialise.rs`: node side, images from the content store written out
//!   as an OCI image layout.
//! - `podman.rs`: podman's image storage: import, remove, look up.

#[cfg(test)]
mod fixtures;
mod layout;
mod materialise;
mod pack;
mod podman;
pub mod reference;

pub use layout::{lists, Listed, Lists, OCI_MANIFEST};
pub use materialise::write_layout;
pub use pack::pack;
pub use podman::{import, remove, stored_digest, unmount_below, PodmanStore};
pub use reference::{check_reference, ImageReference};
