//! `owui-builder build` for real: a small all-in-one image from Debian 13
//! packages (boot essentials, PostgreSQL, sshd and sudo), booted under qemu
//! with UEFI firmware until the agent's READY banner, checked inside the VM
//! (status, first-boot secrets, the PostgreSQL cluster and Open WebUI's
//! database) and over SSH (the seed's key logs in as owui-admin and nothing
//! else does; root through sudo only with a reason, which is journalled),
//! rebuilt from the cache and from scratch (byte-identical), rebuilt with no
//! network from the cache alone (the same bytes), and refused once a byte of
//! its root is flipped.
//! Needs root, mmdebstrap, qemu, OVMF and Debian's package registry
//! (.ci/run installs them); downloaded packages are kept in
//! /var/tmp/owui-test-image-cache between runs.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use owui_builder::image::disk::{read_gpt, DATA_LABEL};
use owui_tests::build_test_oci_layout;
use owui_tests::image::{
    assert_nothing_in, boot_disk, boot_with_ssh_keys, booted_disk, build, build_unshared, builder,
    check_state, dissect, files_naming, image_differences, keys, partition_tree, repo,
    report_overlay, seed_medium, ssh, ssh_key_pair, ssh_when_up, BuildHost, BOOT_CMDLINE,
    BOOT_DISK_ROOM, BOOT_PACKAGES, BOOT_UNITS,
};
use owui_tests::qemu::Boot;
use owui_tests::site::model_sources;

/// What owui-secrets.service makes on a web node's first boot.
const SECRET_FILES: &str =
    "/etc/owui/secrets/open-webui.env /etc/owui/tls/privkey.pem /etc/owui/tls/fullchain.pem";
/// The report the VM prints on its console once the banner is out: the
/// agent's status, the secrets' modes, the cluster's settings, and a login
/// as Open WebUI's user over TCP with the password first boot made.
const REPORT_SCRIPT: &str = r#"#!/bin/sh
one_line() { tr '\n' ' '; echo; }
echo REPORT_BEGIN
/usr/bin/owui-agent status --json | one_line
stat -c '%a %n' FILES | one_line
runuser -u postgres -- psql -XAt -d openwebui -c "select concat_ws(',', current_setting('work_mem'),
    current_setting('shared_buffers'), current_setting('data_checksums'),
    current_setting('server_encoding'), (select extversion from pg_extension where extname = 'vector'))" 2>&1 | one_line
PGPASSWORD="$(cat /etc/owui/secrets/postgres-openwebui-password)" \
    psql -XAt -h 127.0.0.1 -U openwebui -d openwebui -c 'select current_user' 2>&1 | one_line
hostname
data=/dev/disk/by-partlabel/owui-data
set -- $(dumpe2fs -h $data 2>/dev/null | sed -n 's/^Block count: *//p; s/^Block size: *//p')
echo "data $(blockdev --getsize64 $data) $(( $1 * $2 )) $(df --output=target /var/lib/owui | tail -n 1)"
echo "failed: $(systemctl --failed --plain --no-legend | one_line)"
echo REPORT_END
"#;

/// The container image the test specs pre-fill (a one-layer OCI layout).
const TEST_OCI_REF: &str = "localhost/owui/test-app:1.0";

/// The build hosts' names: nothing of them may end up in the image.
const BUILD_HOSTS: [&str; 2] = ["owui-build-host-one", "owui-build-host-two"];

