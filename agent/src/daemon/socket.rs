//! The local API: a unix socket (root and the admin group, mode 0660) that
//! answers `status` with the status document, and the Prometheus endpoint.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};

use super::{metrics, Context};
use crate::config::DaemonConfig;
use crate::health::engine::overall;
use crate::layout::Root;

/// A request is one short line; anything longer is not one.
const REQUEST_MAX: u64 = 256;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

fn socket_path(root: &Root, cfg: &DaemonConfig) -> PathBuf {
    root.host(&cfg.socket)
}

/// The gid of `group` in the node's group file, if it exists.
fn group_gid(root: &Root, group: &str) -> Option<u32> {
    let text = fs::read_to_string(root.group()).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == group)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

pub fn bind(root: &Root, cfg: &DaemonConfig) -> Result<UnixListener> {
    let path = socket_path(root, cfg);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("creating", dir)?;
    }
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        return Err(Error::refused(
            path.display().to_string(),
            "another owui-agent daemon is answering on this socket",
        ));
    }
    // A socket file left by a daemon that died is stale: nobody answers on it.
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path).at("listening on", &path)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).at("setting mode of", &path)?;
    match group_gid(root, &cfg.admin_group) {
        Some(gid) => nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .map_err(std::io::Error::from)
            .at("changing group of", &path)?,
        None => {
            tracing::warn!(group = %cfg.admin_group, "admin group not found: the status socket is root-only")
        }
    }
    Ok(listener)
}

pub fn remove(root: &Root, cfg: &DaemonConfig) {
    let _ = fs::remove_file(socket_path(root, cfg));
}

pub async fn serve(listener: UnixListener, ctx: Context) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, ctx.clone()));
            }
            Err(e) => {
                tracing::warn!("status socket: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(stream: UnixStream, ctx: Context) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = tokio::time::timeout(
        CLIENT_TIMEOUT,
        BufReader::new(read.take(REQUEST_MAX)).read_line(&mut line),
    )
    .await;
    let reply = match (read, line.trim()) {
        (Ok(Ok(_)), "status") => {
            match tokio::task::spawn_blocking(move || ctx.doc()).await {
                Ok(Ok(doc)) => serde_json::to_vec(&doc).unwrap_or_default(),
                Ok(Err(e)) => serde_json::to_vec(&serde_json::json!({"error": e.to_string()}))
                    .unwrap_or_default(),
                Err(e) => serde_json::to_vec(&serde_json::json!({"error": e.to_string()}))
                    .unwrap_or_default(),
            }
        }
        (Ok(Ok(_)), other) => serde_json::to_vec(
            &serde_json::json!({"error": format!("unknown request {other:?}; send \"status\"")}),
        )
        .unwrap_or_default(),
        _ => return,
    };
    let _ = tokio::time::timeout(CLIENT_TIMEOUT, write.write_all(&reply)).await;
}

pub async fn serve_metrics(listener: TcpListener, ctx: Context) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            // Read the request head (bounded), then answer whatever was asked
            // with the metrics: this endpoint serves nothing else.
            let mut head = vec![0u8; 4096];
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.read(&mut head)).await;
            let body = {
                let s = ctx.lock();
                metrics::render(
                    &ctx.seed.node,
                    ctx.seed.role.as_str(),
                    overall(s.checks.iter().map(|c| &c.state)),
                    &s.checks,
                    s.audit.findings.len(),
                )
            };
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(CLIENT_TIMEOUT, stream.write_all(reply.as_bytes())).await;
        });
    }
}
