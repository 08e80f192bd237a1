//! Several nodes of a site on one machine, for the cluster tests: each
//! node is a systemd-nspawn container booting a role image's real root
//! tree (its systemd, packages, units and overlays, built by
//! `owui-builder build` from images/<role>.toml) in its own network
//! namespace on a bridge (netns.rs), with its own /var and its own signed
//! seed.
//!
//! What is real: the image's erofs root, read-only as on a node; systemd
//! as PID 1 with the image's units; the first-boot gate importing the seed
//! from /efi/owui/seed.toml and checking its signature against the image's
//! trust store; the agent and what the role starts; the node's /var kept
//! across a stop and a start, as the data partition keeps it.
//!
//! What is not (qemu covers it, tests/src/qemu.rs): no disk, UEFI, UKI or
//! verity; /var is a host directory and /efi a read-only host directory
//! holding only the seed; the data partition the gate measures is a
//! sparse 1 TiB loop disk shared by the site's nodes (only its size is
//! read); the address comes from the kernel command line (`ip=`, as on a
//! network boot: the image's networkd files, and a seed's `[network]`
//! without `--mac`, match physical ports, not the veth); the image has no
//! content (containers,
//! models), no Quadlet units and no GPU driver set. The agent is this
//! tree's `target/<profile>/owui-agent`, bound over the image's copy: the
//! image is built with a stand-in there, so a change to the agent does not
//! rebuild the root.
//!
//! The root is built once per machine and role (about two and a half
//! minutes) in the builder's cache, which the image tests share, and
//! linked into [`CACHE`]. The builder is asked again only when the spec,
//! images/, units/, builder/assets/ or the builder's image code change
//! (seconds, while its rootfs stage is cached). Each node boots in about
//! ten seconds: the gate waits that long for a seed medium before it reads
//! the seed on /efi, as on a real node.
//!
//! Use: [`Site::boot`] boots [`NodeSpec`]s at once and returns when each
//! node's gate is open and its agent answers; [`Site::node`] gives
//! [`SiteNode::exec`] (a command as root inside), `status`, `journal`,
//! `console` and `in_root`; [`Site::node_mut`] stops, starts and cuts the
//! power of a node; [`Site::add`] boots one more; [`Site::lan`] cuts
//! cables and captures. Seeds ([`Seed::create`], [`Seed::read`]) are
//! signed with [`signing_key`], the key every harness image trusts.
//!
//! Needs root, systemd-nspawn, iproute2, systemd-repart, losetup and
//! partx, and the image build's tools (.ci/run installs them).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::image::{build_with_agent, builder, repo};
use crate::netns::{self, Lan};
use crate::nspawn::leader_of;
use crate::site::{bin, seed_create_args, Run};

/// The harness's images, its signing key and the stand-in agent, kept
/// between runs.
pub const CACHE: &str = "/var/tmp/owui-test-site";
/// The builder's cache (packages, rootfs stage), shared with the image
/// tests.
const BUILDER_CACHE: &str = "/var/tmp/owui-test-image-cache";
/// How long a node may take from nspawn's start to an answering agent.
const BOOT_LIMIT: Duration = Duration::from_secs(180);
/// How long a node may take to power off after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(30);
/// The loop disk's size: above every role's data partition minimum.
const DISK_BYTES: &str = "1T";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A role image's root filesystem, as the builder made it.
#[derive(Debug, Clone)]
pub struct RoleImage {
    pub role: String,
    /// The erofs root (`root.erofs` of the builder's rootfs stage).
    pub root: PathBuf,
    pub root_hash: String,
}

/// The secret key every harness image trusts (made on first use): sign
/// seeds with it.
pub fn signing_key() -> PathBuf {
    let key = Path::new(CACHE).join("keys/owui.key");
    if !key.exists() {
        let _lock = lock_cache();
        if !key.exists() {
            let keys = key.parent().unwrap().to_str().unwrap();
            builder(&["key", "generate", "--out", keys]).ok();
        }
    }
    key
}

/// The cache, for this process alone until dropped: one builder at a time
/// on this machine (two would race for the same rootfs stage), and one
/// signing key.
fn lock_cache() -> Flock<fs::File> {
    fs::create_dir_all(CACHE).unwrap();
    let file = fs::File::create(Path::new(CACHE).join("lock")).unwrap();
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap()
}

