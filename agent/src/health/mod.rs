//! Node health: the checks each role runs, the state machine that turns
//! results into `healthy | degraded | failed | unknown`, and the probes.

pub mod audit;
pub mod catalog;
pub mod dbus;
pub mod engine;
pub mod outcome;
pub mod postgres;
pub mod probes;
pub mod redis;
pub mod systemd;
pub mod timesync;
pub mod tls;

/// The async runtime the daemon and `status` run their checks on: two
/// workers are plenty for I/O-bound probes.
pub fn runtime(root: &crate::layout::Root) -> owui_bundle::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| owui_bundle::Error::Io {
            action: "starting the async runtime for",
            path: root.seed(),
            source: e,
        })
}

/// Test support: `N` distinct free loopback ports for test servers.
#[cfg(test)]
pub(crate) fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// Test support: a private dbus-daemon on a socket in a temporary directory,
/// killed when dropped. A plain bus: no systemd, no timedated on it.
#[cfg(test)]
pub(crate) struct PrivateBus {
    daemon: std::process::Child,
    _dir: tempfile::TempDir,
    pub address: String,
}

#[cfg(test)]
impl PrivateBus {
    pub async fn start() -> PrivateBus {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bus");
        let daemon = std::process::Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon: {e}; run .ci/run (it installs dbus)")
            });
        let bus = PrivateBus {
            daemon,
            _dir: dir,
            address: format!("unix:path={}", socket.display()),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "dbus-daemon made no socket"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        bus
    }
}

#[cfg(test)]
impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