/// A spec with the boot essentials and PostgreSQL only (no base), the
/// repository's common, app and postgresql overlays, one small model, one
/// container image, and a unit that prints the report on the console once
/// the banner is out.
fn write_spec(dir: &Path, extra: &str) -> PathBuf {
    let overlay = dir.join("overlay");
    report_overlay(
        &overlay,
        "owui-postgresql-setup.service",
        &REPORT_SCRIPT.replace("FILES", SECRET_FILES),
    );
    // The guest's card on qemu's user-mode network, for SSH from the host
    // (tests/src/qemu.rs); the image itself has no network settings yet.
    let network = overlay.join("etc/systemd/network/50-boot-test.network");
    fs::create_dir_all(network.parent().unwrap()).unwrap();
    fs::write(
        &network,
        "[Match]\nType=ether\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
    )
    .unwrap();
    // The shipped settings are for servers; the VM has 1.5 GiB of memory.
    let conf = overlay.join("etc/postgresql-common/createcluster.d/60-boot-test.conf");
    fs::create_dir_all(conf.parent().unwrap()).unwrap();
    fs::write(&conf, "shared_buffers = '128MB'\n").unwrap();
    let models = model_sources(dir, "img", 100_000, 2);
    build_test_oci_layout(&dir.join("oci/app"), TEST_OCI_REF).unwrap();
    let images = repo().join("images/overlay");
    let spec = format!(
        r#"role = "allinone"
version = "0.1.0"
[debian]
suite = "trixie"
mirror = "http://deb.debian.org/debian"
components = ["main"]
packages = [{BOOT_PACKAGES}, "postgresql-17", "postgresql-17-pgvector", "openssh-server", "sudo"]
[units]
enable = [{BOOT_UNITS}, "owui-postgresql-setup.service", "owui-ssh-host-keys.service",
          "ssh.service", "systemd-networkd.service"]
[overlay]
dirs = ["{common}", "{app}", "{postgresql}", "overlay"]
[overlay.modes]
"etc/sudoers.d/owui-admin" = "0440"
[partitions]
esp = 128
root = 1024
content = "auto"
data = 256
[kernel]
cmdline = [{BOOT_CMDLINE}]
{extra}
{models}
[[oci]]
ref = "{TEST_OCI_REF}"
source = "oci/app"
"#,
        common = images.join("common").display(),
        app = images.join("app").display(),
        postgresql = images.join("postgresql").display(),
    );
    let path = dir.join("mini.toml");
    fs::write(&path, spec).unwrap();
    path
}