/// The root of `role`'s image, built on first use on this machine (once
/// per test process the builder is asked whether it is current).
pub fn role_image(role: &str) -> RoleImage {
    static IMAGES: OnceLock<Mutex<BTreeMap<String, RoleImage>>> = OnceLock::new();
    let images = IMAGES.get_or_init(Default::default);
    let mut images = images.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = images.get(role) {
        return image.clone();
    }
    let image = build_role_image(role);
    images.insert(role.to_string(), image.clone());
    image
}

fn build_role_image(role: &str) -> RoleImage {
    let key = signing_key();
    let cache = Path::new(CACHE);
    let _lock = lock_cache();
    fs::create_dir_all(cache.join("roots")).unwrap();
    // The stand-in agent: any ELF file the builder can strip, the same
    // bytes every build so the rootfs stage's key stays put.
    let stand_in = cache.join("agent-stand-in");
    if !stand_in.exists() {
        fs::copy("/usr/bin/true", &stand_in).unwrap();
    }
    let spec_text = harness_spec(role);
    let inputs = inputs_key(&spec_text, &[&key.with_extension("pub"), &stand_in]);
    // Asking the builder writes a whole image (most of a GiB) only to
    // learn the root hash: not while the inputs are the same.
    let record = cache.join(format!("roots/{role}.inputs"));
    if let Some(image) = recorded_root(role, &record, &inputs) {
        return image;
    }
    let spec = cache.join(format!("{role}.toml"));
    fs::write(&spec, spec_text).unwrap();
    let out = tempfile::tempdir_in(cache).unwrap();
    let started = Instant::now();
    let built = build_with_agent(
        &spec,
        &key,
        out.path(),
        Path::new(BUILDER_CACHE),
        &stand_in,
        &[],
    )
    .ok()
    .json();
    eprintln!("the {role} image: built in {:?}", started.elapsed());
    let root_hash = built["root_hash"].as_str().unwrap().to_string();
    let root = root_path(role, &root_hash);
    if !root.exists() {
        // A link to the builder's stage output: no copy, and it stays
        // when that cache is cleaned.
        let stage = rootfs_stage(&root_hash);
        let _ = fs::remove_file(&root);
        fs::hard_link(stage.join("root.erofs"), &root).unwrap();
        remove_older_roots(role, &root);
    }
    fs::write(&record, format!("{inputs} {root_hash}\n")).unwrap();
    RoleImage {
        role: role.to_string(),
        root,
        root_hash,
    }
}

fn root_path(role: &str, root_hash: &str) -> PathBuf {
    let short = root_hash.get(..16).unwrap_or(root_hash);
    Path::new(CACHE).join(format!("roots/{role}-{short}.erofs"))
}

/// The root the builder made last from `inputs`, if it is still there.
fn recorded_root(role: &str, record: &Path, inputs: &str) -> Option<RoleImage> {
    let text = fs::read_to_string(record).ok()?;
    let (recorded, root_hash) = text.trim().split_once(' ')?;
    let root = root_path(role, root_hash);
    (recorded == inputs && root.exists()).then(|| RoleImage {
        role: role.to_string(),
        root,
        root_hash: root_hash.to_string(),
    })
}

