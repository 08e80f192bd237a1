//! Building images with the real `owui-builder`, for the image tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::qemu::Boot;

use owui_builder::image::disk::{self, GptPartition};

use crate::site::{bin, run, seed_create_args, sha256_hex, Run};

pub const EPOCH: &str = "1700000000";

/// What a test image needs to boot a verified root and run the agent, as a
/// TOML list body for `[debian] packages`.
pub const BOOT_PACKAGES: &str = r#""systemd", "systemd-sysv", "udev", "dbus", "linux-image-amd64", "initramfs-tools",
            "zstd", "kmod", "cryptsetup-bin", "systemd-boot-efi", "systemd-repart", "e2fsprogs""#;

/// The units a test image enables to boot to the READY banner and print
/// its report (see [`report_overlay`]), as a TOML list body.
pub const BOOT_UNITS: &str = r#""var.mount", "efi.mount", "owui-seed.service",
          "owui-secrets.service", "owui-agent.service", "owui-ready.service",
          "boot-test-report.service""#;

/// The kernel command line of a test image: the console on the serial port
/// qemu logs.
pub const BOOT_CMDLINE: &str = r#""console=ttyS0,115200", "systemd.show_status=false""#;

/// The first lines of a test spec: `role`, version 0.1.0, and the Debian
/// suite and mirror of every test image.
pub fn spec_head(role: &str) -> String {
    format!(
        "role = \"{role}\"\nversion = \"0.1.0\"\n[debian]\nsuite = \"trixie\"\n\
         mirror = \"http://deb.debian.org/debian\"\n"
    )
}

/// The lines the report script prints around its output.
pub const REPORT_BEGIN: &str = "BOOT-TEST-STATUS-BEGIN";
pub const REPORT_END: &str = "BOOT-TEST-STATUS-END";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn builder(args: &[&str]) -> Run {
    run(&bin("owui-builder"), args, &[])
}

/// The arguments of `owui-builder build SPEC` with `--key`, `--out`,
/// `--cache` and `--agent` and this tree's units, at [`EPOCH`], `--json`,
/// and `more` arguments.
fn build_args([spec, key, out, cache, agent]: [&Path; 5], more: &[&str]) -> Vec<String> {
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut args = vec![
        "build".to_string(),
        path(spec),
        "--key".into(),
        path(key),
        "--out".into(),
        path(out),
        "--agent".into(),
        path(agent),
        "--units".into(),
        path(&repo().join("units")),
        "--cache".into(),
        path(cache),
        "--source-date-epoch".into(),
        EPOCH.into(),
        "--json".into(),
    ];
    args.extend(more.iter().map(|m| m.to_string()));
    args
}

/// `owui-builder build SPEC` with this tree's agent (see [`build_args`]).
pub fn build(spec: &Path, key: &Path, out: &Path, cache: &Path, more: &[&str]) -> Run {
    build_with_agent(spec, key, out, cache, &bin("owui-agent"), more)
}

/// [`build`] with `agent` as the image's agent binary.
pub fn build_with_agent(
    spec: &Path,
    key: &Path,
    out: &Path,
    cache: &Path,
    agent: &Path,
    more: &[&str],
) -> Run {
    let args = build_args([spec, key, out, cache, agent], more);
    builder(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Where [`build_unshared`] runs the builder: namespaces of its own.
pub enum BuildHost<'a> {
    /// A network namespace with a loopback device and nothing else, as in
    /// a room with no network.
    NoNetwork,
    /// A UTS namespace whose hostname is this: a build host of another name.
    Named(&'a str),
}

/// [`build`] under `unshare`, on `host`.
pub fn build_unshared(
    host: BuildHost<'_>,
    spec: &Path,
    key: &Path,
    out: &Path,
    cache: &Path,
    more: &[&str],
) -> Run {
    let builder = bin("owui-builder");
    let mut args = match host {
        BuildHost::NoNetwork => vec!["-n", "--"],
        BuildHost::Named(name) => vec![
            "--uts",
            "--",
            "sh",
            "-c",
            "hostname \"$0\" && exec \"$@\"",
            name,
        ],
    };
    args.push(builder.to_str().unwrap());
    let rest = build_args([spec, key, out, cache, &bin("owui-agent")], more);
    args.extend(rest.iter().map(String::as_str));
    run(Path::new("unshare"), &args, &[])
}

/// A new signing key pair under `dir/keys`: (secret, public).
pub fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    let keys = dir.join("keys");
    builder(&["key", "generate", "--out", keys.to_str().unwrap()]).ok();
    (keys.join("owui.key"), keys.join("owui.pub"))
}

/// A failed build leaves nothing in its `--out` directory (which may not
/// even exist).
pub fn assert_nothing_in(out: &Path) {
    let left: Vec<_> = fs::read_dir(out)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.file_name())).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// Puts into `overlay` a unit that runs `script` (REPORT_BEGIN/REPORT_END
