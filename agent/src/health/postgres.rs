//! PostgreSQL check: a real connection that runs `SELECT 1` and asks the
//! server whether it is in recovery, which tells a primary from a standby.
//!
//! The check has no timeout of its own: the engine bounds every check.
//! The password from the conninfo never appears in a detail or an error.

use std::error::Error as _;
use std::io;
use std::pin::pin;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};

use super::outcome::{CheckResult, Observation};

/// Connects with `conninfo` (libpq keyword/value string, e.g.
/// `"host=/run/postgresql user=postgres dbname=postgres"` or
/// `"host=127.0.0.1 port=5432 user=… password=…"`), runs `SELECT 1` and
/// `SELECT pg_is_in_recovery()`.
///
/// `Ok("primary")` / `Ok("standby")` on success; `Fail("connection refused …")`
/// or `Fail("authentication failed …")` when the server is down or refuses;
/// `Err` only when the conninfo itself is malformed or asks for something
/// this check cannot do (TLS).
pub async fn check(conninfo: &str) -> CheckResult {
    let config: Config = conninfo.parse().map_err(|e: tokio_postgres::Error| {
        // The parser may quote the offending character ("… but got `x`"),
        // which could be one from the password: leave it out.
        let text = chain(&e);
        let text = text.split(" but got").next().unwrap_or_default();
        format!("invalid PostgreSQL conninfo: {text}")
    })?;
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        return Err(
            "invalid PostgreSQL conninfo: it names no host (give host=DIR or host=ADDRESS)".into(),
        );
    }
    if config.get_ssl_mode() == SslMode::Require {
        return Err(
            "sslmode=require is not supported by this check (it connects without TLS)".into(),
        );
    }
    let place = target(&config);

    let (client, connection) = match config.connect(NoTls).await {
        Ok(pair) => pair,
        Err(e) => return connect_failure(&e, &place),
    };

    // The connection object does the actual socket I/O: drive it next to the
    // queries instead of spawning it, so a check cancelled by the engine's
    // timeout leaves nothing behind.
    let mut connection = pin!(connection);
    let mut connection_done = false;
    let observation = tokio::select! {
        biased;
        seen = probe(&client) => seen,
        ended = &mut connection => {
            connection_done = true;
            Observation::Fail(match ended {
                Ok(()) => format!("{place}: server closed the connection"),
                Err(e) => format!("{place}: connection lost: {}", chain(&e)),
            })
        }
    };
    drop(client);
    if !connection_done {
        // With the client gone the connection sends Terminate and closes.
        let _ = connection.await;
    }
    Ok(observation)
}

/// Runs the two queries on an open connection.
async fn probe(client: &Client) -> Observation {
    match scalar(client, "SELECT 1").await {
        Ok(Some(one)) if one == "1" => {}
        Ok(other) => {
            return Observation::Fail(format!("unexpected answer to SELECT 1: {other:?}"));
        }
        Err(e) => return Observation::Fail(query_failure("SELECT 1", &e)),
    }
    match scalar(client, "SELECT pg_is_in_recovery()").await {
        Ok(Some(flag)) if flag == "f" => Observation::Ok("primary".into()),
        Ok(Some(flag)) if flag == "t" => Observation::Ok("standby".into()),
        Ok(other) => Observation::Fail(format!(
            "unexpected answer to SELECT pg_is_in_recovery(): {other:?}"
        )),
        Err(e) => Observation::Fail(query_failure("SELECT pg_is_in_recovery()", &e)),
    }
}

/// The first column of the first row of a simple query, as text.
async fn scalar(client: &Client, sql: &str) -> Result<Option<String>, tokio_postgres::Error> {
    for message in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = message {
            return Ok(row.try_get(0)?.map(str::to_owned));
        }
    }
    Ok(None)
}

/// Where the check connects, for details: `/run/postgresql/.s.PGSQL.5432`
/// or `127.0.0.1:5432` (several hosts are joined with commas).
fn target(config: &Config) -> String {
    let ports = config.get_ports();
    let port_of = |i: usize| match ports {
        [] => 5432,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(5432),
    };
    let mut places = Vec::new();
    if config.get_hosts().is_empty() {
        for (i, addr) in config.get_hostaddrs().iter().enumerate() {
            places.push(tcp_place(&addr.to_string(), port_of(i)));
        }
    } else {
        for (i, host) in config.get_hosts().iter().enumerate() {
            places.push(match host {
                Host::Tcp(name) => tcp_place(name, port_of(i)),
                Host::Unix(dir) => format!("{}/.s.PGSQL.{}", dir.display(), port_of(i)),
            });
        }
    }
    places.join(",")
}

