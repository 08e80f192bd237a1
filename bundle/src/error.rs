//! The library's error type. Each variant maps to one documented exit code
//! (docs/exit-codes.md), so a script can tell "the bundle is bad" from
//! "the node refused it" from "the disk is full" without parsing text.

use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that is malformed: a spec, config, manifest or archive entry.
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },

    /// A signature, key or digest that does not check out.
    #[error("{what}: {detail}")]
    Untrusted { what: String, detail: String },

    /// Well-formed and authentic, but this node's policy refuses it
    /// (wrong role, replayed or older sequence).
    #[error("{what}: {detail}")]
    Refused { what: String, detail: String },

    /// Not enough free space (bytes or inodes), found before anything was written.
    #[error("not enough free space on {path}: need {needed} {unit}, {available} available")]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
        /// `bytes` or `inodes`.
        unit: &'static str,
    },

    /// An external program (skopeo, podman, ...) failed.
    #[error("{program} failed: {detail}")]
    Tool { program: String, detail: String },

    /// A failure of ours, not of the input: serialising our own JSON,
    /// making a certificate, watching a signal, finding our own path.
    #[error("{what}: {detail} (an internal error of this program, not a problem with its input)")]
    Internal { what: String, detail: String },

    /// An I/O error on a named path.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn untrusted(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Untrusted {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn refused(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Refused {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn internal(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Internal {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub fn tool(program: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Tool {
            program: program.into(),
            detail: detail.into(),
        }
    }

    /// The process exit code documented in docs/exit-codes.md.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC) => 6,
            Error::Io { .. } | Error::Internal { .. } => 1,
            Error::Invalid { .. } => 3,
            Error::Untrusted { .. } => 4,
            Error::Refused { .. } => 5,
            Error::NoSpace { .. } => 6,
            Error::Tool { .. } => 7,
        }
    }

    /// A short machine-readable name for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            3 => "invalid",
            4 => "untrusted",
            5 => "refused",
            6 => "no-space",
            7 => "tool",
            _ if matches!(self, Error::Internal { .. }) => "internal",
            _ => "io",
        }
    }
}

/// Attaches an action and a path to an `io::Error`.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_failures_are_not_blamed_on_the_input() {
        let e = Error::internal("stage output", "key must be a string");
        assert_eq!((e.exit_code(), e.kind()), (1, "internal"));
        assert!(e.to_string().contains("internal error"), "{e}");
        let e = Error::invalid("seed.toml", "line 2: unknown field");
        assert_eq!((e.exit_code(), e.kind()), (3, "invalid"));
    }
}
