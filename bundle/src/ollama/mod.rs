//! Ollama models: packed from a GGUF file (plus optional template, system
//! prompt, license and parameters) into the blobs and manifest Ollama itself
//! would write, and materialised into Ollama's native model store
//! (`OLLAMA_MODELS`): `blobs/sha256-<hex>` and
//! `manifests/<host>/<namespace>/<model>/<tag>`.
//!
//! - `name.rs`: the model name grammar and where a name's manifest lives.
//! - `gguf.rs`: the GGUF header reader (architecture, file type, size).
//! - `manifest.rs`: the config and manifest JSON as Ollama writes it, and the
//!   check of a manifest against the signed item.
//! - `pack.rs`: build side, a spec's files into blobs.
//! - `materialise.rs`: node side, blobs from the content store into Ollama's
//!   model store.
//! - `gguf_files.rs`: node side, the same models as `<name>.gguf` files for
//!   llama.cpp's `llama-server`.

#[cfg(test)]
mod fixtures;
mod gguf;
mod gguf_files;
mod manifest;
mod materialise;
mod name;
mod pack;

pub use gguf_files::materialise_gguf_files;
pub use manifest::{check_manifest, MAX_MANIFEST};
pub use materialise::materialise;
pub use name::OllamaName;
pub use pack::pack;