/// in it become the markers) once the READY banner is out and `after` has
/// run, printing to the console.
pub fn report_overlay(overlay: &Path, after: &str, script: &str) {
    let units = overlay.join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(
        units.join("boot-test-report.service"),
        format!(
            "[Unit]\nAfter=owui-ready.service {after}\nWants=owui-ready.service\n\
             [Service]\nType=oneshot\nExecStart=/usr/local/bin/boot-test-report\n\
             StandardOutput=tty\nTTYPath=/dev/console\n\
             [Install]\nWantedBy=multi-user.target\n"
        ),
    )
    .unwrap();
    let path = overlay.join("usr/local/bin/boot-test-report");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = script
        .replace("REPORT_BEGIN", REPORT_BEGIN)
        .replace("REPORT_END", REPORT_END);
    fs::write(&path, script).unwrap();
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// `owui-builder seed create`: `dir/seed.toml` and its signature by `key`,
/// with the public keys in the `ssh_keys` files for owui-admin.
pub fn signed_seed(dir: &Path, key: &Path, node: &str, role: &str, ssh_keys: &[&Path]) -> PathBuf {
    let mut more = Vec::new();
    for k in ssh_keys {
        more.extend(["--ssh-key", k.to_str().unwrap()]);
    }
    signed_seed_with(dir, key, node, role, &more)
}

/// [`signed_seed`] with `more` arguments for `seed create` (--admin-email,
/// --address, …).
pub fn signed_seed_with(dir: &Path, key: &Path, node: &str, role: &str, more: &[&str]) -> PathBuf {
    let file = dir.join("seed.toml");
    let mut args =
        seed_create_args(node, role, key.to_str().unwrap(), file.to_str().unwrap()).to_vec();
    args.extend(more);
    builder(&args).ok();
    file
}

/// A FAT volume labelled OWUI-SEED holding seed.toml and seed.toml.minisig,
/// signed with `key` (the image's): the install medium.
pub fn seed_medium(dir: &Path, key: &Path, node: &str, role: &str) -> PathBuf {
    seed_medium_with_keys(dir, key, node, role, &[])
}

/// [`seed_medium`] whose seed lets the `ssh_keys` files' keys log in as
/// owui-admin.
pub fn seed_medium_with_keys(
    dir: &Path,
    key: &Path,
    node: &str,
    role: &str,
    ssh_keys: &[&Path],
) -> PathBuf {
    seed_medium_of(dir, &signed_seed(dir, key, node, role, ssh_keys))
}

/// The OWUI-SEED medium holding `file` (a seed from [`signed_seed`] or
/// [`signed_seed_with`]) and its signature beside it.
pub fn seed_medium_of(dir: &Path, file: &Path) -> PathBuf {
    let img = dir.join("seed.img");
    // mkfs.vfat -C will not write over an earlier medium.
    let _ = fs::remove_file(&img);
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new("mkfs.vfat")
        .args(["-C", "-n", "OWUI-SEED"])
        .arg(&img)
        .arg("2048")
        .stdout(std::process::Stdio::null()));
    for (from, to) in [
        (file.to_path_buf(), "::seed.toml"),
        (
            PathBuf::from(format!("{}.minisig", file.display())),
            "::seed.toml.minisig",
        ),
    ] {
        ok(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&img)
            .arg(&from)
            .arg(to));
    }
    img
}

/// How much bigger than the image the disk a test boots is (sparse): first
/// boot grows the data partition into it.
pub const BOOT_DISK_ROOM: u64 = 4 << 30;

/// A copy of the image on a disk [`BOOT_DISK_ROOM`] bigger (sparse).
pub fn boot_disk(image: &Path, dest: &Path) -> PathBuf {
    fs::copy(image, dest).unwrap();
    let f = fs::OpenOptions::new().write(true).open(dest).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len + BOOT_DISK_ROOM).unwrap();
    dest.to_path_buf()
}

