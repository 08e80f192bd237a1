//! The agent API's messages: one JSON request line from the client, one
//! JSON reply line from the server, over TLS (docs/cluster.md). Lines are
//! capped and reads time out, so a slow or hostile peer holds a
//! connection for seconds at most.

use std::time::Duration;

use owui_bundle::{Error, Result};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

/// Longest request or reply line: a CSR or a certificate chain is a few KiB.
pub const LINE_MAX: usize = 64 * 1024;
/// How long one side waits for the other's line.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// A node that has no certificate yet: its seed's name and role, the
    /// join token bound to them, and a CSR for the key it made.
    Enrol {
        node: String,
        role: String,
        token: String,
        csr: String,
    },
    /// An enrolled node (known by the client certificate it presented)
    /// asking for a new certificate for a new key.
    Renew { csr: String },
}

/// The server's answer: a certificate and the CA, or why not with the exit
/// code the client should end with (docs/exit-codes.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refusal {
    pub code: u8,
    pub error: String,
}

impl Reply {
    pub fn issued(cert: String, ca: String) -> Reply {
        Reply {
            cert: Some(cert),
            ca: Some(ca),
            refused: None,
        }
    }

    pub fn refused(e: &Error) -> Reply {
        Reply {
            cert: None,
            ca: None,
            refused: Some(Refusal {
                code: e.exit_code(),
                error: e.to_string(),
            }),
        }
    }
}

/// Reads one line (without its newline) of at most LINE_MAX bytes and
/// parses it; `peer` names the other side in errors.
pub async fn read<T, R>(reader: &mut BufReader<R>, peer: &str) -> Result<T>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut line = Vec::new();
    let read = async {
        let mut limited = reader.take(LINE_MAX as u64 + 1);
        limited.read_until(b'\n', &mut line).await
    };
    let n = tokio::time::timeout(LINE_TIMEOUT, read)
        .await
        .map_err(|_| {
            Error::invalid(
                peer,
                format!(
                    "sent no complete line in {}",
                    humantime::format_duration(LINE_TIMEOUT)
                ),
            )
        })?
        .map_err(|e| Error::invalid(peer, format!("reading: {e}")))?;
    if n == 0 {
        return Err(Error::invalid(
            peer,
            "closed the connection without a reply",
        ));
    }
    if line.len() > LINE_MAX {
        return Err(Error::invalid(
            peer,
            format!("sent a line over the {LINE_MAX} bytes allowed"),
        ));
    }
    serde_json::from_slice(&line).map_err(|e| {
        Error::invalid(
            peer,
            format!("sent a message that is not the agent API's: {e}"),
        )
    })
}

/// Writes `message` as one line.
pub async fn write<T: Serialize, W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &T,
    peer: &str,
) -> Result<()> {
    let mut line = serde_json::to_vec(message)
        .map_err(|e| Error::internal("encoding an agent API message", e.to_string()))?;
    line.push(b'\n');
    let write = async {
        writer.write_all(&line).await?;
        writer.flush().await
    };
    tokio::time::timeout(LINE_TIMEOUT, write)
        .await
        .map_err(|_| Error::invalid(peer, "did not take our message in time"))?
        .map_err(|e| Error::invalid(peer, format!("writing: {e}")))
}
