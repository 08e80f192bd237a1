//! A real systemd for tests: a minimal Debian bookworm tree built once
//! with mmdebstrap and cached under /var/tmp (keyed by what goes into
//! it), booted with systemd-nspawn. `--volatile=overlay` keeps the cache
//! clean; the test's unit files are bound in read-only at
//! /usr/local/lib/systemd/system, a directory systemd reads units from.
//! The container's system bus is reached from the host through
//! /proc/<leader>/root.
//!
//! Needs root, mmdebstrap, systemd-nspawn and, for the first build,
//! Debian's mirror (taken from the host's apt sources, or
//! `OWUI_NSPAWN_MIRROR`). Without them the tests fail and say so.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use zbus::proxy::CacheProperties;
use zbus::zvariant::OwnedObjectPath;

const SUITE: &str = "bookworm";
const VARIANT: &str = "minbase";
const PACKAGES: &str = "systemd,systemd-sysv,dbus";
/// Bumped when the way the tree is built changes.
const RECIPE: &str = "1";
const SETUP: &str =
    "run .ci/run as root: it installs mmdebstrap, systemd-container (systemd-nspawn) and dbus";
/// Where test unit files go inside the container.
const UNIT_DIR: &str = "/usr/local/lib/systemd/system";

/// systemd's manager, for tests that start, stop and break units.
#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
pub trait Control {
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
}

/// Writes unit file `name` into `dir`.
pub fn write_unit(dir: &Path, name: &str, text: &str) {
    fs::write(dir.join(name), text).unwrap();
}

/// Masks `name` in `dir` (a link to /dev/null, as `systemctl mask` makes).
pub fn mask_unit(dir: &Path, name: &str) {
    std::os::unix::fs::symlink("/dev/null", dir.join(name)).unwrap();
}

/// A booted container; SIGTERM to systemd-nspawn when dropped (also
/// when the test panics).
pub struct Container {
    child: Child,
    /// The container's PID 1 as the host sees it; 0 until known.
    leader: u32,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Container {
    /// Boots systemd with the unit files in `units` and waits until it
    /// has finished booting (SystemState running or degraded).
    pub async fn boot(units: &Path) -> Container {
        let rootfs = rootfs();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "owui-t{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nspawn.log");
        let out = fs::File::create(&log).unwrap();
        let child = Command::new("systemd-nspawn")
            .arg("-D")
            .arg(&rootfs)
            .args(["-b", "--register=no", "--keep-unit", "--private-network"])
            .args(["-M", &name, "--console=pipe", "--volatile=overlay"])
            .arg(format!("--bind-ro={}:{UNIT_DIR}", units.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e}; {SETUP}"));
        let mut c = Container {
            child,
            leader: 0,
            log,
            _dir: dir,
        };
        let start = Instant::now();
        c.leader = c.wait_for("the container's PID 1", Duration::from_secs(10), |c| {
            leader_of(c.child.id())
        });
        let socket = c.socket();
        c.wait_for(
            "the container's system bus",
            Duration::from_secs(30),
            |_| socket.exists().then_some(()),
        );
        c.wait_until_booted(start).await;
        c
    }

    /// The container's system bus, as a D-Bus address.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket().display())
    }

    /// The container's PID 1, as the host sees it.
    pub fn leader(&self) -> u32 {
        self.leader
    }

    fn socket(&self) -> PathBuf {
        PathBuf::from(format!(
            "/proc/{}/root/run/dbus/system_bus_socket",
            self.leader
        ))
    }

    /// A connection of its own to the container's system bus.
    async fn connect(&self) -> Result<zbus::Connection, String> {
        let address = self.address();
        let builder =
            zbus::connection::Builder::address(address.as_str()).map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(5), builder.build()).await {
            Ok(conn) => conn.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer from {address} within 5 s")),
        }
    }

    /// A manager proxy on a connection of its own.
    pub async fn control(&self) -> ControlProxy<'static> {
        let conn = self.connect().await.unwrap();
        ControlProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .unwrap()
    }

    /// The main PID of service `unit` (0 when it has none), asked on a
    /// connection of its own.
    pub async fn main_pid(&self, unit: &str) -> Result<u32, String> {
        let e = |e: zbus::Error| e.to_string();
        let conn = self.connect().await?;
        let control = ControlProxy::builder(&conn)
            .cache_properties(CacheProperties::No)
            .build()
            .await
            .map_err(e)?;
        let path = control.load_unit(unit).await.map_err(e)?;
        property(&conn, &path, "org.freedesktop.systemd1.Service", "MainPID").await
    }

    /// The container's journal for `unit` (for messages of failed tests).
    pub fn journal(&self, unit: &str) -> String {
        match Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .args(["-m", "-p", "--", "journalctl", "--no-pager"])
            .args(["-o", "short-precise", "-n", "60", "-u", unit])
            .output()
        {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("(nsenter journalctl: {e})"),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `probe` until it gives a value; fails the test when
    /// systemd-nspawn exits or `within` passes.
    fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        probe: impl Fn(&Container) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}) before {what} appeared; its output:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "no {what} after {within:?}; systemd-nspawn's output:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    async fn wait_until_booted(&self, start: Instant) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self.system_state().await {
                Ok(s) if s == "running" || s == "degraded" => break,
                Ok(s) => s,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "systemd did not finish booting (last: {last}); systemd-nspawn's output:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("container booted in {:?}", start.elapsed());
    }

    async fn system_state(&self) -> Result<String, String> {
        let conn = self.connect().await?;
        property(
            &conn,
            "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager",
            "SystemState",
        )
        .await
    }
}