/// The disk [`boot_to_report`] booted (what the VM wrote stays there).
pub fn booted_disk(dir: &Path) -> PathBuf {
    dir.join("boot.img")
}

/// Boots `image` (a copy with room for its data partition) under qemu with
/// a seed medium naming `node` and `role`, signed with `key` (the key the
/// image was built with), waits for the READY banner, and returns what the
/// report unit printed between [`REPORT_BEGIN`] and [`REPORT_END`], with the
/// whole serial log.
pub fn boot_to_report(
    dir: &Path,
    image: &Path,
    key: &Path,
    node: &str,
    role: &str,
) -> (String, String) {
    let (report, vm) = boot_with_ssh_keys(dir, image, key, node, role, &[]);
    (report, vm.log())
}

/// [`boot_to_report`] with a seed that lets the `ssh_keys` files' keys log
/// in as owui-admin; returns the report and the VM, still running.
pub fn boot_with_ssh_keys(
    dir: &Path,
    image: &Path,
    key: &Path,
    node: &str,
    role: &str,
    ssh_keys: &[&Path],
) -> (String, Boot) {
    let disk = boot_disk(image, &booted_disk(dir));
    let medium = seed_medium_with_keys(dir, key, node, role, ssh_keys);
    let mut vm = Boot::start(dir, &disk, &[&medium]);
    let banner = format!("OWUI-AGENT READY role={role} node={node}");
    let seen = vm.wait_for(&[&banner], Duration::from_secs(400));
    assert_eq!(seen, Some(banner), "{}", vm.excerpt());
    let report = vm
        .between(REPORT_BEGIN, REPORT_END, Duration::from_secs(180))
        .unwrap_or_else(|| panic!("no report; serial log:\n{}", vm.excerpt()));
    (report, vm)
}

/// A new ed25519 key pair without a passphrase: `dir/NAME` and
/// `dir/NAME.pub`.
pub fn ssh_key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(name);
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@boot-test"))
        .arg("-f")
        .arg(&private)
        .status()
        .expect("ssh-keygen (package openssh-client)");
    assert!(ok.success(), "ssh-keygen");
    let public = dir.join(format!("{name}.pub"));
    (private, public)
}

/// `ssh USER@127.0.0.1 -p PORT COMMAND` with `identity` (no agent, no
/// other key, no prompt, any host key: the VM's are new each boot) and
/// `more` options.
pub fn ssh(port: u16, identity: &Path, user: &str, command: &str, more: &[&str]) -> Run {
    let port = port.to_string();
    let mut args = vec![
        "-F",
        "/dev/null",
        "-p",
        &port,
        "-i",
        identity.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "IdentityAgent=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=20",
    ];
    args.extend_from_slice(more);
    let target = format!("{user}@127.0.0.1");
    args.push(&target);
    args.push(command);
    run(Path::new("ssh"), &args, &[])
}

/// Waits until sshd in the VM answers `identity` as `user` (first boot
/// makes its host keys), up to `limit`; the last try.
pub fn ssh_when_up(port: u16, identity: &Path, user: &str, limit: Duration) -> Run {
    let start = std::time::Instant::now();
    loop {
        let r = ssh(port, identity, user, "true", &[]);
        // 255: no connection yet (or refused keys: the caller checks).
        let unreachable = r.code == 255 && !r.stderr.contains("Permission denied");
        if !unreachable || start.elapsed() > limit {
            return r;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
}

/// The state of the check `name` in an `owui-agent status --json` document.
pub fn check_state(status: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    status["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["state"].clone())
}

/// The files of one partition of a disk image, copied out and mounted
/// read-only (erofs, ext4) or extracted with mtools (the ESP: the host
/// kernel has no vfat); unmounted when dropped.
pub struct PartitionTree {
    pub root: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

impl PartitionTree {
    pub fn open(image: &Path, part: &GptPartition) -> PartitionTree {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part.img");
        disk::extract(image, part, &file).unwrap();
        let root = dir.path().join("tree");
        fs::create_dir(&root).unwrap();
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        let mounted = part.label != disk::ESP_LABEL;
        if mounted {
            ok(Command::new("mount")
                .args(["-o", "loop,ro"])
                .arg(&file)
                .arg(&root));
        } else {
            ok(Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-s", "-p", "-m", "-i"])
                .arg(&file)
                .arg("::*")
                .arg(&root));
        }
        PartitionTree {
            root,
            mounted,
            _dir: dir,
        }
    }
}

impl Drop for PartitionTree {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount").arg(&self.root).status();
        }
    }
}

/// The partition of `image` labelled `label`, as a tree of files.
pub fn partition_tree(image: &Path, label: &str) -> PartitionTree {
    let gpt = disk::read_gpt(image).unwrap();
    let part = gpt.iter().find(|p| p.label == label).unwrap();
    PartitionTree::open(image, part)
}

/// Every path under `root`, with what a reproducible build must repeat:
/// type, mode, owner, modification time, and the content's digest or the
/// link's target.
fn describe_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link to {}", fs::read_link(&path).unwrap().display())
        } else if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
            "directory".to_string()
        } else if m.is_file() {
            format!(
                "{} bytes, sha256 {}",
                m.len(),
                sha256_hex(&fs::read(&path).unwrap())
            )
        } else {
            format!("special {:o}", m.mode())
        };
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let meta = format!(
            "mode {:o} owner {}:{} mtime {}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime()
        );
        out.insert(rel, format!("{what}, {meta}"));
    }
    out
}

