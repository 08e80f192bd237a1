//! A site of agent processes for the cluster tests: every node is a
//! network namespace on one LAN ([`crate::netns`]) with its own `--root`
//! holding its signed seed, running the real `owui-agent` and, on control
//! nodes, Debian's real etcd started from the environment file the agent
//! wrote. (The real image's units run the same commands at boot:
//! units/owui-cluster-join.service, owui-etcd.service,
//! owui-agent-api.service.)

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::{Lan, Node};
use crate::site::{bin, Run};

/// One node: its namespace, its root, and the daemons it runs.
pub struct SiteNode {
    pub name: String,
    pub role: String,
    pub net: Node,
    pub root: PathBuf,
    daemons: Vec<(String, Child)>,
}

impl SiteNode {
    /// `owui-agent --root ROOT args…` in the node's namespace.
    pub fn agent(&self, args: &[&str]) -> Run {
        let mut cmd = self.net.command(bin("owui-agent").to_str().expect("utf-8"));
        cmd.arg("--root").arg(&self.root).args(args);
        Run::of(cmd.output().expect("run owui-agent"))
    }

    /// Starts `program args…` in the node's namespace with `env` only,
    /// logging to ROOT/../NAME-LABEL.log; stopped on drop.
    pub fn spawn(&mut self, label: &str, program: &Path, args: &[&str], env: &[(String, String)]) {
        let log = self.log_path(label);
        let out = fs::File::create(&log).expect("log file");
        let mut cmd = self.net.command(program.to_str().expect("utf-8"));
        cmd.args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out);
        let child = cmd.spawn().expect("spawn");
        self.daemons.push((label.to_string(), child));
    }

    pub fn log_path(&self, label: &str) -> PathBuf {
        self.root
            .parent()
            .expect("root has a parent")
            .join(format!("{}-{label}.log", self.name))
    }

    pub fn log(&self, label: &str) -> String {
        fs::read_to_string(self.log_path(label)).unwrap_or_default()
    }

    /// Stops the daemon started as `label` (SIGTERM, then SIGKILL).
    pub fn stop(&mut self, label: &str) {
        if let Some(i) = self.daemons.iter().position(|(l, _)| l == label) {
            let (_, child) = self.daemons.remove(i);
            stop_child(child);
        }
    }

    /// A control node: enrol (self-certify, write etcd's env file), then
    /// start etcd from that file and the agent API.
    pub fn start_control(&mut self, serve_args: &[&str]) {
        self.agent(&["cluster", "join", "--json"]).ok();
        self.start_etcd();
        self.start_api(serve_args);
    }

    pub fn start_etcd(&mut self) {
        let env_file = self.root.join("var/lib/owui/cluster/etcd.env");
        let text = fs::read_to_string(&env_file).expect("etcd.env written by cluster join");
        let env: Vec<(String, String)> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
            .collect();
        self.spawn("etcd", Path::new("/usr/bin/etcd"), &[], &env);
    }

    pub fn start_api(&mut self, serve_args: &[&str]) {
        let root = self.root.to_str().expect("utf-8").to_string();
        let mut args = vec!["--root", &root, "cluster", "serve"];
        args.extend_from_slice(serve_args);
        self.spawn(
            "api",
            &bin("owui-agent"),
            &args,
            &[("RUST_LOG".into(), "info".into())],
        );
    }
}

fn stop_child(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for SiteNode {
    fn drop(&mut self) {
        for (_, child) in self.daemons.drain(..) {
            stop_child(child);
        }
    }
}

/// A site: its directory (made by `owui-builder cluster init`), the
/// signing key the nodes trust, the LAN, and scratch space.
pub struct TestSite {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub key: PathBuf,
    pub lan: Lan,
}

/// 198.51.100.N for control node cN.
pub fn control_address(n: u8) -> String {
    format!("198.51.100.{n}")
}

impl TestSite {
    /// A site named `name` with control nodes c1..cN at 198.51.100.1..N.
    pub fn new(name: &str, controls: u8) -> TestSite {
        TestSite::with_network(name, controls, "198.51.100.0/24")
    }

    /// As [`TestSite::new`], with site network `network` (the LAN stays a
    /// /24, so a node can sit on it outside a smaller site network).
    pub fn with_network(name: &str, controls: u8, network: &str) -> TestSite {
        let tmp = tempfile::tempdir().expect("tempdir");
        let keys = tmp.path().join("keys");
        builder(&["key", "generate", "--out", keys.to_str().expect("utf-8")]).ok();
        let dir = tmp.path().join("site");
        let mut args: Vec<String> = [
            "cluster",
            "init",
            "--name",
            name,
            "--network",
            network,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(dir.display().to_string());
        for n in 1..=controls {
            args.push("--control".into());
            args.push(format!("c{n}={}", control_address(n)));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        builder(&refs).ok();
        TestSite {
            tmp,
            dir,
            key: keys.join("owui.key"),
            lan: Lan::new(),
        }
    }

    /// Writes `name`'s signed seed (extra `cluster seed` flags allowed)
    /// to scratch space; returns its path.
    pub fn seed(&self, name: &str, role: &str, extra: &[&str]) -> PathBuf {
        let out = self.tmp.path().join("seeds").join(format!("{name}.toml"));
        fs::create_dir_all(out.parent().expect("parent")).expect("mkdir");
        let (site, key, out_s) = (
            self.dir.display().to_string(),
            self.key.display().to_string(),
            out.display().to_string(),
        );
        let mut args = vec![
            "cluster", "seed", "--site", &site, "--node", name, "--role", role, "--key", &key,
            "--out", &out_s,
        ];
        args.extend_from_slice(extra);
        builder(&args).ok();
        out
    }

    /// A node at 198.51.100.`host` with `seed` as its imported seed.
    pub fn node(&mut self, name: &str, role: &str, host: u8, seed: &Path) -> SiteNode {
        let root = self.tmp.path().join("nodes").join(name).join("root");
        fs::create_dir_all(root.join("etc/owui")).expect("mkdir");
        fs::create_dir_all(root.join("var/lib/owui")).expect("mkdir");
        fs::copy(seed, root.join("etc/owui/seed.toml")).expect("copy seed");
        SiteNode {
            name: name.to_string(),
            role: role.to_string(),
            net: self.lan.node(host),
            root,
            daemons: Vec::new(),
        }
    }
}

fn builder(args: &[&str]) -> Run {
    Run::of(
        Command::new(bin("owui-builder"))
            .args(args)
            .output()
            .expect("run owui-builder"),
    )
}

/// Waits until `ready` holds, up to `limit`; panics with `what` after.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The node names in a `status --json` document's site view (empty when
/// it has none).
pub fn site_node_names(status: &serde_json::Value) -> Vec<String> {
    status["site"]["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["node"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}