/// A digest of what a role's root is made from, as far as this tree
/// holds it: the spec, the images, units and builder assets, the
/// builder's image code (a change there may change the tree) and `files`.
fn inputs_key(spec: &str, files: &[&Path]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    h.update(spec);
    let repo = repo();
    let mut paths: Vec<PathBuf> = files.iter().map(|f| f.to_path_buf()).collect();
    for dir in ["images", "units", "builder/assets", "builder/src/image"] {
        files_under(&repo.join(dir), &mut paths);
    }
    for path in paths {
        h.update(path.as_os_str().as_encoded_bytes());
        h.update([0]);
        match fs::read_link(&path) {
            Ok(target) => h.update(target.as_os_str().as_encoded_bytes()),
            Err(_) => h.update(fs::read(&path).unwrap()),
        }
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Every file and link under `dir`, in name order.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// images/<role>.toml as a spec the harness can build here: paths made
/// absolute, and without what needs a registry or a GPU (content, Quadlet
/// units, the driver set).
pub fn harness_spec(role: &str) -> String {
    let images = repo().join("images");
    let file = images.join(format!("{role}.toml"));
    let text = fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no role image {role}: {}: {e}", file.display()));
    let mut spec: toml::Table = text.parse().unwrap();
    for key in ["oci", "ollama", "huggingface", "gpu"] {
        spec.remove(key);
    }
    let absolute = |v: &toml::Value| {
        toml::Value::String(images.join(v.as_str().unwrap()).display().to_string())
    };
    if let Some(base) = spec.get_mut("base") {
        *base = absolute(base);
    }
    if let Some(toml::Value::Table(units)) = spec.get_mut("units") {
        units.remove("quadlets");
    }
    if let Some(toml::Value::Array(dirs)) = spec
        .get_mut("overlay")
        .and_then(|o| o.as_table_mut())
        .and_then(|o| o.get_mut("dirs"))
    {
        for dir in dirs.iter_mut() {
            *dir = absolute(dir);
        }
    }
    format!(
        "# Written by the site harness (tests/src/site_harness.rs) from {}.\n{}",
        file.display(),
        toml::to_string(&spec).unwrap()
    )
}

/// The builder's rootfs stage output for the root with `root_hash`.
fn rootfs_stage(root_hash: &str) -> PathBuf {
    let cache = Path::new(BUILDER_CACHE);
    for entry in fs::read_dir(cache).unwrap().flatten() {
        let dir = entry.path();
        let Ok(verity) = fs::read(dir.join("verity.json")) else {
            continue;
        };
        let verity: serde_json::Value = serde_json::from_slice(&verity).unwrap_or_default();
        if verity["root_hash"] == root_hash && dir.join("root.erofs").is_file() {
            return dir;
        }
    }
    panic!("no rootfs stage in {BUILDER_CACHE} has root hash {root_hash}")
}

/// Roots of `role` other than `current`: earlier builds.
fn remove_older_roots(role: &str, current: &Path) {
    let roots = Path::new(CACHE).join("roots");
    for entry in fs::read_dir(&roots).unwrap().flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!("{role}-")) && entry.path() != current {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A node's seed: seed.toml and its minisign signature.
#[derive(Debug, Clone)]
pub struct Seed {
    pub toml: Vec<u8>,
    pub minisig: Vec<u8>,
}

impl Seed {
    /// `owui-builder seed create --node NODE --role ROLE`, signed with
    /// [`signing_key`], with `more` arguments (`--address`, `--admin-email`, …).
    pub fn create(node: &str, role: &str, more: &[&str]) -> Seed {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seed.toml");
        let key = signing_key();
        let mut args =
            seed_create_args(node, role, key.to_str().unwrap(), file.to_str().unwrap()).to_vec();
        args.extend(more);
        builder(&args).ok();
        Seed::read(&file)
    }

    /// A seed file and the `.minisig` beside it.
    pub fn read(file: &Path) -> Seed {
        let mut sig = file.as_os_str().to_os_string();
        sig.push(".minisig");
        Seed {
            toml: fs::read(file).unwrap(),
            minisig: fs::read(sig).unwrap(),
        }
    }
}

/// One node to boot.
pub struct NodeSpec<'a> {
    /// How the test names the node (`Site::node`); its seed names it too.
    pub name: &'a str,
    /// The role image it boots.
    pub role: &'a str,
    /// Its address: 198.51.100.`host_octet`.
    pub host_octet: u8,
    pub seed: Seed,
}

/// Nodes booted on one LAN; every node is powered off, every mount and
/// device undone and every namespace removed when dropped.
pub struct Site {
    nodes: Vec<SiteNode>,
    /// Where each role's root is mounted (read-only, shared by its nodes).
    roots: BTreeMap<String, PathBuf>,
    disk: LoopDisk,
    lan: Lan,
    dir: tempfile::TempDir,
}

impl Site {
    /// Boots every node at once and waits until each one's first-boot gate
    /// has opened and its agent answers `status`.
    pub fn boot(specs: &[NodeSpec<'_>]) -> Site {
        sweep_killed_sites();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SITE_DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .unwrap();
        let disk = LoopDisk::new(&dir.path().join("disk.img"));
        let mut site = Site {
            nodes: Vec::new(),
            roots: BTreeMap::new(),
            disk,
            lan: Lan::new(),
            dir,
        };
        for spec in specs {
            site.prepare(spec);
        }
        for node in &mut site.nodes {
            node.spawn();
        }
        for node in &mut site.nodes {
            node.wait_ready();
        }
        site
    }

    /// Boots one more node on the LAN (a node added after the rollout)
    /// and waits until it is ready.
    pub fn add(&mut self, spec: &NodeSpec<'_>) -> &mut SiteNode {
        self.prepare(spec);
        let node = self.nodes.last_mut().unwrap();
        node.start();
        node
    }

    /// Mounts the node's root if no node of its role has, and makes its
    /// state, its seed and its place on the LAN.
    fn prepare(&mut self, spec: &NodeSpec<'_>) {
        assert!(
            self.nodes.iter().all(|n| n.name != spec.name),
            "two nodes named {}",
            spec.name
        );
        if !self.roots.contains_key(spec.role) {
            let image = role_image(spec.role);
            let at = self.dir.path().join(format!("root-{}", spec.role));
            fs::create_dir(&at).unwrap();
            ok(Command::new("mount")
                .args(["-t", "erofs", "-o", "loop,ro"])
                .arg(&image.root)
                .arg(&at));
            self.roots.insert(spec.role.to_string(), at);
        }
        let node = SiteNode::new(
            self.dir.path(),
            spec,
            &self.roots[spec.role],
            self.lan.node(spec.host_octet),
            &self.disk,
        );
        self.nodes.push(node);
    }

    pub fn node(&self, name: &str) -> &SiteNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this site"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut SiteNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this site"))
    }

    pub fn nodes(&self) -> &[SiteNode] {
        &self.nodes
    }

    /// The LAN, to cut a node's cable or capture on the bridge.
    pub fn lan(&self) -> &Lan {
        &self.lan
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // All at once: each node powers off while the others do.
        for node in &self.nodes {
            node.signal_stop();
        }
        for node in &mut self.nodes {
            node.reap();
        }
        for root in self.roots.values() {
            let _ = Command::new("umount").arg(root).status();
        }
    }
}

