//! The local API: a unix socket (root and the admin group, mode 0660) that
//! answers `status` with the status document, and the Prometheus endpoint.
//!
//! Each endpoint serves at most a fixed number of connections at once and
//! closes any beyond that as soon as it is accepted; each connection has a
//! few seconds from accept to the end of its answer. Idle clients (any local
//! user can reach the metrics port) therefore hold a bounded number of the
//! daemon's file descriptors, well under the unit's `LimitNOFILE=`, and one
//! endpoint's flood never takes the other's slots.

use std::fs;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use owui_bundle::error::IoContext;
use owui_bundle::{Error, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::Semaphore;

use super::{metrics, Context};
use crate::config::DaemonConfig;
use crate::health::engine::overall;
use crate::layout::Root;

/// A request is one short line; anything longer is not one.
const REQUEST_MAX: u64 = 256;
/// From accept to the last byte of the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// A client sends its request at once; one that does not frees its slot.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections served at once on each endpoint (units/owui-agent.service
/// sets LimitNOFILE= far above both).
const STATUS_CONNECTIONS: usize = 16;
const METRICS_CONNECTIONS: usize = 16;

/// The socket's own entry (not followed: a stale socket, or whatever else
/// is there, is replaced, never what a link there points at).
fn socket_path(root: &Root, cfg: &DaemonConfig) -> Result<PathBuf> {
    root.resolve_entry(&cfg.socket)
}

/// The gid of `group` in the node's group file, if it exists.
fn group_gid(root: &Root, group: &str) -> Option<u32> {
    let text = fs::read_to_string(root.group().ok()?).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 3 && f[0] == group)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

pub fn bind(root: &Root, cfg: &DaemonConfig) -> Result<UnixListener> {
    let path = socket_path(root, cfg)?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).at("creating", dir)?;
    }
    if std::os::unix::net::UnixStream::connect(root.host(&cfg.socket)?).is_ok() {
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
    if let Ok(path) = socket_path(root, cfg) {
        let _ = fs::remove_file(path);
    }
}

/// Serves one accepted connection with `answer` when a slot is free, within
/// [`CLIENT_TIMEOUT`]; closes it at once when all `slots` are taken.
fn admit<S, F>(slots: &Arc<Semaphore>, endpoint: &str, stream: S, answer: impl FnOnce(S) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match slots.clone().try_acquire_owned() {
        Ok(slot) => {
            let answer = answer(stream);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(CLIENT_TIMEOUT, answer).await;
                drop(slot);
            });
        }
        Err(_) => {
            tracing::debug!("{endpoint}: every connection slot is taken; closing a new one");
            drop(stream);
        }
    }
}

pub async fn serve(listener: UnixListener, ctx: Context) {
    let slots = Arc::new(Semaphore::new(STATUS_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => admit(&slots, "status socket", stream, |s| answer(s, ctx.clone())),
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
        REQUEST_TIMEOUT,
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
    let _ = write.write_all(&reply).await;
}

pub async fn serve_metrics(listener: TcpListener, ctx: Context) {
    let slots = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => admit(&slots, "metrics endpoint", stream, |s| {
                answer_metrics(s, ctx.clone())
            }),
            Err(e) => {
                tracing::warn!("metrics endpoint: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads the request head (bounded), then answers whatever was asked with
/// the metrics: this endpoint serves nothing else.
async fn answer_metrics(mut stream: TcpStream, ctx: Context) {
    let mut head = vec![0u8; 4096];
    if !matches!(
        tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut head)).await,
        Ok(Ok(_))
    ) {
        return;
    }
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
    let _ = stream.write_all(reply.as_bytes()).await;
}
