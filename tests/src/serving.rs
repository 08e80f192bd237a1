//! The real serving parts for tests: the container images
//! `scripts/serving-images.sh` builds (Open WebUI from PyPI, llama-server
//! from Debian; cached under /var/tmp between runs) pushed to a
//! [`TestRegistry`], the tiny model `scripts/tiny-gguf.py` writes, and
//! containers run under podman from a node's store the way the image's
//! Quadlet units run them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::repo;
use crate::registry::{ClientFiles, TestRegistry, PASSWORD};

/// Where the built images stay between test runs (a fresh CI machine
/// builds them once, in a few minutes).
const IMAGE_CACHE: &str = "/var/tmp/owui-test-serving-cache";

/// The serving images, pushed: `(name, reference with digest)` as the
/// script printed them, and what a client of the registry needs.
pub struct PushedImages {
    pub refs: Vec<(String, String)>,
    pub client: ClientFiles,
}

impl PushedImages {
    /// The pushed reference of `name` (`open-webui`, `llama-server`).
    pub fn reference(&self, name: &str) -> &str {
        self.refs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, r)| r.as_str())
            .unwrap_or_else(|| panic!("serving-images.sh printed no {name}: {:?}", self.refs))
    }
}

/// Builds (or takes from the cache) both images and pushes them to `registry`.
pub fn push_serving_images(registry: &TestRegistry, dir: &Path) -> PushedImages {
    let host = registry.host();
    let client = registry.client_files(dir, &[&host], PASSWORD);
    let certs = client.certs.join(&host);
    let refs = serving_images(&[
        "--push",
        &host,
        "--cert-dir",
        &certs.display().to_string(),
        "--authfile",
        &client.auth.display().to_string(),
    ]);
    PushedImages { refs, client }
}

/// The OCI image layout of serving image `name` (`open-webui`,
/// `llama-server`), built or taken from the cache.
pub fn serving_image_layout(name: &str) -> PathBuf {
    serving_images(&[])
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, layout)| PathBuf::from(layout))
        .unwrap_or_else(|| panic!("serving-images.sh printed no {name}"))
}

/// `scripts/serving-images.sh` on the test cache with `args`: the
/// `(name, reference or layout)` lines it printed.
fn serving_images(args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new("bash")
        .arg(repo().join("scripts/serving-images.sh"))
        .args(["--cache", IMAGE_CACHE])
        .args(args)
        .output()
        .expect("running scripts/serving-images.sh");
    assert!(
        out.status.success(),
        "serving-images.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect()
}

/// llama-server's arguments as its Quadlet unit gives them, on `port`.
pub fn llama_server_args(port: u16) -> Vec<String> {
    let unit = fs::read_to_string(repo().join("units/llama-server.container"))
        .expect("units/llama-server.container");
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("Exec="))
        .expect("llama-server.container has Exec=");
    exec.split_whitespace()
        .map(|a| {
            if a == "8000" {
                port.to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

/// Writes the tiny model llama.cpp runs to `path`.
pub fn tiny_model(path: &Path) {
    let out = Command::new("python3")
        .arg(repo().join("scripts/tiny-gguf.py"))
        .arg(path)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "tiny-gguf.py (needs pip's gguf and numpy; .ci/run installs them): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// podman on a node's image store, with the settings this machine needs
/// (runc, cgroupfs: TESTING.md), and the containers it started, removed
/// when dropped.
pub struct Podman {
    graph_root: PathBuf,
    store: Vec<String>,
    conf: PathBuf,
    /// The same store for a `podman` run without these flags (the agent's).
    storage_conf: PathBuf,
    started: Vec<String>,
}

impl Podman {
    pub fn new(graph_root: &Path, run_root: &Path, driver: &str, dir: &Path) -> Podman {
        let conf = dir.join("containers.conf");
        fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .expect("write containers.conf");
        let storage_conf = dir.join("storage.conf");
        fs::write(
            &storage_conf,
            format!(
                "[storage]\ndriver = \"{driver}\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                graph_root.display(),
                run_root.display()
            ),
        )
        .expect("write storage.conf");
        Podman {
            graph_root: graph_root.to_path_buf(),
            store: vec![
                "--root".into(),
                graph_root.display().to_string(),
                "--runroot".into(),
                run_root.display().to_string(),
                "--storage-driver".into(),
                driver.into(),
            ],
            conf,
            storage_conf,
            started: Vec::new(),
        }
    }

    /// The environment under which a plain `podman` uses this store and
    /// these settings.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [
            ("CONTAINERS_CONF", self.conf.display().to_string()),
            (
                "CONTAINERS_STORAGE_CONF",
                self.storage_conf.display().to_string(),
            ),
        ]
    }

    /// Copies the image in the OCI layout `layout` into the store; returns
    /// its ID.
    pub fn pull_layout(&self, layout: &Path) -> String {
        let out = self
            .command()
            .args(["pull", "-q"])
            .arg(format!("oci:{}", layout.display()))
            .output()
            .expect("podman");
        assert!(
            out.status.success(),
            "podman pull {}: {}",
            layout.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn command(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(&self.store).env("CONTAINERS_CONF", &self.conf);
        c
    }

    /// `podman run -d --name NAME` with the hardening the Quadlet units
    /// give (read-only root, no capabilities, no new privileges, host
    /// network), then `args` (options, the image, its arguments).
    pub fn run_detached(&mut self, name: &str, args: &[String]) {
        let out = self
            .command()
            .args([
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "host",
                "--read-only",
            ])
            .args(["--cap-drop", "all", "--security-opt", "no-new-privileges"])
            .args(args)
            .output()
            .expect("podman");
        assert!(
            out.status.success(),
            "podman run {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.started.push(name.to_string());
    }

    pub fn logs(&self, name: &str) -> String {
        let out = self
            .command()
            .args(["logs", name])
            .output()
            .expect("podman");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for name in &self.started {
            let _ = self.command().args(["rm", "-f", "-t", "2", name]).output();
        }
        // The overlay driver leaves its own mount behind.
        let _ = owui_bundle::oci::unmount_below(&self.graph_root);
    }
}