/// Over SSH to the booted VM: the seed's key logs in as owui-admin and
/// runs a command; root comes only through `owui-agent as-root` with a
/// reason, which the journal then holds; another key, root and passwords
/// get nothing.
fn operator_access(vm: &Boot, operator: &Path, stranger: &Path) {
    let port = vm.ssh_port;
    let first = ssh_when_up(port, operator, "owui-admin", Duration::from_secs(180));
    assert_eq!(first.code, 0, "{}\n{}", first.stderr, vm.excerpt());
    let who = ssh(port, operator, "owui-admin", "id -un", &[]).ok();
    assert_eq!(who.stdout.trim(), "owui-admin");
    let reason = "boot test: prove root with a reason";
    let root = ssh(
        port,
        operator,
        "owui-admin",
        &format!("sudo -n owui-agent as-root --reason '{reason}' -- id -u"),
        &[],
    )
    .ok();
    assert_eq!(root.stdout.trim(), "0", "{}", root.stderr);
    let journal = ssh(
        port,
        operator,
        "owui-admin",
        "sudo -n owui-agent as-root --reason 'boot test: read the entry' -- \
         journalctl -t owui-as-root -o cat --no-pager",
        &[],
    )
    .ok();
    assert!(
        journal
            .stdout
            .contains(&format!("runs as root: id -u; reason: {reason}"))
            && journal.stdout.contains("owui-admin"),
        "{}{}",
        journal.stdout,
        journal.stderr
    );
    // No reason worth the name: refused, nothing runs.
    let short = ssh(
        port,
        operator,
        "owui-admin",
        "sudo -n owui-agent as-root --reason 'fix' -- touch /run/ran",
        &[],
    );
    assert_eq!(short.code, 3, "{}", short.stderr);
    assert!(
        short.stderr.contains("give at least 12"),
        "{}",
        short.stderr
    );
    // sudo itself for anything else: refused (no password to give).
    let direct = ssh(port, operator, "owui-admin", "sudo -n id -u", &[]);
    assert_ne!(direct.code, 0, "{}", direct.stdout);
    let ran = ssh(port, operator, "owui-admin", "test -e /run/ran", &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    // Another key, root with the good key, and passwords: refused, and
    // the server offers nothing but public keys.
    let refusals = [
        ssh(port, stranger, "owui-admin", "true", &[]),
        ssh(port, operator, "root", "true", &[]),
        ssh(
            port,
            operator,
            "owui-admin",
            "true",
            &[
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ],
        ),
    ];
    for r in refusals {
        assert_eq!(r.code, 255, "{}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("Permission denied (publickey)."),
            "{}",
            r.stderr
        );
    }
}

/// The image a build reported (its `--json`) is byte-identical to `image`;
/// otherwise the partitions and files that differ are named.
fn assert_same_image(image: &Path, build: &serde_json::Value) {
    let other = Path::new(build["image"].as_str().unwrap());
    let differences = image_differences(image, other);
    assert!(
        differences.is_empty(),
        "two builds differ:\n{}",
        differences.join("\n")
    );
}

#[test]
fn a_role_image_builds_boots_to_ready_reproduces_and_refuses_a_flipped_root_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (key, public) = keys(dir);
    let spec = write_spec(&dir.join("one"), "");
    let cache = Path::new("/var/tmp/owui-test-image-cache");

    // 1. Build (on a build host of its own name), then check the image as
    // an auditor would.
    let out1 = dir.join("out1");
    let first = build_unshared(
        BuildHost::Named(BUILD_HOSTS[0]),
        &spec,
        &key,
        &out1,
        cache,
        &[],
    )
    .ok()
    .json();
    let image = PathBuf::from(first["image"].as_str().unwrap());
    assert_eq!(image, out1.join("allinone-0.1.0.img"));
    let stages: Vec<&str> = first["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["stage"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["content", "rootfs", "uki", "esp", "disk", "manifest"]
    );
    let verified = builder(&[
        "verify-image",
        image.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
        "--json",
    ])
    .ok()
    .json();
    assert_eq!(verified["role"], "allinone");
    assert_eq!(verified["root_hash"], first["root_hash"]);
    let manifest = out1.join("allinone-0.1.0.manifest.json");
    let minisign = Command::new("minisign")
        .arg("-Vm")
        .arg(&manifest)
        .arg("-p")
        .arg(&public)
        .output()
        .unwrap();
    assert!(minisign.status.success(), "minisign: {minisign:?}");
    let m: serde_json::Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    assert!(m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "systemd"));
    assert_eq!(m["content"]["ollama"][0]["name"], "tiny-img:1b");
    let sbom_path = out1.join("allinone-0.1.0.spdx.json");
    let sbom: serde_json::Value = serde_json::from_slice(&fs::read(&sbom_path).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    assert!(sbom["packages"].as_array().unwrap().len() > 50);
    owui_tests::sbom::assert_conformant(&sbom_path);
    let root_hash = first["root_hash"].as_str().unwrap();

    // systemd finds the verified root as the Discoverable Partitions
    // Specification has it: partition UUIDs the halves of the root hash,
    // both read-only.
    let dissected = dissect(&image, root_hash);
    let mounts = dissected["mounts"].as_array().unwrap();
    let by_designator = |d: &str| {
        mounts
            .iter()
            .find(|m| m["designator"] == d)
            .unwrap_or_else(|| panic!("no {d} in {dissected}"))
    };
    let (root_part, verity_part) = (by_designator("root"), by_designator("root-verity"));
    let halves = [root_part, verity_part]
        .map(|m| m["partition_uuid"].as_str().unwrap().replace('-', ""))
        .concat();
    assert_eq!(halves, root_hash, "{dissected}");
    assert_eq!(root_part["verity"], "yes", "{dissected}");
    assert_eq!(root_part["fstype"], "erofs", "{dissected}");
    for part in [root_part, verity_part] {
        assert_eq!(part["rw"], "ro", "{dissected}");
    }

    // Nothing of the build host: a neutral hostname until the seed's,
    // resolv.conf from the node's network, no file naming the build host.
    let root_tree = partition_tree(&image, "owui-root");
    let etc = root_tree.root.join("etc");
    assert_eq!(
        fs::read_to_string(etc.join("hostname")).unwrap(),
        "owui-unconfigured\n"
    );
    assert_eq!(
        fs::read_link(etc.join("resolv.conf")).unwrap(),
        Path::new("../run/systemd/resolve/stub-resolv.conf")
    );
    let naming = files_naming(&root_tree.root, BUILD_HOSTS[0]);
    assert!(naming.is_empty(), "files naming the build host: {naming:?}");
    drop(root_tree);

    // 2. Boot it with a seed medium carrying the operator's SSH key: READY
    // banner, then the status the agent gives inside the VM lists the
    // role's units.
    let ssh_dir = dir.join("ssh");
    fs::create_dir_all(&ssh_dir).unwrap();
    let (operator, operator_pub) = ssh_key_pair(&ssh_dir, "operator");
    let (stranger, _) = ssh_key_pair(&ssh_dir, "stranger");
    let (report, vm) =
        boot_with_ssh_keys(dir, &image, &key, "rack1-n07", "allinone", &[&operator_pub]);
    let mut lines = report.lines().filter(|l| !l.trim().is_empty());
    let status_line = lines.next().unwrap_or_default();
    let status: serde_json::Value = serde_json::from_str(status_line.trim())
        .unwrap_or_else(|e| panic!("status in the VM is not JSON ({e}):\n{report}"));
    // First boot made the node's secrets and certificate, private.
    let modes = lines.next().unwrap_or_default();
    for file in SECRET_FILES.split(' ') {
        assert!(modes.contains(&format!("600 {file}")), "{file}: {report}");
    }
    // The cluster first boot made: the image's createcluster.d settings
    // (work_mem) under the test's own (shared_buffers), page checksums,
    // UTF-8, pgvector; and Open WebUI's user logs in with its password.
    let settings = lines.next().unwrap_or_default().trim();
    assert!(
        settings.starts_with("64MB,128MB,on,UTF8,"),
        "cluster settings: {report}"
    );
    assert_eq!(lines.next().map(str::trim), Some("openwebui"), "{report}");
    // The seed's node name replaced the image's neutral hostname.
    assert_eq!(lines.next().map(str::trim), Some("rack1-n07"), "{report}");
    assert_eq!(status["node"], "rack1-n07");
    assert_eq!(status["role"], "allinone");
    let names: Vec<&str> = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for unit in [
        "unit:nginx.service",
        "unit:open-webui.service",
        "unit:llama-server.service",
    ] {
        assert!(names.contains(&unit), "{unit} not in {names:?}");
    }
    // First boot grew the data partition (/var, the content under
    // lib/owui) from its built size to the end of the 4 GiB bigger disk,
    // and its filesystem with it.
    let built = read_gpt(&image).unwrap();
    let built_data = built.iter().find(|p| p.label == DATA_LABEL).unwrap();
    let booted = booted_disk(dir);
    let disk_len = fs::metadata(&booted).unwrap().len();
    let grown = read_gpt(&booted).unwrap();
    let data = grown.iter().find(|p| p.label == DATA_LABEL).unwrap();
    assert_eq!(
        (data.uuid.as_str(), data.offset),
        (built_data.uuid.as_str(), built_data.offset)
    );
    let end = data.offset + data.size;
    // Up to the backup GPT (33 sectors), give or take 4 KiB of alignment.
    assert!(
        end <= disk_len - 33 * 512 && end + 33 * 512 + 4096 > disk_len,
        "the data partition ends at {end} of {disk_len}: {grown:?}"
    );
    assert!(data.size >= built_data.size + BOOT_DISK_ROOM - (1 << 20));
    let data_line: Vec<&str> = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("data "))
        .map(|l| l.split(' ').collect())
        .unwrap_or_else(|| panic!("no data partition line: {report}"));
    let [partition, filesystem] = [0, 1].map(|i| data_line[i].parse::<u64>().unwrap());
    assert_eq!(partition, data.size, "{report}");
    assert!(
        filesystem <= data.size && filesystem + 4096 > data.size,
        "the filesystem did not grow with its partition: {report}"
    );
    // /var/lib/owui (content, uploads, bundles, secrets) is on it.
    assert_eq!(data_line[2], "/var", "{report}");
    // A healthy node has no failed unit (issue 20).
    assert_eq!(lines.next().map(str::trim), Some("failed:"), "{report}");
    // Status lists each partition's space: /var on the grown partition,
    // healthy; the root and the ESP read-only.
    let parts = status["partitions"].as_array().unwrap();
    let part = |mount: &str| {
        parts
            .iter()
            .find(|p| p["mount"] == mount)
            .unwrap_or_else(|| panic!("no {mount} in {report}"))
    };
    let var = part("/var");
    assert_eq!(var["label"], DATA_LABEL, "{report}");
    assert_eq!(var["partition_bytes"], data.size, "{report}");
    assert_eq!(var["minimum_bytes"], 256u64 << 20, "{report}");
    assert_eq!(var["state"], "healthy", "{report}");
    assert!(var["size_bytes"].as_u64().unwrap() > 3 << 30, "{report}");
    assert!(var["free_bytes"].as_u64().unwrap() > 3 << 30, "{report}");
    for ro in ["/", "/efi"] {
        assert_eq!(part(ro)["read_only"], true, "{report}");
    }
    assert_eq!(part("/efi")["label"], "owui-esp", "{report}");
    // The daemon, which sees every path read-only (ProtectSystem=strict),
    // still judges /var as the writable filesystem it is.
    let var_check = status["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disk:/var")
        .unwrap();
    assert!(
        !var_check["detail"]
            .as_str()
            .unwrap()
            .starts_with("read-only"),
        "{report}"
    );
    for check in ["disk:/var", "disk:/", "disk:/efi"] {
        assert_eq!(
            check_state(&status, check),
            Some("healthy".into()),
            "{check}: {report}"
        );
    }
    // The agent's health check logs in to the cluster first boot made.
    assert_eq!(
        check_state(&status, "postgresql"),
        Some("healthy".into()),
        "{report}"
    );
    // The VM's firmware has no Secure Boot: the audit says so, as a warning.
    let secure_boot = status["hardening"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["item"] == "secure boot")
        .unwrap_or_else(|| panic!("no secure boot finding: {report}"));
    assert_eq!(secure_boot["severity"], "warn", "{report}");
    assert!(
        secure_boot["found"]
            .as_str()
            .unwrap()
            .starts_with("off: anyone at the console can boot another medium"),
        "{report}"
    );
    operator_access(&vm, &operator, &stranger);
    drop(vm);

    // 3. An unchanged rebuild reuses the rootfs stage; a rebuild of every
    // stage, from a copy of the spec's directory on a build host of another
    // name, gives the same bytes.
    let out2 = dir.join("out2");
    let warm = build(&spec, &key, &out2, cache, &[]).ok().json();
    assert_eq!(warm["stages"][1]["cached"], true);
    assert_same_image(&image, &warm);
    let out3 = dir.join("out3");
    let other_spec = write_spec(&dir.join("two"), "");
    let cold = build_unshared(
        BuildHost::Named(BUILD_HOSTS[1]),
        &other_spec,
        &key,
        &out3,
        cache,
        &["--no-cache"],
    )
    .ok()
    .json();
    assert_eq!(cold["stages"][1]["cached"], false);
    assert_same_image(&image, &cold);
    // With no network at all, from the packages and signed indices the
    // online builds left in the cache: the same bytes again.
    let out4 = dir.join("out4");
    let offline = build_unshared(
        BuildHost::NoNetwork,
        &spec,
        &key,
        &out4,
        cache,
        &["--no-cache", "--offline"],
    )
    .ok()
    .json();
    assert_eq!(offline["stages"][1]["cached"], false);
    assert_same_image(&image, &offline);

    // 4. One flipped byte in the root: verify-image names the partition,
    // and the boot stops at dm-verity.
    let root = m["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["label"] == "owui-root")
        .unwrap();
    let at = root["offset"].as_u64().unwrap() + 1024;
    let bad_dir = dir.join("bad");
    fs::create_dir_all(&bad_dir).unwrap();
    let bad = bad_dir.join("allinone-0.1.0.img");
    fs::copy(&image, &bad).unwrap();
    fs::copy(&manifest, bad_dir.join("allinone-0.1.0.manifest.json")).unwrap();
    fs::copy(
        out1.join("allinone-0.1.0.manifest.json.minisig"),
        bad_dir.join("allinone-0.1.0.manifest.json.minisig"),
    )
    .unwrap();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&bad)
        .unwrap();
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    std::io::Read::read_exact(&mut f, &mut byte).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte[0] ^ 0x01]).unwrap();
    drop(f);
    let refused = builder(&[
        "verify-image",
        bad.to_str().unwrap(),
        "--pub",
        public.to_str().unwrap(),
    ]);
    assert_eq!(refused.code, 4, "{}{}", refused.stdout, refused.stderr);
    assert!(refused.stderr.contains("owui-root"), "{}", refused.stderr);
    let disk = boot_disk(&bad, &dir.join("bad-boot.img"));
    let medium = seed_medium(dir, &key, "rack1-n07", "allinone");
    let mut vm = Boot::start(dir, &disk, &[&medium]);
    let banner = "OWUI-AGENT READY";
    let seen = vm.wait_for(&["is corrupted", banner], Duration::from_secs(300));
    assert_eq!(seen.as_deref(), Some("is corrupted"), "{}", vm.excerpt());
}

