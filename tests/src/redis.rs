//! A real redis-server for tests, on a loopback port (or only a unix
//! socket), killed on drop.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    /// Its TCP port on 127.0.0.1; 0: no TCP, a unix socket only.
    pub port: u16,
    /// Its log file.
    pub log: PathBuf,
    child: Option<Child>,
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let [port] = crate::free_ports::<1>();
    port
}

impl RedisServer {
    /// Starts redis-server on `port` with its files in `dir`; waits until it answers.
    pub fn start(port: u16, dir: &Path) -> RedisServer {
        let server = RedisServer::spawn(dir, "redis", port, &[]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not come up on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Starts `redis-server` without persistence on 127.0.0.1:`port` (0: no
    /// TCP), its files in `dir` (`name` tells instances apart: `NAME.log`,
    /// `NAME.rdb`), plus `extra` arguments; does not wait for it.
    pub fn spawn(dir: &Path, name: &str, port: u16, extra: &[&str]) -> RedisServer {
        let log = dir.join(format!("{name}.log"));
        let spawned = Command::new("redis-server")
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--dir"])
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--dbfilename")
            .arg(format!("{name}.rdb"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => RedisServer {
                port,
                log,
                child: Some(child),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "redis-server not found: run .ci/run (as root) to install the test \
                 dependencies (apt package redis-server)"
            ),
            Err(e) => panic!("cannot start redis-server: {e}"),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