/// Property `name` of interface `iface` of systemd's object `path`.
async fn property<T>(
    conn: &zbus::Connection,
    path: &str,
    iface: &str,
    name: &str,
) -> Result<T, String>
where
    T: TryFrom<zbus::zvariant::OwnedValue>,
    T::Error: Into<zbus::Error>,
{
    let e = |e: zbus::Error| e.to_string();
    let proxy: zbus::Proxy = zbus::proxy::Builder::new(conn)
        .destination("org.freedesktop.systemd1")
        .map_err(e)?
        .path(path)
        .map_err(e)?
        .interface(iface)
        .map_err(e)?
        .cache_properties(CacheProperties::No)
        .build()
        .await
        .map_err(e)?;
    proxy.get_property(name).await.map_err(e)
}

impl Drop for Container {
    fn drop(&mut self) {
        let nspawn = Pid::from_raw(self.child.id() as i32);
        let _ = kill(nspawn, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        // Did not halt in time: killing PID 1 ends the whole container.
        if self.leader != 0 {
            let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child of systemd-nspawn `pid` that is PID 1 of its own PID
/// namespace.
pub fn leader_of(pid: u32) -> Option<u32> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace() {
            let status = fs::read_to_string(format!("/proc/{child}/status")).unwrap_or_default();
            let ns_pid = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|l| l.split_whitespace().last());
            if ns_pid == Some("1") {
                return child.parse().ok();
            }
        }
    }
    None
}

/// The cached tree, built on first use (once per test process; a
/// concurrent process building the same tree loses the rename race
/// harmlessly).
fn rootfs() -> PathBuf {
    static ROOTFS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match ROOTFS.get_or_init(build_rootfs) {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

fn build_rootfs() -> Result<PathBuf, String> {
    if !nix::unistd::geteuid().is_root() {
        return Err(format!("the systemd-nspawn tests need root; {SETUP}"));
    }
    if !on_path("systemd-nspawn") {
        return Err(format!("systemd-nspawn not found; {SETUP}"));
    }
    let key = fnv1a(&[RECIPE, SUITE, VARIANT, PACKAGES]);
    let name = format!("owui-nspawn-rootfs-{key:016x}");
    let dir = Path::new("/var/tmp").join(&name);
    if dir.is_dir() {
        return Ok(dir);
    }
    if !on_path("mmdebstrap") {
        return Err(format!("mmdebstrap not found; {SETUP}"));
    }
    remove_stale_builds(&name);
    let tmp = Path::new("/var/tmp").join(format!("{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let mirror = mirror();
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={PACKAGES}"))
        .arg(SUITE)
        .arg(&tmp);
    cmd.args(&mirror);
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run mmdebstrap: {e}; {SETUP}"))?;
    if !out.status.success() {
        let _ = fs::remove_dir_all(&tmp);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(format!(
            "mmdebstrap {SUITE} (mirror {}) failed ({}); {SETUP}\n{}",
            mirror.as_deref().unwrap_or("mmdebstrap's default"),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    match fs::rename(&tmp, &dir) {
        Ok(()) => {}
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
        }
        Err(e) => {
            return Err(format!(
                "cannot move {} to {}: {e}",
                tmp.display(),
                dir.display()
            ))
        }
    }
    eprintln!("built {} in {:?}", dir.display(), start.elapsed());
    Ok(dir)
}

/// Half-built trees of test processes that are gone.
fn remove_stale_builds(name: &str) {
    let Ok(entries) = fs::read_dir("/var/tmp") else {
        return;
    };
    let prefix = format!("{name}.tmp-");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        .any(|d| Path::new(d).join(tool).is_file());
    found
}

/// `OWUI_NSPAWN_MIRROR`, else the host's apt source for the suite.
fn mirror() -> Option<String> {
    if let Ok(m) = std::env::var("OWUI_NSPAWN_MIRROR") {
        return Some(m);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| {
        let text = fs::read_to_string(f).ok()?;
        if f.extension().is_some_and(|e| e == "sources") {
            deb822_mirror(&text, SUITE)
        } else {
            one_line_mirror(&text, SUITE)
        }
    })
}

/// The first `URIs:` of a deb822 stanza whose `Suites:` has `suite`.
fn deb822_mirror(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let suites = field("Suites")?;
        let types = field("Types").unwrap_or_else(|| "deb".into());
        (suites.split_whitespace().any(|s| s == suite)
            && types.split_whitespace().any(|t| t == "deb"))
        .then(|| field("URIs"))
        .flatten()
        .and_then(|uris| uris.split_whitespace().next().map(str::to_string))
    })
}

/// The URI of the first `deb URI SUITE …` line for `suite`.
fn one_line_mirror(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            // Options: skip to the word after the closing bracket.
            while !uri.ends_with(']') {
                uri = words.next()?;
            }
            uri = words.next()?;
        }
        (words.next() == Some(suite)).then(|| uri.to_string())
    })
}

/// FNV-1a, 64 bits: a cache key stable across Rust releases.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_from_apt_sources() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\n\
                      Suites: bookworm bookworm-updates\nComponents: main\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\n\
                      Suites: bookworm-security\n";
        assert_eq!(
            deb822_mirror(deb822, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(deb822_mirror(deb822, "trixie"), None);
        let list = "# deb http://old/ bookworm main\n\
                    deb-src http://src/ bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.local/debian bookworm main\n";
        assert_eq!(
            one_line_mirror(list, "bookworm").as_deref(),
            Some("http://mirror.local/debian")
        );
        assert_eq!(
            one_line_mirror("deb http://m/debian bookworm main", "bookworm").as_deref(),
            Some("http://m/debian")
        );
    }
}
