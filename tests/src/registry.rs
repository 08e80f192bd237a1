//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a loopback port with TLS from a throwaway CA and htpasswd auth,
//! filled with `skopeo copy`; and two misbehaving TCP peers in front of it
//! (one that cuts a connection after some bytes, one that never answers).

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::free_ports;
use crate::pki::{TestCa, Usage};

pub const USER: &str = "puller";
pub const PASSWORD: &str = "correct horse";

pub struct TestRegistry {
    dir: tempfile::TempDir,
    ca: String,
    child: Option<Child>,
    pub port: u16,
}

/// What a client of the registry needs: a `config.json` with credentials
/// and a certs directory (`<host>/ca.crt`) for each host it is reached at.
pub struct ClientFiles {
    pub auth: PathBuf,
    pub certs: PathBuf,
}

impl TestRegistry {
    pub fn start() -> TestRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let [port] = free_ports::<1>();
        let ca = TestCa::new("owui test registry CA");
        ca.issue(&["127.0.0.1"], Usage::Server, -1.0, 10.5)
            .write(dir.path(), "server");
        let htpasswd = dir.path().join("htpasswd");
        let out = Command::new("htpasswd")
            .args(["-B", "-b", "-c"])
            .arg(&htpasswd)
            .args([USER, PASSWORD])
            .output()
            .expect("htpasswd (apache2-utils) is needed; .ci/run installs it");
        assert!(out.status.success(), "htpasswd: {out:?}");
        let d = dir.path().display();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n\
             http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {d}/server.pem\n    key: {d}/server.key\n\
             auth:\n  htpasswd:\n    realm: owui-test\n    path: {d}/htpasswd\n"
        );
        fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let mut registry = TestRegistry {
            dir,
            ca: ca.pem,
            child: None,
            port,
        };
        registry.resume();
        registry
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the registry process (again) and waits until it listens.
    pub fn resume(&mut self) {
        let log = fs::File::create(self.dir.path().join("registry.log")).expect("log");
        let child = Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "docker-registry (Debian package docker-registry) is needed; .ci/run installs it",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not listen: {}",
                fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the registry process; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A `config.json` holding `password` for each of `hosts`, and a certs
    /// directory trusting the test CA for each, under `dir`.
    pub fn client_files(&self, dir: &Path, hosts: &[&str], password: &str) -> ClientFiles {
        let certs = dir.join("certs.d");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let mut auths = serde_json::Map::new();
        for host in hosts {
            fs::create_dir_all(certs.join(host)).expect("mkdir certs");
            fs::write(certs.join(host).join("ca.crt"), &self.ca).expect("write ca");
            auths.insert(host.to_string(), serde_json::json!({ "auth": auth }));
        }
        let path = dir.join("config.json");
        fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).expect("write auth");
        ClientFiles { auth: path, certs }
    }

    /// `skopeo copy` of image `name` from the OCI layout at `layout` to
    /// `repo_tag` (`repo:tag`) here; `all`: every image of an index.
    pub fn push(&self, layout: &Path, name: &str, repo_tag: &str, all: bool) {
        let from = format!("oci:{}:{name}", layout.display());
        let to = format!("docker://{}/{repo_tag}", self.host());
        // As they are: skopeo would otherwise compress the layers.
        let mut extra = vec!["--quiet", "--preserve-digests"];
        if all {
            extra.push("--all");
        }
        self.skopeo("copy", "dest", &extra, &[&from, &to]);
    }

    /// [`TestRegistry::push`] converted to a Docker v2 schema 2 manifest
    /// (new digests); returns the manifest's digest.
    pub fn push_as_docker(&self, layout: &Path, name: &str, repo_tag: &str) -> String {
        self.push_converted(layout, name, repo_tag, &["--format", "v2s2"])
    }

    /// [`TestRegistry::push`] with the layers gzip-compressed, as skopeo
    /// pushes by default (new digests); returns the manifest's digest.
    pub fn push_compressed(&self, layout: &Path, name: &str, repo_tag: &str) -> String {
        self.push_converted(layout, name, repo_tag, &[])
    }

    fn push_converted(&self, layout: &Path, name: &str, repo_tag: &str, how: &[&str]) -> String {
        let from = format!("oci:{}:{name}", layout.display());
        let to = format!("docker://{}/{repo_tag}", self.host());
        let mut extra = vec!["--quiet"];
        extra.extend(how);
        self.skopeo("copy", "dest", &extra, &[&from, &to]);
        let raw = self.skopeo("inspect", "", &["--raw"], &[&to]);
        format!("sha256:{}", hex::encode(Sha256::digest(&raw)))
    }

    /// `skopeo copy` of `reference` (on this registry) into an OCI layout,
    /// layers as they are.
    pub fn pull_with_skopeo(&self, reference: &str, layout: &Path) {
        let from = format!("docker://{reference}");
        let to = format!("oci:{}:image", layout.display());
        let extra = [
            "--preserve-digests",
            "--dest-oci-accept-uncompressed-layers",
        ];
        self.skopeo("copy", "src", &extra, &[&from, &to]);
    }

    /// `skopeo VERB` with this registry's credentials and CA (for `side`,
    /// `src` or `dest`, of a copy); returns its stdout.
    fn skopeo(&self, verb: &str, side: &str, extra: &[&str], refs: &[&str]) -> Vec<u8> {
        let files = self.client_files(&self.dir.path().join("skopeo"), &[&self.host()], PASSWORD);
        let prefix = if side.is_empty() {
            String::new()
        } else {
            format!("{side}-")
        };
        let out = Command::new("skopeo")
            .arg(verb)
            .arg(format!("--{prefix}creds={USER}:{PASSWORD}"))
            .arg(format!(
                "--{prefix}cert-dir={}",
                files.certs.join(self.host()).display()
            ))
            .args(extra)
            .args(refs)
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo {verb} {refs:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The file the registry serves blob `digest` (`sha256:<hex>`) from.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP proxy to `target` that closes each connection once it has passed
/// `cut_after` bytes from the server to the client (or, stalling, keeps it
/// open and sends nothing more).
pub struct CuttingProxy {
    pub port: u16,
}

impl CuttingProxy {
    pub fn start(target: u16, cut_after: u64) -> CuttingProxy {
        CuttingProxy::run(target, cut_after, false)
    }

    /// Passes `stall_after` bytes from the server, then holds the
    /// connection open in silence: a registry that stops mid-transfer.
    pub fn stalling(target: u16, stall_after: u64) -> CuttingProxy {
        CuttingProxy::run(target, stall_after, true)
    }

    fn run(target: u16, cut_after: u64, hold: bool) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let (mut c_read, mut s_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                thread::spawn(move || {
                    let _ = std::io::copy(&mut c_read, &mut s_write);
                });
                let (mut s_read, mut c_write) = (server, client);
                thread::spawn(move || {
                    let mut left = cut_after;
                    let mut buf = [0u8; 16 << 10];
                    while left > 0 {
                        let n = match s_read.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n.min(left as usize),
                        };
                        if c_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        left -= n as u64;
                    }
                    if hold {
                        // The sockets stay open as long as the test runs.
                        loop {
                            thread::sleep(Duration::from_secs(3600));
                        }
                    }
                    let _ = c_write.shutdown(std::net::Shutdown::Both);
                    let _ = s_read.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        CuttingProxy { port }
    }
}

/// A listener that accepts connections and never says anything.
pub struct SilentPeer {
    pub port: u16,
}

impl SilentPeer {
    pub fn start() -> SilentPeer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming().flatten() {
                held.push(conn);
            }
        });
        SilentPeer { port }
    }
}
