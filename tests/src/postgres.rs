//! Real PostgreSQL servers for tests (Debian package `postgresql`, installed
//! by `.ci/run`): the server binaries, running them as `postgres` when the
//! test runs as root, and a postmaster killed (with its backends) on drop.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{chown, Pid, User};

/// The server binaries of the newest PostgreSQL installed
/// (`/usr/lib/postgresql/VERSION/bin`).
pub fn pg_bin() -> PathBuf {
    let newest = fs::read_dir("/usr/lib/postgresql").ok().and_then(|dirs| {
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| {
                let version: u32 = d.file_name().to_str()?.parse().ok()?;
                let bin = d.path().join("bin");
                bin.join("postgres").exists().then_some((version, bin))
            })
            .max()
    });
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: \
             run .ci/run (as root) to install the test dependencies (apt package postgresql)"
        ),
    }
}

/// PostgreSQL refuses to run as root: as root, run it as `postgres`.
fn postgres_user() -> Option<User> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    match User::from_name("postgres").unwrap() {
        Some(user) => Some(user),
        None => panic!(
            "no `postgres` user: run .ci/run (as root) to install the test dependencies \
             (apt package postgresql)"
        ),
    }
}

/// `cmd`, to run as `postgres` when we are root.
pub fn as_postgres(cmd: &mut Command) -> &mut Command {
    if let Some(user) = postgres_user() {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    cmd
}

/// Hands `path` to `postgres` when we are root, so the server may use it.
pub fn give_to_postgres(path: &Path) {
    if let Some(user) = postgres_user() {
        chown(path, Some(user.uid), Some(user.gid)).unwrap();
    }
}

/// Runs `cmd` to completion; panics with its output when it fails.
pub fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running postmaster in its own process group; dropping it kills
/// the whole group (SIGKILL), also when the test panics.
pub struct Server {
    child: Option<Child>,
}

impl Server {
    /// `postgres` from `bin` on the cluster in `data`, listening on
    /// 127.0.0.1:`port` and on a unix socket in `sockets`, logging to `log`.
    pub fn start(bin: &Path, data: &Path, sockets: &Path, port: u16, log: &Path) -> Server {
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = as_postgres(
            Command::new(bin.join("postgres"))
                .arg("-D")
                .arg(data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-k")
                .arg(sockets)
                .args(["-h", "127.0.0.1", "-c", "fsync=off"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file)
                .process_group(0),
        )
        .spawn()
        .unwrap();
        Server { child: Some(child) }
    }

    /// SIGKILL to the postmaster and all its backends, then reap it
    /// (once: after that its pid may belong to someone else).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