fn tcp_place(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Turns a failed connection attempt into an observation (the server is
/// down or refuses us) or an error (the check itself cannot run).
fn connect_failure(e: &tokio_postgres::Error, place: &str) -> CheckResult {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let message = db.message();
        return Ok(Observation::Fail(if code.starts_with("28") {
            format!("authentication failed at {place}: {message}")
        } else {
            format!("server at {place} refused the connection: {message} (SQLSTATE {code})")
        }));
    }
    if let Some(io) = e.source().and_then(|s| s.downcast_ref::<io::Error>()) {
        return match io.kind() {
            io::ErrorKind::ConnectionRefused => {
                Ok(Observation::Fail(format!("connection refused at {place}")))
            }
            io::ErrorKind::NotFound => Ok(Observation::Fail(format!(
                "connection refused: no server socket at {place}"
            ))),
            _ if io.raw_os_error() == Some(libc::EACCES) => Err(format!(
                "permission denied connecting to {place}: the agent may not open that socket"
            )),
            _ => Ok(Observation::Fail(format!(
                "cannot connect to {place}: {}",
                chain(e)
            ))),
        };
    }
    let text = chain(e);
    if text.contains("password missing") {
        return Ok(Observation::Fail(format!(
            "authentication failed at {place}: the server asks for a password and the conninfo has none"
        )));
    }
    if text.starts_with("authentication error") {
        return Ok(Observation::Fail(format!(
            "authentication failed at {place}: {text}"
        )));
    }
    if text.starts_with("invalid configuration") {
        return Err(format!("invalid PostgreSQL conninfo: {text}"));
    }
    Ok(Observation::Fail(format!(
        "cannot connect to {place}: {text}"
    )))
}

fn query_failure(sql: &str, e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{sql} failed: {} (SQLSTATE {})",
            db.message(),
            db.code().code()
        ),
        None => format!("{sql} failed: {}", chain(e)),
    }
}