/// Where two builds of an image differ: each partition whose bytes differ,
/// with the files in it that differ (or a note that only the filesystem's
/// own metadata does), and the partition table. Empty when the images are
/// byte-identical.
pub fn image_differences(a: &Path, b: &Path) -> Vec<String> {
    let (ga, gb) = (disk::read_gpt(a).unwrap(), disk::read_gpt(b).unwrap());
    let layout = |g: &[GptPartition]| {
        g.iter()
            .map(|p| {
                (
                    p.label.clone(),
                    p.uuid.clone(),
                    p.offset,
                    p.size,
                    p.attributes,
                )
            })
            .collect::<Vec<_>>()
    };
    if layout(&ga) != layout(&gb) {
        return vec![format!(
            "partition tables: {:?} vs {:?}",
            layout(&ga),
            layout(&gb)
        )];
    }
    let bytes = |image: &Path, p: &GptPartition| {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = fs::File::open(image).unwrap();
        f.seek(SeekFrom::Start(p.offset)).unwrap();
        let mut buf = Vec::new();
        f.take(p.size).read_to_end(&mut buf).unwrap();
        sha256_hex(&buf)
    };
    let mut out = Vec::new();
    for (pa, pb) in ga.iter().zip(&gb) {
        if bytes(a, pa) == bytes(b, pb) {
            continue;
        }
        let (ta, tb) = (PartitionTree::open(a, pa), PartitionTree::open(b, pb));
        let (da, db) = (describe_tree(&ta.root), describe_tree(&tb.root));
        let before = out.len();
        for path in da.keys().chain(db.keys()).collect::<BTreeSet<_>>() {
            let (x, y) = (da.get(path), db.get(path));
            if x != y {
                out.push(format!("{}: /{}: {x:?} vs {y:?}", pa.label, path.display()));
            }
        }
        if out.len() == before {
            out.push(format!(
                "{}: the bytes differ, no file does (filesystem metadata)",
                pa.label
            ));
        }
    }
    if out.is_empty() && !same_bytes(a, b) {
        out.push("the GPT headers or the space between partitions".into());
    }
    out
}

/// Whether two files hold the same bytes (read a MiB at a time).
fn same_bytes(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = fa.read(&mut ba).unwrap();
        if fb.read_exact(&mut bb[..n]).is_err() || ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return fb.read(&mut bb).unwrap() == 0;
        }
    }
}

/// The files under `root` whose content contains `needle`.
pub fn files_naming(root: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.as_bytes();
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        if m.is_dir() {
            for e in fs::read_dir(&path).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.is_file() {
            let data = fs::read(&path).unwrap();
            if data.windows(needle.len()).any(|w| w == needle) {
                found.push(path.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// `systemd-dissect --json=short` on `image`, told the root hash (systemd
/// finds the root and verity partitions by the hash's halves).
pub fn dissect(image: &Path, root_hash: &str) -> serde_json::Value {
    let out = Command::new("systemd-dissect")
        .arg("--json=short")
        .arg(format!("--root-hash={root_hash}"))
        .arg(image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-dissect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