#[test]
fn bad_image_inputs_fail_with_the_file_and_key_named_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (key, _) = keys(dir);
    let cache = dir.join("cache");
    let out = dir.join("out");

    // A key others can read.
    let loose = dir.join("loose.key");
    fs::copy(&key, &loose).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).unwrap();
    let spec = write_spec(&dir.join("a"), "");
    let r = build(&spec, &loose, &out, &cache, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("loose.key") && r.stderr.contains("0644"),
        "{}",
        r.stderr
    );

    // An unknown key in the spec.
    let spec = write_spec(&dir.join("b"), "[tuning]\nfast = true\n");
    let r = build(&spec, &key, &out, &cache, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("mini.toml") && r.stderr.contains("tuning"),
        "{}",
        r.stderr
    );

    // A content partition too small for the models: refused before building.
    let c = dir.join("c");
    let spec = write_spec(&c, "");
    let text = fs::read_to_string(&spec)
        .unwrap()
        .replace("content = \"auto\"", "content = 64");
    fs::write(&spec, text).unwrap();
    let r = build(&spec, &key, &out, &cache, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("partitions.content"), "{}", r.stderr);

    // A model source that is not there.
    let d = dir.join("d");
    let spec = write_spec(&d, "");
    fs::remove_file(d.join("src-img/model.gguf")).unwrap();
    let r = build(&spec, &key, &out, &cache, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("ollama.gguf"), "{}", r.stderr);

    // A package Debian does not have: named, after apt says so.
    let e = dir.join("e");
    let spec = write_spec(&e, "");
    let text = fs::read_to_string(&spec)
        .unwrap()
        .replace("packages = [", "packages = [\"owui-no-such-package\", ");
    fs::write(&spec, text).unwrap();
    let r = build(&spec, &key, &out, &cache, &[]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("owui-no-such-package"), "{}", r.stderr);

    // --offline with a cache no online build filled: the missing index is
    // named, with what to do.
    let f = dir.join("f");
    let spec = write_spec(&f, "");
    let r = build(&spec, &key, &out, &f.join("empty-cache"), &["--offline"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("dists/trixie/InRelease") && r.stderr.contains("online build"),
        "{}",
        r.stderr
    );
    // An index without the packages' files: the spec's packages are named.
    let partial = f.join("partial-cache");
    let index = partial.join("dists/trixie/main/binary-amd64");
    fs::create_dir_all(&index).unwrap();
    fs::write(partial.join("dists/trixie/InRelease"), "Origin: Debian\n").unwrap();
    fs::write(
        index.join("Packages"),
        "Package: zstd\nVersion: 1.5.7+dfsg-1\nArchitecture: amd64\n\
         Filename: pool/main/libz/libzstd/zstd_1.5.7+dfsg-1_amd64.deb\n",
    )
    .unwrap();
    let r = build(&spec, &key, &out, &partial, &["--offline"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("not in the package cache")
            && r.stderr.contains("systemd-boot-efi")
            && r.stderr.contains("zstd"),
        "{}",
        r.stderr
    );

    // Nothing was left in the output directory.
    assert_nothing_in(&out);
}