/// An error and its causes on one line ("error connecting to server:
/// Connection refused (os error 111)"). tokio-postgres never puts the
/// password into these texts.
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    //! Against a real PostgreSQL server started by the test (Debian package
    //! `postgresql`, installed by `.ci/run`).

    use super::*;
    use std::fs;
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::{chown, Pid, User};

    const PASSWORD: &str = "pg-Secret-4711";

    #[test]
    fn check_future_is_send() {
        fn send<T: Send>(_: T) {}
        send(check("host=/tmp"));
    }

    #[tokio::test]
    async fn malformed_conninfo_is_an_error() {
        for bad in [
            "host=/tmp port=notaport",
            "host='unterminated",
            "no_such_option=1 host=/tmp",
            "user=postgres",
            "host=127.0.0.1 sslmode=require",
        ] {
            let got = check(bad).await;
            assert!(got.is_err(), "{bad:?} gave {got:?}");
        }
        // A stray character is not quoted back: it may be the password's.
        let got = check("host=/tmp password=ab cd ef").await;
        assert_eq!(
            got,
            Err("invalid PostgreSQL conninfo: invalid connection string: \
                 unexpected character at byte 25: expected `=`"
                .into())
        );
    }

    #[tokio::test]
    async fn no_server_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let got = check(&format!(
            "host={} port=5999 user=postgres",
            dir.path().display()
        ))
        .await;
        match got {
            Ok(Observation::Fail(d)) => assert!(d.starts_with("connection refused"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    /// A stale socket file with nothing listening, as SIGKILL leaves it.
    #[tokio::test]
    async fn dead_socket_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".s.PGSQL.5998");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let got = check(&format!(
            "host={} port=5998 user=postgres",
            dir.path().display()
        ))
        .await;
        assert_eq!(
            got,
            Ok(Observation::Fail(format!(
                "connection refused at {}",
                path.display()
            )))
        );
    }

    /// The server binaries of the newest PostgreSQL installed
    /// (`/usr/lib/postgresql/VERSION/bin`).
    fn pg_bin() -> PathBuf {
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

    fn as_postgres(cmd: &mut Command) -> &mut Command {
        if let Some(user) = postgres_user() {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        cmd
    }

    fn give_to_postgres(path: &Path) {
        if let Some(user) = postgres_user() {
            chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }

    fn run(cmd: &mut Command) {
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
    struct Server {
        child: Option<Child>,
    }

    impl Server {
        fn start(bin: &Path, data: &Path, sockets: &Path, port: u16, log: &Path) -> Server {
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
        fn kill(&mut self) {
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

    /// Runs the check until `want` holds (each run bounded by 5 s, all of
    /// them by `within`); returns the matching result and how long it took.
    async fn until(
        conninfo: &str,
        within: Duration,
        log: &Path,
        want: impl Fn(&CheckResult) -> bool,
    ) -> (CheckResult, Duration) {
        let start = Instant::now();
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), check(conninfo))
                .await
                .unwrap_or_else(|_| Err("check did not finish within 5 s".into()));
            if want(&got) {
                return (got, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "no expected result for {conninfo:?} within {within:?}; last: {got:?}\n\
                 server log {}:\n{}",
                log.display(),
                fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn is_ok(detail: &'static str) -> impl Fn(&CheckResult) -> bool {
        move |got| *got == Ok(Observation::Ok(detail.into()))
    }

    fn is_fail(got: &CheckResult) -> bool {
        matches!(got, Ok(Observation::Fail(_)))
    }

    /// initdb, primary up (unix socket and TCP with password), wrong and
    /// missing passwords, a streaming standby, SIGKILL of the primary and
    /// its restart.
    #[tokio::test]
    async fn real_server_primary_standby_kill_restart() {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("owui-pg-")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        give_to_postgres(root);
        let pwfile = root.join("pwfile");
        fs::write(&pwfile, PASSWORD).unwrap();
        give_to_postgres(&pwfile);

        let primary_data = root.join("primary");
        let t0 = Instant::now();
        run(as_postgres(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&primary_data)
                .arg(format!("--pwfile={}", pwfile.display()))
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "--no-instructions",
                    "--encoding=UTF8",
                    "--locale=C",
                ]),
        ));
        eprintln!("initdb: {:?}", t0.elapsed());

        let [port, standby_port] = crate::health::free_ports::<2>();
        let log = root.join("primary.log");
        let mut primary = Server::start(&bin, &primary_data, root, port, &log);
        let unix = format!(
            "host={} port={port} user=postgres dbname=postgres",
            root.display()
        );
        let tcp = format!("host=127.0.0.1 port={port} user=postgres dbname=postgres");

        let (_, took) = until(&unix, Duration::from_secs(30), &log, is_ok("primary")).await;
        eprintln!("primary up: {took:?}");
        assert_eq!(
            check(&format!("{tcp} password={PASSWORD}")).await,
            Ok(Observation::Ok("primary".into()))
        );

        // Wrong and missing passwords: a failure naming authentication,
        // never the password.
        let wrong = "Wrong-Pw-0815";
        match check(&format!("{tcp} password={wrong}")).await {
            Ok(Observation::Fail(d)) => {
                eprintln!("wrong password: {d}");
                assert!(d.contains("authentication failed"), "{d}");
                assert!(!d.contains(wrong) && !d.contains(PASSWORD), "{d}");
            }
            other => panic!("wrong password gave {other:?}"),
        }
        match check(&tcp).await {
            Ok(Observation::Fail(d)) => assert!(d.contains("authentication failed"), "{d}"),
            other => panic!("no password gave {other:?}"),
        }

        // A streaming standby of it.
        let standby_data = root.join("standby");
        run(as_postgres(
            Command::new(bin.join("pg_basebackup"))
                .arg("-D")
                .arg(&standby_data)
                .arg("-h")
                .arg(root)
                .args([
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-R",
                    "-X",
                    "stream",
                ])
                .args(["-c", "fast", "--no-sync"]),
        ));
        let standby_log = root.join("standby.log");
        let mut standby = Server::start(&bin, &standby_data, root, standby_port, &standby_log);
        let standby_unix = format!(
            "host={} port={standby_port} user=postgres dbname=postgres",
            root.display()
        );
        let (_, took) = until(
            &standby_unix,
            Duration::from_secs(30),
            &standby_log,
            is_ok("standby"),
        )
        .await;
        eprintln!("standby up: {took:?}");

        // SIGKILL the primary: both ways in fail promptly.
        primary.kill();
        let (got, took) = until(&unix, Duration::from_secs(10), &log, is_fail).await;
        eprintln!("primary killed, unix check: {got:?} after {took:?}");
        match got {
            Ok(Observation::Fail(d)) => assert!(d.starts_with("connection refused"), "{d}"),
            other => panic!("{other:?}"),
        }
        let (got, _) = until(&tcp, Duration::from_secs(10), &log, is_fail).await;
        match got {
            Ok(Observation::Fail(d)) => assert!(d.starts_with("connection refused"), "{d}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            check(&standby_unix).await,
            Ok(Observation::Ok("standby".into()))
        );

        // Start it again: crash recovery, then primary again.
        let mut primary = Server::start(&bin, &primary_data, root, port, &log);
        let (_, took) = until(&unix, Duration::from_secs(30), &log, is_ok("primary")).await;
        eprintln!("primary back: {took:?}");

        standby.kill();
        primary.kill();
        drop(dir);
        eprintln!("total: {:?}", t0.elapsed());
    }
}
