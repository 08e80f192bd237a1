//! What can go wrong talking to etcd, and how etcd-client's errors are
//! sorted into it.

use serde::Serialize;

/// What went wrong talking to etcd. Each variant is one thing a caller or an
/// operator acts on differently.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// No member answered; every endpoint tried is named with its reason.
    #[error("no etcd member could be reached: {}", list_failures(.0))]
    Unreachable(Vec<EndpointFailure>),

    /// The backend reached its space quota: etcd raised its NOSPACE alarm
    /// and refuses every write on every member until an operator frees
    /// space and disarms the alarm.
    #[error(
        "etcd refuses writes: its database reached the space quota (NOSPACE alarm{}); \
         compact and defragment it, then disarm the alarm (docs/cluster.md, \"Full quota\")",
        .0.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    NoSpace(Option<String>),

    /// The key changed since this writer read it: a newer writer won.
    #[error(
        "{key}: changed by another writer (expected revision {expected}, found {}); \
         re-read it before writing",
        match .found { Some(r) => r.to_string(), None => "it deleted".to_string() }
    )]
    Conflict {
        key: String,
        expected: i64,
        found: Option<i64>,
    },

    /// The node's record is gone: its lease expired (its keep-alives
    /// stopped reaching etcd for longer than the TTL) or a newer start of
    /// the node left. Register again.
    #[error("node {node}'s record is gone (its lease expired or it was removed); register again")]
    LeaseExpired { node: String },

    /// A value under our prefix that is not what we write.
    #[error("{key}: malformed record: {detail}")]
    Malformed { key: String, detail: String },

    /// An argument that cannot become a key (an empty or odd token id, a
    /// serial that is not hex).
    #[error("{what}: {detail}")]
    Invalid { what: String, detail: String },

    /// A TLS file that cannot be read or used.
    #[error("{path}: {detail}")]
    Tls { path: String, detail: String },

    /// A failure of ours, not of etcd or its data.
    #[error("{what}: {detail} (an internal error of this program)")]
    Internal { what: String, detail: String },

    /// etcd answered with an error that is none of the above.
    #[error("etcd refused {action} at {endpoint}: {detail}")]
    Refused {
        action: &'static str,
        endpoint: String,
        detail: String,
    },
}

/// One member that could not be reached, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointFailure {
    pub endpoint: String,
    pub reason: String,
}

fn list_failures(failures: &[EndpointFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("{} ({})", f.endpoint, f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// An error and every cause under it, without repeats (tonic wraps the
/// same message several times).
pub(super) fn reason(error: &etcd_client::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut add = |text: String| {
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    };
    let mut source: Option<&dyn std::error::Error> = match error {
        etcd_client::Error::GRpcStatus(status) => {
            add(status.message().to_string());
            std::error::Error::source(status)
        }
        etcd_client::Error::TransportError(e) => Some(e),
        other => {
            add(other.to_string());
            None
        }
    };
    while let Some(e) = source {
        add(e.to_string());
        source = e.source();
    }
    if parts.is_empty() {
        error.to_string()
    } else {
        parts.join(": ")
    }
}

/// Whether `error` says the member could not be reached or could not serve
/// (no leader, timed out): another member may answer.
pub(super) fn unreachable(error: &etcd_client::Error) -> bool {
    use tonic::Code;
    match error {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
        _ => false,
    }
}

/// etcd's answer when the NOSPACE alarm is raised.
pub(super) fn no_space(error: &etcd_client::Error) -> bool {
    matches!(error, etcd_client::Error::GRpcStatus(status)
        if status.code() == tonic::Code::ResourceExhausted
            && status.message().contains("space exceeded"))
}
