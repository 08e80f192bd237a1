//! The agent's health checks against real services the tests start
//! themselves: PostgreSQL (primary, standby, kill, restart), redis-server
//! (unix socket, passwords, replication) and systemd-timedated's interface
//! on a private D-Bus. Installed by `.ci/run`; PostgreSQL runs as
//! `postgres` when the tests run as root.

mod postgres {
    use std::fs;
    use std::path::Path;
    use std::process::Command;
    use std::time::{Duration, Instant};

    use owui_agent::health::outcome::{CheckResult, Observation};
    use owui_agent::health::postgres::check;
    use owui_tests::free_ports;
    use owui_tests::postgres::{as_postgres, give_to_postgres, pg_bin, run, Server};

    const PASSWORD: &str = "pg-Secret-4711";

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

        let [port, standby_port] = free_ports::<2>();
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

mod redis {
    use std::fs;
    use std::time::{Duration, Instant};

    use owui_agent::health::outcome::{CheckResult, Observation};
    use owui_agent::health::redis::check;
    use owui_tests::free_ports;
    use owui_tests::redis::RedisServer;

    /// Runs the check until `want` holds (each run bounded by 5 s, all
    /// of them by `within`); returns the result and how long it took.
    async fn until(
        addr: &str,
        password: Option<&str>,
        within: Duration,
        server: &RedisServer,
        want: impl Fn(&CheckResult) -> bool,
    ) -> (CheckResult, Duration) {
        let start = Instant::now();
        loop {
            let got = tokio::time::timeout(Duration::from_secs(5), check(addr, password))
                .await
                .unwrap_or_else(|_| Err("check did not finish within 5 s".into()));
            if want(&got) {
                return (got, start.elapsed());
            }
            assert!(
                start.elapsed() < within,
                "no expected result from {addr} within {within:?}; last: {got:?}\n\
                 log {}:\n{}",
                server.log.display(),
                fs::read_to_string(&server.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn is(want: Observation) -> impl Fn(&CheckResult) -> bool {
        move |got| got.as_ref() == Ok(&want)
    }

    fn refused(got: &CheckResult) -> bool {
        matches!(got, Ok(Observation::Fail(d)) if d.starts_with("connection refused"))
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("owui-redis-")
            .tempdir_in("/tmp")
            .unwrap()
    }

    #[tokio::test]
    async fn unix_socket_master_kill_restart() {
        let dir = tempdir();
        let sock = dir.path().join("redis.sock");
        let addr = sock.to_str().unwrap();
        let args = ["--unixsocket", addr, "--unixsocketperm", "700"];
        let t0 = Instant::now();
        let mut server = RedisServer::spawn(dir.path(), "m", 0, &args);
        let master = Observation::Ok("master".into());
        let (_, took) = until(
            addr,
            None,
            Duration::from_secs(20),
            &server,
            is(master.clone()),
        )
        .await;
        eprintln!("redis up: {took:?}");

        server.kill();
        let (_, took) = until(addr, None, Duration::from_secs(5), &server, refused).await;
        eprintln!("redis killed, refused after {took:?}");

        let server = RedisServer::spawn(dir.path(), "m", 0, &args);
        let (_, took) = until(addr, None, Duration::from_secs(20), &server, is(master)).await;
        eprintln!("redis back: {took:?}; total {:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn password_required() {
        let dir = tempdir();
        let [port] = free_ports::<1>();
        let addr = format!("127.0.0.1:{port}");
        let secret = "redis-Secret-4711";
        let server = RedisServer::spawn(dir.path(), "auth", port, &["--requirepass", secret]);
        let master = Observation::Ok("master".into());
        let _ = until(
            &addr,
            Some(secret),
            Duration::from_secs(20),
            &server,
            is(master),
        )
        .await;

        match check(&addr, None).await {
            Ok(Observation::Fail(d)) => assert!(d.contains("authentication required"), "{d}"),
            other => panic!("no password gave {other:?}"),
        }
        let wrong = "Wrong-Pw-0815";
        match check(&addr, Some(wrong)).await {
            Ok(Observation::Fail(d)) => {
                eprintln!("wrong password: {d}");
                assert!(d.starts_with("authentication failed"), "{d}");
                assert!(!d.contains(wrong) && !d.contains(secret), "{d}");
            }
            other => panic!("wrong password gave {other:?}"),
        }
    }

    #[tokio::test]
    async fn password_given_but_not_configured() {
        let dir = tempdir();
        let [port] = free_ports::<1>();
        let addr = format!("127.0.0.1:{port}");
        let server = RedisServer::spawn(dir.path(), "open", port, &[]);
        let master = Observation::Ok("master".into());
        let _ = until(&addr, None, Duration::from_secs(20), &server, is(master)).await;
        let pw = "Unneeded-Pw-1234";
        match check(&addr, Some(pw)).await {
            Ok(Observation::Fail(d)) => {
                eprintln!("password not configured: {d}");
                assert!(d.starts_with("authentication failed"), "{d}");
                assert!(!d.contains(pw), "{d}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A replica follows its master; killing the master turns the
    /// replica's link down (Warn) and the master's check red; a restarted
    /// master brings the link back up.
    #[tokio::test]
    async fn replica_link_up_down_up() {
        let dir = tempdir();
        let t0 = Instant::now();
        let [mport, rport] = free_ports::<2>();
        let (maddr, raddr) = (format!("127.0.0.1:{mport}"), format!("127.0.0.1:{rport}"));
        let mport_arg = mport.to_string();
        let master_args = ["--repl-diskless-sync-delay", "0"];
        let mut master = RedisServer::spawn(dir.path(), "master", mport, &master_args);
        let replica = RedisServer::spawn(
            dir.path(),
            "replica",
            rport,
            &["--replicaof", "127.0.0.1", &mport_arg],
        );
        let is_master = is(Observation::Ok("master".into()));
        let _ = until(&maddr, None, Duration::from_secs(20), &master, &is_master).await;
        let link_up = Observation::Ok(format!("replica of {maddr}, link up"));
        let (_, took) = until(
            &raddr,
            None,
            Duration::from_secs(30),
            &replica,
            is(link_up.clone()),
        )
        .await;
        eprintln!("replica in sync: {took:?}");

        master.kill();
        let (_, took) = until(&maddr, None, Duration::from_secs(5), &master, refused).await;
        eprintln!("master killed, refused after {took:?}");
        let link_down = |got: &CheckResult| {
            matches!(got, Ok(Observation::Warn(d))
                if d.starts_with(&format!("replica of {maddr}, link down")))
        };
        let (got, took) = until(&raddr, None, Duration::from_secs(10), &replica, link_down).await;
        eprintln!("replica: {got:?} after {took:?}");

        let master = RedisServer::spawn(dir.path(), "master", mport, &master_args);
        let _ = until(&maddr, None, Duration::from_secs(20), &master, &is_master).await;
        let (_, took) = until(&raddr, None, Duration::from_secs(30), &replica, is(link_up)).await;
        eprintln!("replica in sync again: {took:?}; total {:?}", t0.elapsed());
    }
}

mod timesync {
    use std::time::Duration;

    use owui_agent::health::dbus::Bus;
    use owui_agent::health::outcome::Observation;
    use owui_agent::health::timesync::{timedated, Policy, TimeSyncMode};
    use owui_tests::dbus::PrivateBus;

    const POLICY: Policy = Policy {
        unsynced: TimeSyncMode::Degraded,
        max_error: Duration::from_millis(1000),
    };

    /// systemd-timedated's answer, served on a private bus.
    struct FakeTimedated {
        synced: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    #[zbus::interface(name = "org.freedesktop.timedate1")]
    impl FakeTimedated {
        #[zbus(property, name = "NTPSynchronized")]
        fn ntp_synchronized(&self) -> bool {
            self.synced.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn asks_timedated_over_a_real_bus() {
        let private = PrivateBus::start();
        let address = private.address.clone();
        let bus = Bus::connect(Some(&address)).await.unwrap();
        // Nobody serves timedate1 yet: the check cannot run.
        let err = timedated(&bus, POLICY).await.unwrap_err();
        assert!(err.contains("org.freedesktop.timedate1"), "{err}");

        let synced = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let _server = zbus::connection::Builder::address(address.as_str())
            .unwrap()
            .name("org.freedesktop.timedate1")
            .unwrap()
            .serve_at(
                "/org/freedesktop/timedate1",
                FakeTimedated {
                    synced: synced.clone(),
                },
            )
            .unwrap()
            .build()
            .await
            .unwrap();
        let strict = Policy {
            unsynced: TimeSyncMode::Failed,
            ..POLICY
        };
        assert_eq!(
            timedated(&bus, strict).await,
            Ok(Observation::Fail(
                "not synchronised (systemd-timedated)".into()
            ))
        );
        assert!(matches!(
            timedated(&bus, POLICY).await,
            Ok(Observation::Warn(_))
        ));
        synced.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            timedated(&bus, strict).await,
            Ok(Observation::Ok("synchronised (systemd-timedated)".into()))
        );
    }
}
