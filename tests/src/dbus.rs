//! A private dbus-daemon for tests: a plain bus on a socket in a temporary
//! directory, with no systemd and no other service on it; killed on drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct PrivateBus {
    daemon: Child,
    _dir: tempfile::TempDir,
    /// Its D-Bus address, `unix:path=…`.
    pub address: String,
}

impl PrivateBus {
    /// Starts dbus-daemon and returns once it accepts connections (it
    /// prints its address when it listens).
    pub fn start() -> PrivateBus {
        let dir = tempfile::tempdir().unwrap();
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run dbus-daemon: {e}; run .ci/run (it installs dbus)")
            });
        let mut printed = String::new();
        let stdout = daemon.stdout.take().expect("piped stdout");
        BufReader::new(stdout).read_line(&mut printed).unwrap();
        // "unix:path=…,guid=…": the address without the server's guid.
        let address = printed.trim().split(",guid=").next().unwrap_or_default();
        assert!(
            address.starts_with("unix:path="),
            "dbus-daemon printed {printed:?}"
        );
        PrivateBus {
            address: address.to_string(),
            daemon,
            _dir: dir,
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
