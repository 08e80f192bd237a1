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
    //! Without a server. Against a real PostgreSQL server (primary,
    //! standby, kill, restart): `tests/tests/health_services.rs`.

    use super::*;

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
}