/// One booted (or stopped) node.
pub struct SiteNode {
    pub name: String,
    pub role: String,
    /// Its network namespace and address on the LAN.
    pub net: netns::Node,
    /// The node's /var (what its data partition holds), on the host.
    pub var: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    nspawn: Option<Child>,
    /// The container's PID 1 as the host sees it; 0 while stopped.
    leader: u32,
}

impl SiteNode {
    fn new(
        site_dir: &Path,
        spec: &NodeSpec<'_>,
        root: &Path,
        net: netns::Node,
        disk: &LoopDisk,
    ) -> SiteNode {
        let dir = site_dir.join(format!("node-{}", spec.name));
        let var = dir.join("var");
        let seeds = dir.join("efi/owui");
        // The gate reads the data partition's link and sizes from sysfs.
        let partlabels = dir.join("by-partlabel");
        for d in [&var, &seeds, &partlabels] {
            fs::create_dir_all(d).unwrap();
        }
        for d in [dir.as_path(), &var, &dir.join("efi"), &seeds] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::write(seeds.join("seed.toml"), &spec.seed.toml).unwrap();
        fs::write(seeds.join("seed.toml.minisig"), &spec.seed.minisig).unwrap();
        symlink(
            format!("../../{}", disk.partition),
            partlabels.join("owui-data"),
        )
        .unwrap();
        // Not the seed's name: the gate sets the hostname from the seed.
        let machine = net.netns.clone();
        let bind = |from: &Path, to: &str| format!("{}:{to}", from.display());
        let args = vec![
            "-D".to_string(),
            root.display().to_string(),
            "--read-only".into(),
            "--boot".into(),
            "--register=no".into(),
            "--keep-unit".into(),
            format!("--machine={machine}"),
            // The same machine ID every start: its journal stays its own.
            format!("--uuid={}", machine_uuid(&machine)),
            format!("--network-namespace-path={}", net.netns_path()),
            // The node owns its namespace: its firewall, its addresses.
            "--capability=CAP_NET_ADMIN".into(),
            // A console (a pseudo TTY) whose output goes to the log: the
            // gate and the READY banner print there.
            "--console=read-only".into(),
            "--link-journal=no".into(),
            "--resolv-conf=off".into(),
            "--timezone=off".into(),
            format!("--bind={}", bind(&var, "/var")),
            format!("--bind-ro={}", bind(&dir.join("efi"), "/efi")),
            format!("--bind-ro={}", bind(&partlabels, "/dev/disk/by-partlabel")),
            format!(
                "--bind-ro={}",
                bind(&bin("owui-agent"), "/usr/bin/owui-agent")
            ),
            // Arguments of the container's systemd, read as its kernel
            // command line. The address, as a network boot gives it
            // (systemd-network-generator): the image's networkd files, and
            // a seed's without --mac, match physical ports, not this veth.
            format!(
                "ip={}:::{}::eth0:off",
                net.address,
                std::net::Ipv4Addr::from(u32::MAX << (32 - netns::PREFIX_LEN))
            ),
            // /var is no filesystem of its own here: nothing to grow.
            "systemd.mask=systemd-growfs@var.service".into(),
        ];
        SiteNode {
            name: spec.name.to_string(),
            role: spec.role.to_string(),
            net,
            var,
            args,
            log: dir.join("console.log"),
            nspawn: None,
            leader: 0,
        }
    }

