//! A real nginx for tests: TLS on a loopback port, its config, logs, pid
//! and temp files in its own directory, killed on drop.
//!
//! It runs in the foreground as a single process (`daemon off`,
//! `master_process off`), so killing the child closes the port at once and
//! leaves no orphaned workers behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What nginx serves with: its certificate (chain) and key, and, for
/// mutual TLS, the CA client certificates must come from.
#[derive(Clone, Debug)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

pub struct NginxServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn nginx_program() -> PathBuf {
    let sbin = Path::new("/usr/sbin/nginx");
    if sbin.exists() {
        sbin.to_path_buf()
    } else {
        PathBuf::from("nginx")
    }
}

fn config(dir: &Path, port: u16, tls: &ServerTls) -> String {
    let d = dir.display();
    let mutual = match &tls.client_ca {
        Some(ca) => format!(
            "        ssl_client_certificate {};\n        ssl_verify_client on;\n",
            ca.display()
        ),
        None => String::new(),
    };
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
{mutual}        location = /health {{
            default_type application/json;
            return 200 '{{\"status\":true}}';
        }}
        location / {{
            default_type text/plain;
            return 200 'ok';
        }}
    }}
}}
",
        cert = tls.cert.display(),
        key = tls.key.display(),
    )
}

impl NginxServer {
    /// Writes a config serving `tls` on `port` into `dir` and starts nginx;
    /// waits until it accepts connections.
    pub fn start(port: u16, dir: &Path, tls: &ServerTls) -> NginxServer {
        fs::create_dir_all(dir.join("tmp")).expect("mkdir nginx dir");
        fs::write(dir.join("nginx.conf"), config(dir, port, tls)).expect("write nginx.conf");
        let mut server = NginxServer {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        server.restart();
        server
    }

    /// Starts nginx again with the config in its directory (the files it
    /// names are read again: write new certificates, then restart).
    pub fn restart(&mut self) {
        self.kill();
        let dir = &self.dir;
        let child = Command::new(nginx_program())
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx is installed (.ci/run installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "nginx exited ({status}) on port {}:\n{}",
                    self.port,
                    fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The HTTPS URL of `path` on this server, by address.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for NginxServer {
    fn drop(&mut self) {
        self.kill();
    }
}
