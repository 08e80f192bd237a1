//! After a bundle apply: llama-server reads its models directory only when
//! it starts (and its unit does not start before the first bundle made the
//! directory), so when the set of `<name>.gguf` files changed on the live
//! node the agent restarts or starts it, for the new models to be served
//! without a reinstall. Ollama and vLLM pick models up themselves.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::health::{dbus::Bus, runtime, systemd};
use crate::layout::Root;

/// The unit that serves the models of the `gguf_models` directory.
pub const GGUF_BACKEND: &str = "llama-server.service";

/// The files llama-server would list from `dir` (none if it is missing).
pub fn gguf_files(dir: Option<&Path>) -> BTreeSet<OsString> {
    dir.and_then(|d| fs::read_dir(d).ok())
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// What happened to the backend after an apply.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "detail")]
pub enum BackendRestart {
    /// The models did not change, or the node is not the live system
    /// (`--root`): nothing to do.
    NotNeeded,
    /// Restarted, or started if it was not running.
    Restarted,
    /// The restart could not be asked for: why, and what to do.
    NotRestarted(String),
}

/// Restarts the backend when `before` and `after` differ on the live node.
pub fn after_apply(
    root: &Root,
    before: &BTreeSet<OsString>,
    after: &BTreeSet<OsString>,
) -> BackendRestart {
    if before == after || root.path() != Path::new("/") {
        return BackendRestart::NotNeeded;
    }
    let asked = runtime().map_err(|e| e.to_string()).and_then(|rt| {
        rt.block_on(async {
            let bus = Bus::connect(None).await?;
            systemd::restart(&bus, GGUF_BACKEND).await
        })
    });
    match asked {
        Ok(()) => {
            tracing::info!(unit = GGUF_BACKEND, "restarted for the new set of models");
            BackendRestart::Restarted
        }
        Err(why) => {
            tracing::warn!(unit = GGUF_BACKEND, %why, "not restarted");
            BackendRestart::NotRestarted(format!(
                "{why}; run `systemctl restart {GGUF_BACKEND}` to serve the new models"
            ))
        }
    }
}