    fn spawn(&mut self) {
        assert!(self.nspawn.is_none(), "{} is running already", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new("systemd-nspawn")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e}"));
        self.nspawn = Some(child);
        self.leader = 0;
    }

    /// Waits until the gate opened and `owui-agent status --json` answers.
    fn wait_ready(&mut self) {
        let started = Instant::now();
        let deadline = started + BOOT_LIMIT;
        let mut last = String::from("no PID 1 yet");
        loop {
            if let Some(status) = self
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                panic!(
                    "{}: systemd-nspawn exited ({status}) before the node was ready; its console:\n{}",
                    self.name,
                    self.console()
                );
            }
            if self.leader == 0 {
                self.leader = self
                    .nspawn
                    .as_ref()
                    .and_then(|c| leader_of(c.id()))
                    .unwrap_or(0);
            } else if !self.in_root("/run/owui/gate-open").exists() {
                last = "the first-boot gate is not open".into();
            } else {
                let r = self.exec(&["owui-agent", "status", "--json"]);
                match serde_json::from_str::<serde_json::Value>(&r.stdout) {
                    Ok(_) => break,
                    Err(_) => last = format!("status: exit {}: {}", r.code, r.stderr.trim()),
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: not ready after {BOOT_LIMIT:?} ({last}); its journal:\n{}\nits console:\n{}",
                    self.name,
                    self.journal(None),
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        eprintln!("{}: ready in {:?}", self.name, started.elapsed());
    }

    /// `path` inside the running container, seen from the host.
    pub fn in_root(&self, path: &str) -> PathBuf {
        assert!(self.leader != 0, "{} is not running", self.name);
        PathBuf::from(format!("/proc/{}/root{path}", self.leader))
    }

    /// `args` run as root inside the container (all its namespaces, a
    /// clean environment), as an operator's shell would.
    pub fn exec(&self, args: &[&str]) -> Run {
        assert!(self.leader != 0, "{} is not running", self.name);
        let out = Command::new("nsenter")
            .arg("-t")
            .arg(self.leader.to_string())
            .args(["-a", "--", "env", "-i", PATH])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter (util-linux)");
        Run::of(out)
    }

    /// `owui-agent status --json` on the node, parsed.
    pub fn status(&self) -> serde_json::Value {
        let r = self.exec(&["owui-agent", "status", "--json"]);
        serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{}: status --json: {e}: {}", self.name, r.stderr))
    }

    /// This boot's journal, of `unit` or of everything (for messages).
    pub fn journal(&self, unit: Option<&str>) -> String {
        let mut args = vec!["journalctl", "--no-pager", "-b", "-o", "short-precise"];
        if let Some(unit) = unit {
            args.extend(["-u", unit]);
        } else {
            args.extend(["-n", "200"]);
        }
        let r = self.exec(&args);
        format!("{}{}", r.stdout, r.stderr)
    }

    /// What systemd-nspawn and the console printed, every boot.
    pub fn console(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the console shows `text` within `limit` (systemd-nspawn
    /// copies the console to its log a moment after the node wrote it).
    pub fn console_shows(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.console().contains(text) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Powers the node off (SIGTERM to systemd-nspawn) and waits; its /var
    /// stays.
    pub fn stop(&mut self) {
        self.signal_stop();
        self.reap();
    }

    /// Boots the node again with the state it had, and waits until it is
    /// ready.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    /// Cuts the node's power: SIGKILL to its PID 1 ends everything in it
    /// at once, with no shutdown; its /var stays as the cut left it.
    pub fn power_cut(&mut self) {
        assert!(self.leader != 0, "{} is not running", self.name);
        let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
        self.reap();
    }

    fn signal_stop(&self) {
        if let Some(child) = &self.nspawn {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
    }

    /// Waits for systemd-nspawn to exit; ends the container by force past
    /// [`STOP_LIMIT`].
    fn reap(&mut self) {
        let Some(mut child) = self.nspawn.take() else {
            return;
        };
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                self.leader = 0;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{}: no power-off in {STOP_LIMIT:?}; killing", self.name);
        if self.leader != 0 {
            let _ = kill(Pid::from_raw(self.leader as i32), Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        self.leader = 0;
    }
}

/// Starts the name of a site's directory (in the temporary directory),
/// before the test process's PID.
const SITE_DIR_PREFIX: &str = "owui-site-";

/// Undoes what the sites of killed test processes left (no drop ran for
/// them): their containers, still running, are powered off, their roots
/// unmounted, their loop disks detached and their directories removed.
fn sweep_killed_sites() {
    let entries = fs::read_dir(std::env::temp_dir()).into_iter().flatten();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SITE_DIR_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let dir = entry.path();
        eprintln!(
            "removing the site of killed test process {pid}: {}",
            dir.display()
        );
        stop_containers_under(&dir);
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for mount_point in mountinfo.lines().filter_map(|l| l.split(' ').nth(4)) {
            if Path::new(mount_point).starts_with(&dir) {
                let _ = Command::new("umount").arg(mount_point).status();
            }
        }
        let out = Command::new("losetup")
            .arg("--associated")
            .arg(dir.join("disk.img"))
            .output();
        let listing = out.map(|o| o.stdout).unwrap_or_default();
        for line in String::from_utf8_lossy(&listing).lines() {
            if let Some((device, _)) = line.split_once(':') {
                let _ = Command::new("partx").args(["-d", device]).status();
                let _ = Command::new("losetup").args(["-d", device]).status();
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// SIGTERM to every systemd-nspawn booting a root under `dir`; waits
/// until they are gone.
fn stop_containers_under(dir: &Path) {
    let booting_under = |pid: &str| {
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"))
            && args.windows(2).any(|w| {
                w[0] == b"-D" && Path::new(&*String::from_utf8_lossy(w[1])).starts_with(dir)
            })
    };
    let pids: Vec<String> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()) && booting_under(pid))
        .collect();
    for pid in &pids {
        if let Ok(pid) = pid.parse() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + STOP_LIMIT;
    while pids.iter().any(|p| booting_under(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A container UUID from its machine name (nspawn makes it the machine ID).
fn machine_uuid(machine: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = hex::encode(&Sha256::digest(machine.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A sparse disk with one GPT partition labelled owui-data, on a loop
/// device with a partition node: what the first-boot gate measures.
struct LoopDisk {
    device: String,
    /// The partition's name under /dev and /sys/class/block (`loopNp1`).
    partition: String,
}

impl LoopDisk {
    fn new(file: &Path) -> LoopDisk {
        let defs = file.with_extension("repart.d");
        fs::create_dir_all(&defs).unwrap();
        fs::write(
            defs.join("data.conf"),
            "[Partition]\nType=linux-generic\nLabel=owui-data\nSizeMinBytes=16M\nSizeMaxBytes=16M\n",
        )
        .unwrap();
        let out = Command::new("systemd-repart")
            .args(["--empty=create", "--dry-run=no"])
            .arg(format!("--size={DISK_BYTES}"))
            .arg(format!("--definitions={}", defs.display()))
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "systemd-repart: {out:?}");
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .unwrap();
        assert!(out.status.success(), "losetup: {out:?}");
        let device = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let disk = LoopDisk {
            partition: format!("{}p1", device.trim_start_matches("/dev/")),
            device,
        };
        ok(Command::new("partx").args(["-a", &disk.device]));
        disk
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("partx").args(["-d", &self.device]).status();
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

fn ok(c: &mut Command) {
    let status = c.status().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(status.success(), "{c:?}: {status}");
}
